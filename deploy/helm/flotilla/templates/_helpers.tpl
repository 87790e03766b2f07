{{/* Names */}}
{{- define "flotilla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flotilla.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The services, in start order; the binary's subcommand of each is its name. */}}
{{- define "flotilla.serviceNames" -}}
accounts tasks assistant audit web gateway
{{- end }}

{{/* Services with their own PostgreSQL database (and migrations). */}}
{{- define "flotilla.dbServices" -}}
accounts tasks assistant audit
{{- end }}

{{/* Labels: call with (dict "root" $ "component" "gateway") */}}
{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flotilla.labels" -}}
{{ include "flotilla.selectorLabels" . }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "flotilla.chart" .root }}
{{- end }}

{{- define "flotilla.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "flotilla.secretName" -}}
{{- default (printf "%s-secrets" (include "flotilla.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Base URL of a Flotilla service: (dict "root" $ "svc" "accounts") */}}
{{- define "flotilla.serviceUrl" -}}
http://{{ include "flotilla.fullname" .root }}-{{ .svc }}:8080
{{- end }}

{{- define "flotilla.natsUrl" -}}
{{- if .Values.nats.enabled -}}
nats://{{ include "flotilla.fullname" . }}-nats:4222
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false (e.g. nats://nats.messaging:4222)" .Values.externalNats.url -}}
{{- end -}}
{{- end }}

{{- define "flotilla.redisUrl" -}}
{{- if .Values.redis.enabled -}}
redis://{{ include "flotilla.fullname" . }}-redis:6379
{{- else -}}
{{- .Values.externalRedis.url -}}
{{- end -}}
{{- end }}

{{/*
The FLOTILLA_* settings of one service (non-secret), as YAML: (dict "root" $ "svc" "tasks").
Precedence: commonConfig < what the chart wires (URLs, listen address) < services.<svc>.config.
*/}}
{{- define "flotilla.serviceConfig" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $s := index $root.Values.services $svc -}}
{{- $c := dict -}}
{{- range $k, $v := $root.Values.commonConfig }}{{ $_ := set $c $k (toString $v) }}{{ end -}}
{{- $_ := set $c "FLOTILLA_LISTEN" "0.0.0.0:8080" -}}
{{- if has $svc (splitList " " (include "flotilla.dbServices" $root)) }}
{{- $_ := set $c "FLOTILLA_NATS_URL" (include "flotilla.natsUrl" $root) -}}
{{- end -}}
{{- /* Services that verify tokens with the keys accounts publishes (JWKS). */ -}}
{{- if has $svc (list "gateway" "tasks" "assistant" "audit") }}
{{- $_ := set $c "FLOTILLA_ACCOUNTS_URL" (include "flotilla.serviceUrl" (dict "root" $root "svc" "accounts")) -}}
{{- end -}}
{{- /* Redis: rate limits (gateway), login throttling (accounts), and token revocations, which
     every service that verifies tokens must see at once. */ -}}
{{- if has $svc (list "gateway" "accounts" "tasks" "assistant" "audit") }}
{{- $redis := include "flotilla.redisUrl" $root -}}
{{- if $redis }}{{ $_ := set $c "FLOTILLA_REDIS_URL" $redis }}{{ end -}}
{{- end -}}
{{- if eq $svc "gateway" }}
{{- range $up := list "tasks" "audit" "assistant" }}
{{- $_ := set $c (printf "FLOTILLA_%s_URL" (upper $up)) (include "flotilla.serviceUrl" (dict "root" $root "svc" $up)) -}}
{{- end -}}
{{- if $root.Values.services.web.enabled }}
{{- $_ := set $c "FLOTILLA_WEB_URL" (include "flotilla.serviceUrl" (dict "root" $root "svc" "web")) -}}
{{- end -}}
{{- end -}}
{{- if eq $svc "assistant" }}
{{- $_ := set $c "FLOTILLA_TASKS_URL" (include "flotilla.serviceUrl" (dict "root" $root "svc" "tasks")) -}}
{{- if $root.Values.ollama.enabled }}
{{- $_ := set $c "FLOTILLA_OLLAMA_URL" (printf "http://%s-ollama:11434" (include "flotilla.fullname" $root)) -}}
{{- end -}}
{{- end -}}
{{- if eq $svc "web" }}
{{- $_ := set $c "FLOTILLA_GATEWAY_URL" (include "flotilla.serviceUrl" (dict "root" $root "svc" "gateway")) -}}
{{- end -}}
{{- range $k, $v := $s.config }}{{ $_ := set $c $k (toString $v) }}{{ end -}}
{{- /* An empty value means "the binary's default": leave it out. */ -}}
{{- range $k, $v := $c }}{{ if eq $v "" }}{{ $_ := unset $c $k }}{{ end }}{{ end -}}
{{- toYaml $c }}
{{- end }}

{{/* Secret-backed variables of one service: (dict "root" $ "svc" "accounts") */}}
{{- define "flotilla.secretEnv" -}}
{{- $secret := include "flotilla.secretName" .root -}}
{{- if has .svc (splitList " " (include "flotilla.dbServices" .root)) }}
- name: FLOTILLA_DATABASE_URL
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: {{ .svc }}-database-url }
{{- end }}
{{- if eq .svc "accounts" }}
- name: FLOTILLA_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: admin-password, optional: true }
{{- end }}
{{- if eq .svc "assistant" }}
- name: FLOTILLA_OPENAI_API_KEY
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: openai-api-key, optional: true }
{{- end }}
{{- if eq .svc "web" }}
- name: FLOTILLA_WEB_SESSION_KEY
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: web-session-key }
{{- end }}
{{- end }}

{{/* The "restricted" Pod Security Standard, for every pod of the chart. */}}
{{- define "flotilla.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 65532 }}
runAsGroup: {{ .uid | default 65532 }}
fsGroup: {{ .uid | default 65532 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "flotilla.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
