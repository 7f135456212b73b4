package deploytest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

var chartDir = deployDir("helm", "cacheyd")

// renderChart renders the chart with values over its defaults, the way
// "helm template cacheyd deploy/helm/cacheyd -n cacheyd" does, with
// Strict on so that a template naming a value that does not exist fails.
func renderChart(t *testing.T, values string) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatalf("values %q: %v", values, err)
	}
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name: "cacheyd", Namespace: "cacheyd", Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("render values: %v", err)
	}
	return engine.Engine{Strict: true}.Render(chrt, rv)
}

// manifests joins the rendered templates that hold Kubernetes objects, in
// a stable order.
func manifests(files map[string]string) []byte {
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString("---\n# " + n + "\n" + files[n] + "\n")
	}
	return []byte(b.String())
}

func TestHelmLint(t *testing.T) {
	for _, values := range []map[string]any{
		nil,
		{"kind": "DaemonSet"},
		{"replicaCount": 1, "persistence": map[string]any{"enabled": true}},
		{"s3": map[string]any{"bucket": "cacheyd-cache", "existingSecret": "cacheyd-s3"}, "serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/cacheyd"}}},
	} {
		l := lint.All(chartDir, values, "cacheyd", false)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %v): %s", values, m)
			}
		}
	}
}

// TestHelmChart renders the chart with the value sets the README and the
// chart document, decodes every object strictly, and checks them the way
// the kustomizations are checked.
func TestHelmChart(t *testing.T) {
	tests := []struct {
		name     string
		values   string
		kind     string
		replicas int32
		want     map[string]int // kind → how many
		check    func(t *testing.T, objs []object)
	}{
		{
			// The replicas share fills, with a cluster secret and a
			// certificate the chart makes.
			name: "defaults", kind: "Deployment", replicas: 2,
			want: map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1, "Secret": 2},
			check: func(t *testing.T, objs []object) {
				d := find[*appsv1.Deployment](objs)[0]
				checkPeers(t, "chart defaults", &d.Spec.Template.Spec, d.Spec.Template.Labels, find[*corev1.Service](objs), "cacheyd-peers",
					peerSecrets{built: find[*corev1.Secret](objs), tls: true, tlsKnown: true})
				checkPeerCertificate(t, find[*corev1.Secret](objs), "cacheyd-peer-tls", "cacheyd-peers.cacheyd.svc")
			},
		},
		{
			name: "secrets of the operator's", kind: "Deployment", replicas: 2,
			values: "peers: {secret: {existingSecret: mine, key: s}, tls: {existingSecret: mine-tls}}",
			want:   map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1},
			check: func(t *testing.T, objs []object) {
				d := find[*appsv1.Deployment](objs)[0]
				checkPeers(t, "chart with the operator's secrets", &d.Spec.Template.Spec, d.Spec.Template.Labels, find[*corev1.Service](objs), "cacheyd-peers",
					peerSecrets{byHand: []string{"mine", "mine-tls"}, howTo: valuesFile(t), tls: true, tlsKnown: true})
			},
		},
		{
			name: "peers without https", kind: "Deployment", replicas: 2, values: "peers: {tls: {enabled: false}}",
			want: map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1, "Secret": 1},
			check: func(t *testing.T, objs []object) {
				d := find[*appsv1.Deployment](objs)[0]
				checkPeers(t, "chart without https", &d.Spec.Template.Spec, d.Spec.Template.Labels, find[*corev1.Service](objs), "cacheyd-peers",
					peerSecrets{built: find[*corev1.Secret](objs), tls: false, tlsKnown: true})
			},
		},
		{
			name: "replicas alone", kind: "Deployment", replicas: 2, values: "peers: {enabled: false}",
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "PodDisruptionBudget": 1},
			check: func(t *testing.T, objs []object) {
				c := find[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
				args := strings.Join(c.Args, " ")
				if strings.Contains(args, "--peer") {
					t.Errorf("args %q: --peers with peers.enabled false", args)
				}
				for _, e := range c.Env {
					if e.Name == "CACHEYD_CLUSTER_SECRET" {
						t.Error("a cluster secret without peers")
					}
				}
			},
		},
		{
			// A bucket on AWS through IRSA: the role is the service
			// account's annotation, no key anywhere.
			name: "bucket with IRSA", kind: "Deployment", replicas: 2,
			values: `
s3: {bucket: cacheyd-cache, region: eu-west-1}
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/cacheyd"}}
`,
			want: map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1, "Secret": 2},
			check: func(t *testing.T, objs []object) {
				c := find[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
				checkBucket(t, "chart bucket with IRSA", containerEnv(t, "chart bucket with IRSA", c, nil), map[string]string{
					"CACHEYD_S3_BUCKET": "cacheyd-cache", "CACHEYD_S3_REGION": "eu-west-1", "CACHEYD_S3_PREFIX": "cacheyd/",
					"CACHEYD_S3_PATH_STYLE": "false", "CACHEYD_S3_TIMEOUT": "5s",
				})
				sa := find[*corev1.ServiceAccount](objs)[0]
				if sa.Annotations["eks.amazonaws.com/role-arn"] != "arn:aws:iam::111122223333:role/cacheyd" {
					t.Errorf("ServiceAccount annotations %v, want the role for IRSA", sa.Annotations)
				}
				if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
					t.Error("the ServiceAccount for IRSA mounts a Kubernetes API token: EKS mounts its own for the role")
				}
			},
		},
		{
			// A store of another kind, with an access key from a Secret.
			name: "bucket with a key", kind: "Deployment", replicas: 2,
			values: `
s3: {bucket: cache, endpoint: "http://minio.storage.svc:9000", pathStyle: true, prefix: "eu/", timeout: 2s, existingSecret: cacheyd-s3}
`,
			want: map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1, "Secret": 2},
			check: func(t *testing.T, objs []object) {
				c := find[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
				checkBucket(t, "chart bucket with a key", containerEnv(t, "chart bucket with a key", c, nil), map[string]string{
					"CACHEYD_S3_BUCKET": "cache", "CACHEYD_S3_ENDPOINT": "http://minio.storage.svc:9000", "CACHEYD_S3_PREFIX": "eu/",
					"CACHEYD_S3_PATH_STYLE": "true", "CACHEYD_S3_TIMEOUT": "2s",
					"AWS_ACCESS_KEY_ID": accessKeys["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": accessKeys["AWS_SECRET_ACCESS_KEY"],
				})
				for _, e := range c.Env {
					if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && strings.HasPrefix(e.Name, "AWS_") && ref.SecretKeyRef.Name != "cacheyd-s3" {
						t.Errorf("env %s from Secret %s, want cacheyd-s3", e.Name, ref.SecretKeyRef.Name)
					}
				}
			},
		},
		{
			// A key alone names no bucket: nothing of the tier is set.
			name: "a key without a bucket", kind: "Deployment", replicas: 2,
			values: "s3: {existingSecret: cacheyd-s3, endpoint: \"http://minio.storage.svc:9000\"}",
			want:   map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1, "Secret": 2},
			check: func(t *testing.T, objs []object) {
				c := find[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
				checkBucket(t, "chart key without a bucket", containerEnv(t, "chart key without a bucket", c, nil), nil)
			},
		},
		{
			name: "daemonset with a parent", kind: "DaemonSet",
			values: "kind: DaemonSet\nparent: http://cacheyd.cacheyd.svc.cluster.local:30123",
			want:   map[string]int{"ServiceAccount": 1, "Service": 1, "DaemonSet": 1},
			check: func(t *testing.T, objs []object) {
				args := find[*appsv1.DaemonSet](objs)[0].Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(args, "--parent=http://cacheyd.cacheyd.svc.cluster.local:30123") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--peers") }) {
					t.Errorf("args %q: want --parent and no --peers", args)
				}
			},
		},
		{
			name: "daemonset", values: "kind: DaemonSet", kind: "DaemonSet",
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "DaemonSet": 1},
			check: func(t *testing.T, objs []object) {
				ds := find[*appsv1.DaemonSet](objs)[0]
				if tol := ds.Spec.Template.Spec.Tolerations; len(tol) != 1 || tol[0].Operator != corev1.TolerationOpExists {
					t.Errorf("tolerations %+v, want one tolerating everything", tol)
				}
			},
		},
		{
			name: "persistent", kind: "Deployment", replicas: 1,
			values: `
replicaCount: 1
persistence: {enabled: true, size: 200Gi, storageClassName: gp3}
cache: {diskBytes: 180GiB, memoryBytes: 1GiB}
resources: {requests: {cpu: "1", memory: 1536Mi}, limits: {memory: 2Gi}}
goMemLimit: 1843MiB
`,
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "PersistentVolumeClaim": 1},
			check: func(t *testing.T, objs []object) {
				d := find[*appsv1.Deployment](objs)[0]
				if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("strategy %s, want Recreate for a ReadWriteOnce volume", d.Spec.Strategy.Type)
				}
				if sc := find[*corev1.PersistentVolumeClaim](objs)[0].Spec.StorageClassName; sc == nil || *sc != "gp3" {
					t.Errorf("storageClassName %v, want gp3", sc)
				}
			},
		},
		{
			name: "everything", kind: "Deployment", replicas: 3,
			values: `
replicaCount: 3
registryURLs: {docker.io: "https://mirror.internal", "localhost:5000": "http://127.0.0.1:5000"}
credentialsSecret: cacheyd-credentials
extraArgs: ["--tag-ttl=5m"]
extraEnv: [{name: CACHEYD_LOG_LEVEL, value: debug}]
serviceMonitor: {enabled: true, labels: {release: prometheus}}
prometheusRule: {enabled: true}
grafanaDashboard: {enabled: true}
`,
			want: map[string]int{"ServiceAccount": 1, "Service": 2, "Deployment": 1, "PodDisruptionBudget": 1,
				"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1, "Secret": 2},
			check: func(t *testing.T, objs []object) {
				c := find[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
				args := strings.Join(c.Args, " ")
				for _, want := range []string{"--registry-url=docker.io=https://mirror.internal", "--registry-url=localhost:5000=http://127.0.0.1:5000", "--credentials-file=/etc/cacheyd/credentials/config.json"} {
					if !strings.Contains(args, want) {
						t.Errorf("args %q lack %q", args, want)
					}
				}
				checkRuleCopy(t, "chart PrometheusRule", find[*monitoringv1.PrometheusRule](objs)[0])
				cm := find[*corev1.ConfigMap](objs)[0]
				src, err := os.ReadFile(deployDir("grafana", "cacheyd-dashboard.json"))
				if err != nil {
					t.Fatal(err)
				}
				if cm.Labels["grafana_dashboard"] != "1" || strings.TrimSpace(cm.Data["cacheyd.json"]) != strings.TrimSpace(string(src)) {
					t.Errorf("dashboard ConfigMap does not carry deploy/grafana/cacheyd-dashboard.json with label grafana_dashboard=1")
				}
				sm := find[*monitoringv1.ServiceMonitor](objs)[0]
				if sm.Labels["release"] != "prometheus" || sm.Spec.JobLabel != "app.kubernetes.io/name" {
					t.Errorf("ServiceMonitor labels %v jobLabel %q", sm.Labels, sm.Spec.JobLabel)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := renderChart(t, tt.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			objs := decodeAll(t, "chart "+tt.name, manifests(files))
			got := map[string]int{}
			for _, o := range objs {
				got[o.kind]++
			}
			if !equalCounts(got, tt.want) {
				t.Errorf("objects %v, want %v", got, tt.want)
			}
			pvcs := map[string]*corev1.PersistentVolumeClaim{}
			for _, p := range find[*corev1.PersistentVolumeClaim](objs) {
				pvcs[p.Name] = p
			}
			var pod *corev1.PodSpec
			var selector, podLabels map[string]string
			switch tt.kind {
			case "Deployment":
				d := find[*appsv1.Deployment](objs)[0]
				if d.Spec.Replicas == nil || *d.Spec.Replicas != tt.replicas {
					t.Errorf("replicas %v, want %d", d.Spec.Replicas, tt.replicas)
				}
				pod, selector, podLabels = &d.Spec.Template.Spec, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels
			case "DaemonSet":
				d := find[*appsv1.DaemonSet](objs)[0]
				pod, selector, podLabels = &d.Spec.Template.Spec, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels
			}
			checkSelects(t, selector, podLabels)
			checkPod(t, workload{where: "chart " + tt.name, kind: tt.kind, spec: pod, pvcs: pvcs})
			if !strings.Contains(tt.values, "s3:") {
				// No bucket unless one is named.
				checkBucket(t, "chart "+tt.name, containerEnv(t, "chart "+tt.name, pod.Containers[0], nil), nil)
			}
			svc := clientService(t, "chart "+tt.name, find[*corev1.Service](objs))
			checkService(t, "chart "+tt.name, svc, tt.kind, tt.replicas)
			checkSelects(t, svc.Spec.Selector, podLabels)
			for _, pdb := range find[*policyv1.PodDisruptionBudget](objs) {
				checkSelects(t, pdb.Spec.Selector.MatchLabels, podLabels)
			}
			if tt.check != nil {
				tt.check(t, objs)
			}
			if notes := files[filepath.Join("cacheyd", "templates", "NOTES.txt")]; !strings.Contains(notes, "hosts.toml") {
				t.Errorf("NOTES.txt does not explain the hosts.toml:\n%s", notes)
			}
		})
	}
}

// valuesFile is the chart's values.yaml: where the operator reads what a
// Secret of their own must hold.
func valuesFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + " mine mine-tls" // the names the test gives
}

// checkPeerCertificate checks the certificate the chart makes for the
// replicas: one that parses, its key with it, for the peers Service's
// name, valid for years.
func checkPeerCertificate(t *testing.T, secrets []*corev1.Secret, name, dnsName string) {
	t.Helper()
	for _, s := range secrets {
		if s.Name != name {
			continue
		}
		pair, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
		if err != nil {
			t.Fatalf("Secret %s: %v", name, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.VerifyHostname(dnsName); err != nil || time.Until(leaf.NotAfter) < 365*24*time.Hour {
			t.Errorf("Secret %s: certificate for %v until %s, want %s for years: %v", name, leaf.DNSNames, leaf.NotAfter, dnsName, err)
		}
		return
	}
	t.Errorf("no Secret %s", name)
}

// TestHelmChartRefuses: combinations the chart cannot deploy fail at
// render time with a reason.
func TestHelmChartRefuses(t *testing.T) {
	for _, tt := range []struct{ values, want string }{
		{"kind: StatefulSet", "kind must be Deployment or DaemonSet"},
		{"persistence: {enabled: true}", "replicaCount 1"},
		{"{kind: DaemonSet, persistence: {enabled: true}}", "replicaCount 1"},
		{"peers: {port: 30123}", "peers.port must differ from service.port"},
	} {
		_, err := renderChart(t, tt.values)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("values %q: %v, want an error with %q", tt.values, err, tt.want)
		}
	}
}

// TestHelmChartFilesAreCopies: the chart carries copies of the alert rules
// and the dashboard (a chart cannot read files outside itself); they must
// not drift from the originals in deploy/grafana.
func TestHelmChartFilesAreCopies(t *testing.T) {
	for _, name := range []string{"cacheyd-rules.yaml", "cacheyd-dashboard.json"} {
		orig, err := os.ReadFile(deployDir("grafana", name))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := os.ReadFile(filepath.Join(chartDir, "files", name))
		if err != nil {
			t.Fatal(err)
		}
		if string(orig) != string(cp) {
			t.Errorf("deploy/helm/cacheyd/files/%s differs from deploy/grafana/%s: copy it again", name, name)
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
