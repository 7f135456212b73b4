package deploytest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// minMemoryHeadroom is what the container needs beyond --memory-bytes:
// request buffers, fills, the disk index and the Go runtime.
const minMemoryHeadroom = 128 << 20

// maxDiskShare is the largest fraction of the cache volume --disk-bytes may
// take: fills in flight are written before eviction makes room.
const maxDiskShare = 0.9

// workload is a pod template and what surrounds it in the same build.
type workload struct {
	where string
	kind  string // Deployment or DaemonSet
	spec  *corev1.PodSpec
	pvcs  map[string]*corev1.PersistentVolumeClaim
	// The ConfigMaps of the same build, which envFrom may name.
	configMaps map[string]*corev1.ConfigMap
}

// accessKeys are the variables of an S3 access key, which a pod takes from
// a Secret of the operator's.
var accessKeys = map[string]string{
	"AWS_ACCESS_KEY_ID":     "AKIAEXAMPLEKEY000000",
	"AWS_SECRET_ACCESS_KEY": "an-example-secret-key-for-the-test-0123",
}

// checkPod checks a cacheyd pod: the restricted Pod Security Standard,
// probes on /healthz and /readyz, a command line cacheyd accepts, and
// resources that fit its flags.
func checkPod(t *testing.T, w workload) {
	t.Helper()
	spec, where := w.spec, w.where
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", where, len(spec.Containers))
	}
	c := spec.Containers[0]
	where += " container " + c.Name

	// Security: non-root as the image's user, nothing extra.
	psc := spec.SecurityContext
	switch {
	case psc == nil:
		t.Errorf("%s: no pod securityContext", where)
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		t.Errorf("%s: pod runAsNonRoot is not true", where)
	case psc.RunAsUser == nil || *psc.RunAsUser != 65532:
		t.Errorf("%s: pod runAsUser is not 65532 (the Dockerfile's user)", where)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: uses a host namespace", where)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it never uses", where)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root filesystem is writable", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", where)
	case sc.Capabilities == nil || len(sc.Capabilities.Add) > 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
		t.Errorf("%s: capabilities %+v, want drop [ALL] and nothing added", where, sc.Capabilities)
	}

	// The image: a placeholder replaced by kustomize's images: or Helm's
	// image.repository and tag.
	if repo, tag, ok := strings.Cut(c.Image, ":"); !ok || !strings.Contains(repo, "/") || tag == "" {
		t.Errorf("%s: image %q is not a repository:tag", where, c.Image)
	}

	// The command line: flags cacheyd knows, values it accepts.
	if len(c.Command) > 0 {
		t.Errorf("%s: command %q overrides the image's entrypoint", where, c.Command)
	}
	env := containerEnv(t, where, c, w.configMaps)
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--cluster-secret") {
			t.Errorf("%s: the cluster secret is an argument, which ps shows: pass CACHEYD_CLUSTER_SECRET from a Secret", where)
		}
	}
	checkCacheydAccepts(t, where, c.Args, env)
	flags := map[string]string{}
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[name] = value
	}

	// Port and probes.
	_, port, _ := strings.Cut(flags["listen"], ":")
	var http *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "http" {
			http = &c.Ports[i]
		}
	}
	if http == nil || port == "" || fmt.Sprint(http.ContainerPort) != port {
		t.Errorf("%s: port named http %+v does not match --listen=%s", where, http, flags["listen"])
	}
	if w.kind == "DaemonSet" && (http == nil || http.HostPort != 30123) {
		t.Errorf("%s: a DaemonSet needs hostPort 30123, has %+v", where, http)
	}
	if w.kind != "DaemonSet" && http != nil && http.HostPort != 0 {
		t.Errorf("%s: a %s must not take a hostPort", where, w.kind)
	}
	checkProbe(t, where+" readinessProbe", c.ReadinessProbe, "/readyz")
	checkProbe(t, where+" livenessProbe", c.LivenessProbe, "/healthz")
	checkProbe(t, where+" startupProbe", c.StartupProbe, "/healthz")

	// Cache volume: mounted where --cache-dir says, bounded, with room.
	var cacheVol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == flags["cache-dir"] {
			cacheVol = m.Name
		}
	}
	if cacheVol == "" {
		t.Errorf("%s: no volume mounted at --cache-dir=%q", where, flags["cache-dir"])
	}
	diskBytes := parseSize(t, where, "--disk-bytes", flags["disk-bytes"], 20<<30)
	var volBytes int64
	for _, v := range spec.Volumes {
		if v.Name != cacheVol {
			continue
		}
		switch {
		case v.EmptyDir != nil:
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("%s: emptyDir %s has no sizeLimit", where, v.Name)
				continue
			}
			volBytes = v.EmptyDir.SizeLimit.Value()
			if lim, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; !ok || lim.Cmp(*v.EmptyDir.SizeLimit) < 0 {
				t.Errorf("%s: ephemeral-storage limit %v is below the cache's sizeLimit %v", where, lim.String(), v.EmptyDir.SizeLimit)
			}
		case v.PersistentVolumeClaim != nil:
			pvc, ok := w.pvcs[v.PersistentVolumeClaim.ClaimName]
			if !ok {
				t.Errorf("%s: claim %s is not in the same build", where, v.PersistentVolumeClaim.ClaimName)
				continue
			}
			q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
			volBytes = q.Value()
		default:
			t.Errorf("%s: cache volume %s is neither an emptyDir nor a claim", where, v.Name)
		}
	}
	if volBytes > 0 && float64(diskBytes) > maxDiskShare*float64(volBytes) {
		t.Errorf("%s: --disk-bytes=%s is more than %.0f%% of the %s cache volume", where,
			flags["disk-bytes"], maxDiskShare*100, humanize.IBytes(uint64(volBytes)))
	}

	// Memory: the limit holds the memory tier and headroom; GOMEMLIMIT
	// sits between them.
	memBytes := parseSize(t, where, "--memory-bytes", flags["memory-bytes"], 256<<20)
	lim, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Errorf("%s: no memory limit", where)
	} else if lim.Value() < memBytes+minMemoryHeadroom {
		t.Errorf("%s: memory limit %s is less than --memory-bytes=%s plus %s", where, lim.String(),
			humanize.IBytes(uint64(memBytes)), humanize.IBytes(minMemoryHeadroom))
	}
	if req, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok || req.Value() < memBytes {
		t.Errorf("%s: memory request %s is below --memory-bytes", where, req.String())
	}
	if gml, ok := env["GOMEMLIMIT"]; ok {
		n := parseSize(t, where, "GOMEMLIMIT", gml, 0)
		if n <= memBytes || (lim.Value() > 0 && n >= lim.Value()) {
			t.Errorf("%s: GOMEMLIMIT=%s is not between --memory-bytes and the memory limit %s", where, gml, lim.String())
		}
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Errorf("%s: no CPU request", where)
	}

	// Shutdown: the grace period outlasts --shutdown-timeout.
	shutdown := 30 * time.Second
	if s, ok := flags["shutdown-timeout"]; ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("%s: --shutdown-timeout=%s: %v", where, s, err)
		}
		shutdown = d
	}
	if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds does not outlast --shutdown-timeout=%s", where, shutdown)
	}
}

// containerEnv is the container's environment as cacheyd would see it:
// envFrom ConfigMaps of the same build, then env; values from the API or
// a Secret replaced by examples of the right form.
func containerEnv(t *testing.T, where string, c corev1.Container, configMaps map[string]*corev1.ConfigMap) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		// Variables from a ConfigMap of the same build (the bucket's
		// settings): checked as if they were written out.
		ref := from.ConfigMapRef
		if ref == nil {
			t.Errorf("%s: envFrom %+v is not a ConfigMap; the test cannot check it", where, from)
			continue
		}
		cm, ok := configMaps[ref.Name]
		if !ok {
			t.Errorf("%s: envFrom names ConfigMap %s, which is not in the same build", where, ref.Name)
			continue
		}
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.Name == "POD_IP" && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
			// The pod's address, for --advertise: any address will do here.
			env[e.Name] = "10.0.0.1"
			continue
		}
		if e.ValueFrom != nil && e.Name == "CACHEYD_CLUSTER_SECRET" && e.ValueFrom.SecretKeyRef != nil {
			// From a Secret (checkPeers looks at which): any secret of
			// the right form will do here.
			env[e.Name] = "a-cluster-secret-for-the-test-0123456789"
			continue
		}
		if example, ok := accessKeys[e.Name]; ok && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			// The bucket's access key, from a Secret under its own name.
			if e.ValueFrom.SecretKeyRef.Key != e.Name {
				t.Errorf("%s: env %s from key %s of its Secret, want key %s", where, e.Name, e.ValueFrom.SecretKeyRef.Key, e.Name)
			}
			env[e.Name] = example
			continue
		}
		if e.ValueFrom != nil {
			t.Errorf("%s: env %s comes from elsewhere; the test cannot check it", where, e.Name)
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

func checkProbe(t *testing.T, where string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: missing or not an HTTP GET", where)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http") {
		t.Errorf("%s: GET %s on %s, want %s on port http", where, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// parseSize reads a size the way cacheyd does (256MiB, 20GiB, plain
// bytes); empty means def, cacheyd's default.
func parseSize(t *testing.T, where, what, s string, def int64) int64 {
	t.Helper()
	if s == "" {
		return def
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		t.Errorf("%s: %s=%q: %v", where, what, s, err)
	}
	return int64(n)
}
