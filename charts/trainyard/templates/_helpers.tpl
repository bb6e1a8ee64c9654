{{/* The chart name, for the app.kubernetes.io/name label. */}}
{{- define "trainyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name, with the chart name
appended unless it is already in it. Trimmed to leave room for suffixes such
as "-validating-webhook-configuration".
*/}}
{{- define "trainyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 30 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trainyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "trainyard.labels" -}}
helm.sh/chart: {{ include "trainyard.chart" . }}
app.kubernetes.io/name: {{ include "trainyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trainyard
{{- end }}

{{/* Selector labels of the manager pods. */}}
{{- define "trainyard.managerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "trainyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{/* Selector labels of the agent pod. */}}
{{- define "trainyard.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "trainyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "trainyard.serviceAccountName" -}}
{{- if .Values.manager.serviceAccount.create }}
{{- default (include "trainyard.fullname" .) .Values.manager.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.manager.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trainyard.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (printf "%s-agent" (include "trainyard.fullname" .)) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: the digest when set, else the tag (default appVersion). */}}
{{- define "trainyard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespace of the bridge's objects. */}}
{{- define "trainyard.bridgeNamespace" -}}
{{- default .Release.Namespace .Values.bridge.namespace }}
{{- end }}

{{/* The namespaces where the manager keeps Secrets, space-separated. */}}
{{- define "trainyard.secretNamespaces" -}}
{{- $ns := list .Release.Namespace }}
{{- if .Values.bridge.enabled }}
{{- $ns = append $ns (include "trainyard.bridgeNamespace" .) }}
{{- $ns = concat $ns .Values.bridge.tenants }}
{{- end }}
{{- $ns | uniq | join " " }}
{{- end }}

{{- define "trainyard.registrationSecretName" -}}
{{- default (printf "%s-registration" (include "trainyard.fullname" .)) .Values.bridge.registration.existingSecret }}
{{- end }}

{{/* The webhook Service's DNS names, which the serving certificate covers. */}}
{{- define "trainyard.webhookDNSNames" -}}
{{- $svc := printf "%s-webhook" (include "trainyard.fullname" .) }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $svc .Release.Namespace $svc .Release.Namespace }}
{{- end }}

{{/*
The agent's discovery sources, in order, as a JSON list: agent.sources, then
helm with agent.helmReleases. An unknown name fails the render;
trainyard.knownAgentSources is generated (templates/generated/rbac-agent.yaml)
from the packages under agent/source.
*/}}
{{- define "trainyard.agentSources" -}}
{{- $sources := list }}
{{- range .Values.agent.sources }}
{{- if not (has . $sources) }}
{{- $sources = append $sources . }}
{{- end }}
{{- end }}
{{- if and .Values.agent.helmReleases (not (has "helm" $sources)) }}
{{- $sources = append $sources "helm" }}
{{- end }}
{{- $known := include "trainyard.knownAgentSources" . | fromJsonArray }}
{{- range $sources }}
{{- if not (has . $known) }}
{{- fail (printf "agent.sources: no discovery source %q (known: %s)" . (join ", " $known)) }}
{{- end }}
{{- end }}
{{- if not $sources }}
{{- fail "agent.sources names no discovery source" }}
{{- end }}
{{- toJson $sources }}
{{- end }}
