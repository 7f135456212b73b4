// Package deploytest checks the deployment files under deploy/: Kubernetes
// manifests, the Helm chart, the Terraform example, Grafana dashboards and
// Prometheus alert rules. It lives in its own module so that the Kubernetes,
// Helm, HCL and PromQL libraries stay out of cacheyd's go.mod.
package deploytest
