package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomize builds the kustomization in dir as "kubectl apply -k" would.
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return out
}

// TestKustomizations builds the base and every overlay, decodes every
// object strictly, and checks the choices each one is documented to make.
func TestKustomizations(t *testing.T) {
	overlays, err := filepath.Glob(deployDir("kubernetes", "overlays", "*"))
	if err != nil || len(overlays) < 3 {
		t.Fatalf("overlays: %v %v", overlays, err)
	}
	tests := []struct {
		dir        string
		kind       string // the workload nodes reach on port 30123
		replicas   int32  // of the Deployment, the cluster tier
		monitoring bool
		pvc        bool
	}{
		{dir: "base", kind: "Deployment", replicas: 2},
		{dir: "overlays/persistent", kind: "Deployment", replicas: 1, pvc: true},
		{dir: "overlays/node-local", kind: "DaemonSet", replicas: 2},
		{dir: "overlays/with-monitoring", kind: "Deployment", replicas: 2, monitoring: true},
	}
	if len(tests) != len(overlays)+1 {
		t.Errorf("%d overlays on disk, %d tested: test every one", len(overlays), len(tests)-1)
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			objs := decodeAll(t, "kustomize "+tt.dir, kustomize(t, deployDir("kubernetes", tt.dir)))
			for _, o := range objs {
				if o.kind != "Namespace" && o.obj.(interface{ GetNamespace() string }).GetNamespace() != "cacheyd" {
					t.Errorf("%s: not in namespace cacheyd", o.source)
				}
			}
			pvcs := map[string]*corev1.PersistentVolumeClaim{}
			for _, p := range find[*corev1.PersistentVolumeClaim](objs) {
				pvcs[p.Name] = p
			}
			if (len(pvcs) > 0) != tt.pvc {
				t.Errorf("claims %v, want some: %v", pvcs, tt.pvc)
			}
			deps, dss := find[*appsv1.Deployment](objs), find[*appsv1.DaemonSet](objs)
			if wantDS := map[bool]int{true: 1, false: 0}[tt.kind == "DaemonSet"]; len(deps) != 1 || len(dss) != wantDS {
				t.Fatalf("%d Deployments and %d DaemonSets, want one Deployment and %d DaemonSets", len(deps), len(dss), wantDS)
			}
			// The Deployment: the cluster tier, whose replicas share.
			d := deps[0]
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tt.replicas {
				t.Errorf("replicas %v, want %d", d.Spec.Replicas, tt.replicas)
			}
			checkPod(t, workload{where: tt.dir + " Deployment", kind: "Deployment", spec: &d.Spec.Template.Spec, pvcs: pvcs})
			checkSelects(t, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
			svcs := find[*corev1.Service](objs)
			if len(svcs) != 2 {
				t.Fatalf("%d Services, want 2: the nodes' and the replicas' headless one", len(svcs))
			}
			if tt.replicas > 1 {
				// The Secrets are the operator's, made as the base's
				// kustomization says.
				howTo, err := os.ReadFile(deployDir("kubernetes", "base", "kustomization.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				checkPeers(t, tt.dir+" Deployment", &d.Spec.Template.Spec, d.Spec.Template.Labels, svcs, "cacheyd-peers",
					peerSecrets{built: find[*corev1.Secret](objs), byHand: []string{"cacheyd-cluster", "cacheyd-peer-tls"}, howTo: string(howTo),
						tls: true, tlsKnown: true})
			}
			svc := clientService(t, tt.dir, svcs)
			checkService(t, tt.dir, svc, tt.kind, tt.replicas)
			checkSelects(t, svc.Spec.Selector, d.Spec.Template.Labels)
			// The DaemonSet: node caches in front of the cluster tier.
			for _, ds := range dss {
				checkPod(t, workload{where: tt.dir + " DaemonSet", kind: "DaemonSet", spec: &ds.Spec.Template.Spec, pvcs: pvcs})
				checkSelects(t, ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
				if selects(d.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) || selects(ds.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
					t.Errorf("the Deployment and the DaemonSet select each other's pods")
				}
				checkParent(t, tt.dir+" DaemonSet", &ds.Spec.Template.Spec, ds.Spec.Template.Labels, d.Spec.Template.Labels, svc)
			}
			if got := len(find[*monitoringv1.ServiceMonitor](objs)) + len(find[*monitoringv1.PrometheusRule](objs)); (got == 2) != tt.monitoring {
				t.Errorf("%d monitoring objects, want them: %v", got, tt.monitoring)
			}
			for _, sm := range find[*monitoringv1.ServiceMonitor](objs) {
				checkSelects(t, sm.Spec.Selector.MatchLabels, svc.Labels)
			}
			for _, pr := range find[*monitoringv1.PrometheusRule](objs) {
				checkRuleCopy(t, tt.dir+" PrometheusRule", pr)
			}
		})
	}
}

// checkService checks the Service in front of the workload: a NodePort on
// 30123 with session affinity for a Deployment; a plain ClusterIP for a
// DaemonSet, whose hostPort takes 30123 on each node.
func checkService(t *testing.T, where string, s *corev1.Service, kind string, replicas int32) {
	t.Helper()
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("%s: Service ports %+v, want one named http targeting port http", where, s.Spec.Ports)
		return
	}
	p := s.Spec.Ports[0]
	switch kind {
	case "Deployment":
		if s.Spec.Type != corev1.ServiceTypeNodePort || p.NodePort != 30123 {
			t.Errorf("%s: Service %s nodePort %d, want NodePort 30123", where, s.Spec.Type, p.NodePort)
		}
		if replicas > 1 && s.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
			t.Errorf("%s: %d replicas without ClientIP session affinity", where, replicas)
		}
	case "DaemonSet":
		if (s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP) || p.NodePort != 0 {
			t.Errorf("%s: Service %s nodePort %d, want ClusterIP: the hostPort takes 30123", where, s.Spec.Type, p.NodePort)
		}
	}
}

// checkSelects checks that selector matches labels.
func checkSelects(t *testing.T, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("empty selector")
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("selector %v does not match labels %v", selector, labels)
			return
		}
	}
}

// checkRuleCopy checks that a PrometheusRule carries exactly the groups of
// deploy/grafana/cacheyd-rules.yaml, where promtool checks and tests them.
func checkRuleCopy(t *testing.T, where string, pr *monitoringv1.PrometheusRule) {
	t.Helper()
	src, err := os.ReadFile(deployDir("grafana", "cacheyd-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(src, &want); err != nil {
		t.Fatalf("cacheyd-rules.yaml: %v", err)
	}
	gotJSON, _ := yaml.Marshal(pr.Spec)
	wantJSON, _ := yaml.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("%s differs from deploy/grafana/cacheyd-rules.yaml:\n%s", where, diffLines(string(wantJSON), string(gotJSON)))
	}
}

// diffLines shows the first differing line of two texts.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, wl, gl)
		}
	}
	return "(equal)"
}
