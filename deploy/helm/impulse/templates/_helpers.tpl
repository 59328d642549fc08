{{/*
The helpers of OpenIM's openim-push chart, in the subset of template syntax
spec/helpers/gotmpl.lua renders (no trunc: keep names under 63 characters).
*/}}

{{/* Expand the name of the chart. */}}
{{- define "impulse.name" -}}
{{ default .Chart.Name .Values.nameOverride }}
{{- end }}

{{/* Fully qualified app name: <release>-<name>, or fullnameOverride. */}}
{{- define "impulse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride }}
{{- else }}
{{- .Release.Name }}-{{ include "impulse.name" . }}
{{- end }}
{{- end }}

{{/* Create chart name and version as used by the chart label. */}}
{{- define "impulse.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Common labels */}}
{{- define "impulse.labels" -}}
helm.sh/chart: {{ include "impulse.chart" . }}
{{ include "impulse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels */}}
{{- define "impulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "impulse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Create the name of the service account to use */}}
{{- define "impulse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "impulse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The scripts ConfigMap's name: the chart's own or an existing one */}}
{{- define "impulse.scriptsConfigMap" -}}
{{- if .Values.scripts.create }}
{{- include "impulse.fullname" . }}-scripts
{{- else }}
{{- .Values.scripts.configMap }}
{{- end }}
{{- end }}
