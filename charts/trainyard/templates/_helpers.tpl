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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
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

{{/* The namespaces the bridge serves (its own and its tenants'), space-separated. */}}
{{- define "trainyard.bridgeNamespaces" -}}
{{- concat (list (include "trainyard.bridgeNamespace" .)) .Values.bridge.tenants | uniq | join " " }}
{{- end }}

{{/* Selector labels of the bridge pods. */}}
{{- define "trainyard.bridgeSelectorLabels" -}}
app.kubernetes.io/name: {{ include "trainyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bridge
{{- end }}

{{- define "trainyard.bridgeServiceAccountName" -}}
{{- if .Values.bridge.serviceAccount.create }}
{{- default (printf "%s-bridge" (include "trainyard.fullname" .)) .Values.bridge.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.bridge.serviceAccount.name }}
{{- end }}
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

{{/*
The namespaces where the manager only reads NotificationTargets' Secrets
(get, nothing else), space-separated: notifications.namespaces not already
among the secretNamespaces.
*/}}
{{- define "trainyard.notificationNamespaces" -}}
{{- $own := include "trainyard.secretNamespaces" . | splitList " " }}
{{- $ns := list }}
{{- if .Values.notifications.enabled }}
{{- range .Values.notifications.namespaces }}
{{- if not (has . $own) }}
{{- $ns = append $ns . }}
{{- end }}
{{- end }}
{{- end }}
{{- $ns | uniq | join " " }}
{{- end }}

{{- define "trainyard.registrationSecretName" -}}
{{- default (printf "%s-registration" (include "trainyard.fullname" .)) .Values.bridge.registration.existingSecret }}
{{- end }}

{{/*
The DNS names the manager's serving certificate covers: the webhook
Service's, and the metrics Service's (the metrics endpoint serves the same
certificate, so that Prometheus can verify it).
*/}}
{{- define "trainyard.webhookDNSNames" -}}
{{- $names := list }}
{{- range list "webhook" "metrics" }}
{{- $svc := printf "%s-%s" (include "trainyard.fullname" $) . }}
{{- $names = append $names (printf "%s.%s.svc" $svc $.Release.Namespace) }}
{{- $names = append $names (printf "%s.%s.svc.cluster.local" $svc $.Release.Namespace) }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/*
The Secret holding the CA (ca.crt) of the manager's serving certificate for
clients that verify it: in self-signed mode the one the manager keeps with
the CA bundle alone (its -webhook-tls Secret also holds the CA's private key).
*/}}
{{- define "trainyard.servingCASecret" -}}
{{- if .Values.webhook.certManager.enabled }}
{{- printf "%s-webhook-cert" (include "trainyard.fullname" .) }}
{{- else }}
{{- printf "%s-webhook-ca" (include "trainyard.fullname" .) }}
{{- end }}
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

{{/*
Whether the bridge serves its metrics with a certificate Prometheus can
verify: HTTPS metrics and a CA to sign it (the webhook's, self-signed by the
manager or cert-manager's). Otherwise the bridge's certificate is
self-signed at its start and the bridge's ServiceMonitor must be given a
tlsConfig.
*/}}
{{- define "trainyard.bridgeMetricsTLS" -}}
{{- if and .Values.manager.enabled .Values.bridge.enabled .Values.metrics.enabled .Values.metrics.secure .Values.webhook.enabled }}true{{ end }}
{{- end }}

{{/* The Secret of the bridge's metrics certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "trainyard.bridgeMetricsCertSecret" -}}
{{- if .Values.webhook.certManager.enabled }}
{{- printf "%s-bridge-metrics-cert" (include "trainyard.fullname" .) }}
{{- else }}
{{- printf "%s-bridge-metrics-tls" (include "trainyard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The DNS names of the bridge's metrics Service, comma-separated. */}}
{{- define "trainyard.bridgeMetricsDNSNames" -}}
{{- $svc := printf "%s-bridge-metrics" (include "trainyard.fullname" .) }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $svc .Release.Namespace $svc .Release.Namespace }}
{{- end }}
