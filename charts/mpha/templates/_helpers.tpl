{{/* Names and labels. */}}
{{- define "mpha.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mpha.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mpha.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mpha.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mpha.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mpha.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "mpha.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mpha.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mpha.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
mpha.config: the agent's configuration, the user's config: block merged over the agent's
defaults (_config.tpl, generated from agent.Config), with secrets.names following
kubernetes.installModel as Config.Default does. The ConfigMap holds it and the RBAC follows it.
*/}}
{{- define "mpha.config" -}}
{{- $c := mergeOverwrite (fromYaml (include "mpha.config.defaults" .)) (deepCopy (default dict .Values.config)) -}}
{{- if not $c.secrets.names -}}
{{- $names := fromYaml (include "mpha.config.secretNames" .) -}}
{{- $_ := set $c.secrets "names" (get $names $c.kubernetes.installModel) -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
mpha.config.check: the rules the schema cannot hold without failing `helm lint` on the chart's
own defaults (which name no cluster): the required keys, and a forge for the default mode "pr".
`helm install` and `helm template` fail with the message; `helm lint` runs templates in lint
mode, where `required` and `fail` only log. Its context is the merged configuration.
*/}}
{{- define "mpha.config.check" -}}
{{- include "mpha.config.required" . -}}
{{- if and (eq (dig "forge" "kind" "" .) "none") (eq (dig "forge" "mode" "" .) "pr") -}}
{{- fail "config.forge.mode: forge.kind is none (the default), so no pull request can be opened: set config.forge.mode to branch or direct, or config.forge.kind, url and tokenSecret" -}}
{{- end -}}
{{- end -}}
