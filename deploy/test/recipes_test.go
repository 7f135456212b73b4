package deploytest

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/dustin/go-humanize"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// minDiskShare is the smallest fraction of a claim --disk-bytes should
// take: a volume bought for the cache and left mostly empty is a recipe
// someone forgot to size.
const minDiskShare = 0.5

// maxEphemeralWithClaim is the most node disk a pod whose cache is on a
// claim should ask for: only logs and pending writes are left on the node.
const maxEphemeralWithClaim = 1 << 30

// helmCommand is one "helm install" or "helm upgrade --install" of the
// chart in the docs.
type helmCommand struct {
	line      string
	release   string
	namespace string
	values    map[string]any
}

// docsHelmRecipes returns the helm commands of each ```sh block of
// docs/kubernetes.md that installs the chart, a block per recipe.
func docsHelmRecipes(t *testing.T) [][]helmCommand {
	t.Helper()
	src, err := os.ReadFile(deployDir("..", "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	var recipes [][]helmCommand
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(src), -1) {
		var cmds []helmCommand
		for _, line := range strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n") {
			if line, _, _ = strings.Cut(line, "#"); !strings.HasPrefix(strings.TrimSpace(line), "helm ") {
				continue
			}
			cmds = append(cmds, parseHelm(t, strings.TrimSpace(line)))
		}
		if len(cmds) > 0 {
			recipes = append(recipes, cmds)
		}
	}
	return recipes
}

// parseHelm reads the arguments of one helm command the way helm does:
// the release, -n, and every --set and --set-string in order.
func parseHelm(t *testing.T, line string) helmCommand {
	t.Helper()
	cmd := helmCommand{line: line, namespace: "default", values: map[string]any{}}
	var positional []string
	args := strings.Fields(line)[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			i++
			if i == len(args) {
				t.Fatalf("%s: %s has no value", line, a)
			}
			return strings.Trim(args[i], "'\"")
		}
		switch {
		case a == "-n" || a == "--namespace":
			cmd.namespace = next()
		case a == "--set":
			if err := strvals.ParseInto(next(), cmd.values); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		case a == "--set-string":
			if err := strvals.ParseIntoString(next(), cmd.values); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		case strings.HasPrefix(a, "-"):
			// --create-namespace, --install: no value.
		default:
			positional = append(positional, a)
		}
	}
	// install|upgrade RELEASE CHART
	if len(positional) != 3 || positional[2] != "deploy/helm/cacheyd" {
		t.Fatalf("%s: want helm install|upgrade RELEASE deploy/helm/cacheyd", line)
	}
	cmd.release = positional[1]
	return cmd
}

// renderRelease renders the chart as one release with values over its
// defaults, strictly, and decodes its objects.
func renderRelease(t *testing.T, cmd helmCommand) []object {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	rv, err := chartutil.ToRenderValues(chrt, cmd.values, chartutil.ReleaseOptions{
		Name: cmd.release, Namespace: cmd.namespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("%s: render values: %v", cmd.line, err)
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, rv)
	if err != nil {
		t.Fatalf("%s: render: %v", cmd.line, err)
	}
	return decodeAll(t, cmd.line, manifests(files))
}

// TestHelmRecipesInDocs renders each Helm recipe of docs/kubernetes.md the
// way a reader runs it: its releases together claim no node port twice, a
// node-local release's parent is another release's Service, and every
// pod's disk budget fits its volume.
func TestHelmRecipesInDocs(t *testing.T) {
	sawDaemonSet, sawClaim := false, false
	for _, recipe := range docsHelmRecipes(t) {
		claimed := map[int32]string{} // node port → the release taking it
		services := map[string]*corev1.Service{}
		var parents []string
		for _, cmd := range recipe {
			objs := renderRelease(t, cmd)
			var pod *corev1.PodSpec
			kind := "Deployment"
			if ds := find[*appsv1.DaemonSet](objs); len(ds) == 1 {
				pod, kind, sawDaemonSet = &ds[0].Spec.Template.Spec, "DaemonSet", true
			} else {
				pod = &find[*appsv1.Deployment](objs)[0].Spec.Template.Spec
			}
			pvcs := map[string]*corev1.PersistentVolumeClaim{}
			for _, p := range find[*corev1.PersistentVolumeClaim](objs) {
				pvcs[p.Name] = p
			}
			checkPod(t, workload{where: cmd.line, kind: kind, spec: pod, pvcs: pvcs})
			sawClaim = checkDiskFits(t, cmd.line, pod, pvcs) || sawClaim

			// Two releases of one name are alternatives, not neighbours.
			claim := func(port int32, what string) {
				if other, ok := claimed[port]; ok && other != cmd.release {
					t.Errorf("%s: %s %d is claimed by release %s too", cmd.line, what, port, other)
				}
				claimed[port] = cmd.release
			}
			for _, s := range find[*corev1.Service](objs) {
				services[s.Name+"."+cmd.namespace] = s
				for _, p := range s.Spec.Ports {
					if s.Spec.Type == corev1.ServiceTypeNodePort && p.NodePort != 0 {
						claim(p.NodePort, "NodePort of Service "+s.Name)
					}
				}
			}
			for _, c := range pod.Containers {
				for _, p := range c.Ports {
					if p.HostPort != 0 {
						claim(p.HostPort, "hostPort of "+kind)
					}
				}
				for _, a := range c.Args {
					if p, ok := strings.CutPrefix(a, "--parent="); ok {
						parents = append(parents, p)
					}
				}
			}
		}
		for _, p := range parents {
			checkParentURL(t, p, services)
		}
	}
	if !sawDaemonSet || !sawClaim {
		t.Errorf("docs/kubernetes.md has no Helm recipe for the node-local layout (%v) or the persistent one (%v)", sawDaemonSet, sawClaim)
	}
}

// checkDiskFits checks that --disk-bytes uses the cache's claim without
// outgrowing it and that a pod on a claim does not ask for the node's disk
// as if the cache were there; it reports whether the cache is on a claim.
func checkDiskFits(t *testing.T, where string, pod *corev1.PodSpec, pvcs map[string]*corev1.PersistentVolumeClaim) bool {
	t.Helper()
	c := pod.Containers[0]
	var disk string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--disk-bytes="); ok {
			disk = v
		}
	}
	diskBytes := parseSize(t, where, "--disk-bytes", disk, 20<<30)
	for _, v := range pod.Volumes {
		if v.Name != "cache" || v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, ok := pvcs[v.PersistentVolumeClaim.ClaimName]
		if !ok {
			t.Errorf("%s: claim %s is not in the release", where, v.PersistentVolumeClaim.ClaimName)
			return true
		}
		q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if float64(diskBytes) < minDiskShare*float64(q.Value()) {
			t.Errorf("%s: --disk-bytes=%s leaves most of the %s claim unused", where, disk, humanize.IBytes(uint64(q.Value())))
		}
		if req := c.Resources.Requests[corev1.ResourceEphemeralStorage]; req.Value() > maxEphemeralWithClaim {
			t.Errorf("%s: ephemeral-storage request %s with the cache on a claim: the node's disk holds none of it", where, req.String())
		}
		return true
	}
	return false
}

// checkParentURL checks that a node-local release's --parent names a
// Service of the same recipe at its port.
func checkParentURL(t *testing.T, parent string, services map[string]*corev1.Service) {
	t.Helper()
	u, err := url.Parse(parent)
	if err != nil {
		t.Errorf("--parent=%s: %v", parent, err)
		return
	}
	labels := strings.Split(u.Hostname(), ".")
	if len(labels) < 2 {
		t.Errorf("--parent=%s: name the Service with its namespace, as another namespace's pods resolve it", parent)
		return
	}
	s, ok := services[labels[0]+"."+labels[1]]
	if !ok {
		t.Errorf("--parent=%s names no Service of the recipe", parent)
		return
	}
	if fmt.Sprint(s.Spec.Ports[0].Port) != u.Port() {
		t.Errorf("--parent=%s: Service %s listens on %d", parent, s.Name, s.Spec.Ports[0].Port)
	}
}
