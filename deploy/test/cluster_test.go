package deploytest

import (
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// clientService is the Service nodes reach cacheyd through: the one that
// is not headless.
func clientService(t *testing.T, where string, svcs []*corev1.Service) *corev1.Service {
	t.Helper()
	var out []*corev1.Service
	for _, s := range svcs {
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s: %d Services that are not headless, want 1", where, len(out))
	}
	return out[0]
}

// checkPeers checks that a Deployment's replicas share their fills: a
// headless Service named peers selects exactly its pods on the http port,
// and the container finds the members through it (--peers=dns:peers:port)
// with its own address from the downward API (POD_IP).
func checkPeers(t *testing.T, where string, pod *corev1.PodSpec, podLabels map[string]string, svcs []*corev1.Service, peers string) {
	t.Helper()
	var headless *corev1.Service
	for _, s := range svcs {
		if s.Name == peers {
			headless = s
		}
	}
	if headless == nil {
		t.Errorf("%s: no headless Service %s for the replicas to find each other", where, peers)
		return
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || headless.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: Service %s clusterIP %q publishNotReadyAddresses %v, want headless with ready pods only", where, peers,
			headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	checkSelects(t, headless.Spec.Selector, podLabels)
	if len(headless.Spec.Ports) != 1 || headless.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("%s: Service %s ports %+v, want one targeting http", where, peers, headless.Spec.Ports)
		return
	}
	c := pod.Containers[0]
	want := ""
	for _, p := range c.Ports {
		if p.Name == "http" {
			want = "--peers=dns:" + peers + ":" + strconv.Itoa(int(p.ContainerPort))
		}
	}
	if want == "" {
		t.Errorf("%s: no container port named http", where)
	} else if !slices.Contains(c.Args, want) {
		t.Errorf("%s: args %v lack %s", where, c.Args, want)
	}
	podIP := false
	for _, e := range c.Env {
		podIP = podIP || (e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP")
	}
	if !podIP {
		t.Errorf("%s: no POD_IP from status.podIP: the replica cannot say which member it is", where)
	}
}

// checkParent checks that a node-local pod asks the cluster tier's Service
// first (--parent), and that the two workloads' pods are told apart.
func checkParent(t *testing.T, where string, pod *corev1.PodSpec, nodeLabels, clusterLabels map[string]string, svc *corev1.Service) {
	t.Helper()
	want := "--parent=http://" + svc.Name + ":" + strconv.Itoa(int(svc.Spec.Ports[0].Port))
	if !slices.Contains(pod.Containers[0].Args, want) {
		t.Errorf("%s: args %v lack %s", where, pod.Containers[0].Args, want)
	}
	if selects(svc.Spec.Selector, nodeLabels) {
		t.Errorf("%s: Service %s selects the node-local pods too: the parent would be a node", where, svc.Name)
	}
	if !selects(svc.Spec.Selector, clusterLabels) {
		t.Errorf("%s: Service %s does not select the cluster tier", where, svc.Name)
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
