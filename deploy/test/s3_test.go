package deploytest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// bucketEnv is the part of a container's environment that configures the
// bucket tier: cacheyd's CACHEYD_S3_* variables and an access key.
func bucketEnv(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if _, key := accessKeys[k]; key || strings.HasPrefix(k, "CACHEYD_S3_") {
			out[k] = v
		}
	}
	return out
}

// checkBucket checks that the bucket tier's variables are exactly want
// (none at all when want is empty: no bucket, no half-configured tier).
func checkBucket(t *testing.T, where string, env, want map[string]string) {
	t.Helper()
	got := bucketEnv(env)
	if maps.Equal(got, want) {
		return
	}
	show := func(m map[string]string) string {
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(&b, "\n  %s=%s", k, m[k])
		}
		return b.String()
	}
	t.Errorf("%s: the bucket tier's variables are%s\nwant%s", where, show(got), show(want))
}

// TestKustomizeS3Component builds the s3 component into the operator's
// kustomization that docs/kubernetes.md shows, over each layout: the bucket named in the
// ConfigMap the component's patch reads (whose generated name the patch
// follows), IRSA by the ServiceAccount's annotation. The Deployment reads the bucket, a node-local DaemonSet
// does not (it asks the Deployment).
func TestKustomizeS3Component(t *testing.T) {
	for _, layout := range []string{"base", "overlays/persistent", "overlays/node-local"} {
		t.Run(layout, func(t *testing.T) {
			dir := t.TempDir()
			k := strings.NewReplacer(
				"../cacheyd/deploy/kubernetes/base", rel(t, dir, deployDir("kubernetes", layout)),
				"../cacheyd/deploy/kubernetes/components/s3", rel(t, dir, deployDir("kubernetes", "components", "s3")),
			).Replace(docsKustomization(t))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			where := "kustomize " + layout + " with components/s3"
			objs := decodeAll(t, where, kustomize(t, dir))
			for _, o := range objs {
				if o.kind != "Namespace" && o.obj.(interface{ GetNamespace() string }).GetNamespace() != "cacheyd" {
					t.Errorf("%s: not in namespace cacheyd", o.source)
				}
			}
			cms := map[string]*corev1.ConfigMap{}
			for _, cm := range find[*corev1.ConfigMap](objs) {
				cms[cm.Name] = cm
			}
			pvcs := map[string]*corev1.PersistentVolumeClaim{}
			for _, p := range find[*corev1.PersistentVolumeClaim](objs) {
				pvcs[p.Name] = p
			}
			d := find[*appsv1.Deployment](objs)[0]
			w := workload{where: where + " Deployment", kind: "Deployment", spec: &d.Spec.Template.Spec, pvcs: pvcs, configMaps: cms}
			checkPod(t, w)
			checkBucket(t, w.where, containerEnv(t, w.where, w.spec.Containers[0], cms), map[string]string{
				"CACHEYD_S3_BUCKET": "my-cacheyd-bucket", "CACHEYD_S3_REGION": "eu-west-1",
				"AWS_ACCESS_KEY_ID": accessKeys["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": accessKeys["AWS_SECRET_ACCESS_KEY"],
			})
			for _, e := range w.spec.Containers[0].Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && strings.HasPrefix(e.Name, "AWS_") &&
					(ref.SecretKeyRef.Name != "cacheyd-s3-credentials" || ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional) {
					t.Errorf("%s: env %s from %+v, want the optional Secret cacheyd-s3-credentials (IRSA needs none)", w.where, e.Name, ref.SecretKeyRef)
				}
			}
			for _, ds := range find[*appsv1.DaemonSet](objs) {
				w := workload{where: where + " DaemonSet", kind: "DaemonSet", spec: &ds.Spec.Template.Spec, pvcs: pvcs, configMaps: cms}
				checkPod(t, w)
				checkBucket(t, w.where, containerEnv(t, w.where, w.spec.Containers[0], cms), nil)
			}
			sa := find[*corev1.ServiceAccount](objs)
			if len(sa) != 1 || sa[0].Annotations["eks.amazonaws.com/role-arn"] == "" || sa[0].AutomountServiceAccountToken == nil || *sa[0].AutomountServiceAccountToken {
				t.Errorf("%s: ServiceAccounts %+v, want one with the IRSA role and no Kubernetes API token", where, sa)
			}
		})
	}
}

// rel is target's path from dir: kustomize takes other kustomizations by
// relative path only.
func rel(t *testing.T, dir, target string) string {
	t.Helper()
	r, err := filepath.Rel(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// docsKustomization is the kustomization with components/s3 that
// docs/kubernetes.md shows, paths as written there.
func docsKustomization(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(src), -1) {
		if strings.Contains(m[1], "components/s3") {
			return m[1]
		}
	}
	t.Fatal("docs/kubernetes.md shows no kustomization with components/s3")
	return ""
}
