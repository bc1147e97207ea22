{{/* Names and labels shared by the templates. */}}
{{- define "pushbridge.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pushbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pushbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pushbridge.labels" -}}
{{ include "pushbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret the PUSHBRIDGE_* secrets come from: the operator's, or the chart's. */}}
{{- define "pushbridge.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "pushbridge.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The port of a "HOST:PORT" listener setting. */}}
{{- define "pushbridge.port" -}}
{{- regexReplaceAll "^.*:" . "" -}}
{{- end -}}
