package deploytest

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// peerSecrets says where the Secrets of the replicas come from: the
// objects of the build, and the names the operator creates by hand (a
// kustomization cannot make a random secret), which the build's
// documentation must tell them to.
type peerSecrets struct {
	built    []*corev1.Secret
	byHand   []string
	howTo    string // the documentation that tells the operator
	tls      bool   // the replicas speak HTTPS with each other
	tlsKnown bool   // tls is known (false: check whichever the pod says)
}

// checkPeers checks that a Deployment's replicas share their fills,
// trusting each other only with the cluster secret: a headless Service
// named peers selects exactly its pods on the replicas' own port (named
// peers, --peer-listen), the container finds the members through it
// (--peers=dns:peers:port) with its own address from the downward API
// (POD_IP), and takes CACHEYD_CLUSTER_SECRET from a Secret that holds at
// least 32 characters; with HTTPS between the replicas, its certificate
// and key come from a kubernetes.io/tls Secret mounted where
// --peer-tls-cert and --peer-tls-key say.
func checkPeers(t *testing.T, where string, pod *corev1.PodSpec, podLabels map[string]string, svcs []*corev1.Service, peers string, secrets peerSecrets) {
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
	if len(headless.Spec.Ports) != 1 || headless.Spec.Ports[0].TargetPort.String() != "peers" {
		t.Errorf("%s: Service %s ports %+v, want one targeting peers", where, peers, headless.Spec.Ports)
		return
	}
	c := pod.Containers[0]
	port := ""
	for _, p := range c.Ports {
		if p.Name == "peers" {
			port = strconv.Itoa(int(p.ContainerPort))
		}
	}
	if port == "" {
		t.Errorf("%s: no container port named peers", where)
		return
	}
	for _, want := range []string{"--peers=dns:" + peers + ":" + port, "--peer-listen=:" + port} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("%s: args %v lack %s", where, c.Args, want)
		}
	}
	podIP := false
	var secretRef *corev1.SecretKeySelector
	for _, e := range c.Env {
		podIP = podIP || (e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP")
		if e.Name == "CACHEYD_CLUSTER_SECRET" && e.ValueFrom != nil {
			secretRef = e.ValueFrom.SecretKeyRef
		}
	}
	if !podIP {
		t.Errorf("%s: no POD_IP from status.podIP: the replica cannot say which member it is", where)
	}
	if secretRef == nil || (secretRef.Optional != nil && *secretRef.Optional) {
		t.Errorf("%s: no CACHEYD_CLUSTER_SECRET from a Secret: replicas with --peers need the cluster secret", where)
	} else {
		checkSecret(t, where, secretRef.Name, secrets, func(s *corev1.Secret) error {
			if v := s.Data[secretRef.Key]; len(v) < 32 {
				return fmt.Errorf("key %s holds %d bytes, want at least 32", secretRef.Key, len(v))
			}
			return nil
		})
	}

	flags := map[string]string{}
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[name] = value
	}
	cert, key := flags["peer-tls-cert"], flags["peer-tls-key"]
	if secrets.tlsKnown && (cert != "") != secrets.tls {
		t.Errorf("%s: --peer-tls-cert=%q, want HTTPS between the replicas: %v", where, cert, secrets.tls)
	}
	if cert == "" {
		return
	}
	mounted := ""
	for _, m := range c.VolumeMounts {
		if filepath.Dir(cert) == m.MountPath && filepath.Dir(key) == m.MountPath {
			mounted = m.Name
		}
	}
	for _, v := range pod.Volumes {
		if v.Name != mounted || v.Secret == nil {
			continue
		}
		checkSecret(t, where, v.Secret.SecretName, secrets, func(s *corev1.Secret) error {
			if s.Type != corev1.SecretTypeTLS || len(s.Data["tls.crt"]) == 0 || len(s.Data["tls.key"]) == 0 {
				return fmt.Errorf("type %s with keys %v, want kubernetes.io/tls with tls.crt and tls.key", s.Type, slices.Sorted(maps.Keys(s.Data)))
			}
			return nil
		})
		return
	}
	t.Errorf("%s: --peer-tls-cert=%s and --peer-tls-key=%s are on no Secret volume", where, cert, key)
}

// checkSecret checks the Secret named name: one of the build's, which
// check accepts, or one the operator is told to create.
func checkSecret(t *testing.T, where, name string, secrets peerSecrets, check func(*corev1.Secret) error) {
	t.Helper()
	for _, s := range secrets.built {
		if s.Name == name {
			if err := check(s); err != nil {
				t.Errorf("%s: Secret %s: %v", where, name, err)
			}
			return
		}
	}
	if !slices.Contains(secrets.byHand, name) {
		t.Errorf("%s: Secret %s is neither in the build nor one the operator creates", where, name)
		return
	}
	if !strings.Contains(secrets.howTo, " "+name) {
		t.Errorf("%s: nothing tells the operator to create Secret %s", where, name)
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
