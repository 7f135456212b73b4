{{/* The chart's name, as the app.kubernetes.io/name label. */}}
{{- define "cacheyd.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Objects are named after the release; "cacheyd" for a release of that name. */}}
{{- define "cacheyd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cacheyd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cacheyd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cache
{{- end -}}

{{- define "cacheyd.labels" -}}
{{ include "cacheyd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cacheyd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cacheyd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the replicas of a Deployment share their fills (--peers). */}}
{{- define "cacheyd.peers" -}}
{{- if and .Values.peers.enabled (eq .Values.kind "Deployment") (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "cacheyd.daemonset" -}}
{{- if eq .Values.kind "DaemonSet" -}}true{{- else if ne .Values.kind "Deployment" -}}{{- fail "kind must be Deployment or DaemonSet" -}}{{- end -}}
{{- end -}}

{{/* The Secret holding the cluster secret, and its key. */}}
{{- define "cacheyd.clusterSecretName" -}}
{{- .Values.peers.secret.existingSecret | default (printf "%s-cluster" (include "cacheyd.fullname" .)) -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret of the replicas' HTTPS, when on. */}}
{{- define "cacheyd.peerTLSSecretName" -}}
{{- .Values.peers.tls.existingSecret | default (printf "%s-peer-tls" (include "cacheyd.fullname" .)) -}}
{{- end -}}

{{/* The bucket tier's variables, only when a bucket is named; the access
key from the operator's Secret, else cacheyd's credential chain (IRSA, Pod
Identity) finds its own. */}}
{{- define "cacheyd.s3Env" -}}
{{- with .Values.s3 }}
{{- if .bucket }}
# The bucket behind the replicas (docs/storage.md).
- name: CACHEYD_S3_BUCKET
  value: {{ .bucket | quote }}
{{- with .endpoint }}
- name: CACHEYD_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .region }}
- name: CACHEYD_S3_REGION
  value: {{ . | quote }}
{{- end }}
- name: CACHEYD_S3_PREFIX
  value: {{ .prefix | quote }}
- name: CACHEYD_S3_PATH_STYLE
  value: {{ .pathStyle | quote }}
- name: CACHEYD_S3_TIMEOUT
  value: {{ .timeout | quote }}
{{- with .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
