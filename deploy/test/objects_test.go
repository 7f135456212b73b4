package deploytest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded Kubernetes object and where it came from.
type object struct {
	source string // file or build, and the document's index
	kind   string
	name   string
	obj    any // *appsv1.Deployment, *corev1.Service, ...
}

// newTyped returns an empty Go value for apiVersion and kind; nil for a
// kind cacheyd's deployment files should not contain.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

// decodeAll splits a multi-document YAML stream and decodes every document
// strictly into its Kubernetes API type: an unknown or misspelt field, a
// duplicate key, a wrong type or a malformed quantity fails.
func decodeAll(t *testing.T, source string, data []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range splitYAML(data) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Errorf("%s#%d: %v", source, i, err)
			continue
		}
		if meta.Kind == "" && meta.APIVersion == "" {
			continue // an empty document (a template rendered to nothing)
		}
		where := fmt.Sprintf("%s#%d (%s %s)", source, i, meta.Kind, meta.Metadata.Name)
		typed := newTyped(meta.APIVersion, meta.Kind)
		if typed == nil {
			t.Errorf("%s: unexpected apiVersion/kind %s %s", where, meta.APIVersion, meta.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, typed); err != nil {
			t.Errorf("%s: does not decode strictly: %v", where, err)
			continue
		}
		if meta.Metadata.Name == "" {
			t.Errorf("%s: no metadata.name", where)
		}
		out = append(out, object{source: where, kind: meta.Kind, name: meta.Metadata.Name, obj: typed})
	}
	return out
}

// splitYAML splits a stream at "---" document separators.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	docs = append(docs, cur.Bytes())
	var out [][]byte
	for _, d := range docs {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// find returns the objects of kind.
func find[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}
