{{/*
Names, labels and the few computed settings every template shares.
*/}}

{{- define "panka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "panka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "panka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "panka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "panka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "panka.labels" -}}
helm.sh/chart: {{ include "panka.chart" . }}
{{ include "panka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: panka
{{- end }}

{{- define "panka.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "panka.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "panka.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The namespace the controller's Stack resources live in: its own in git mode and in CRD mode
without source.crd.namespace; the watched one otherwise. Empty with source.crd.allNamespaces.
*/}}
{{- define "panka.stackNamespace" -}}
{{- if and (eq .Values.source.mode "crd") .Values.source.crd.allNamespaces }}
{{- else if and (eq .Values.source.mode "crd") .Values.source.crd.namespace }}
{{- .Values.source.crd.namespace }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Seconds in a duration written as h/m/s units ("90s", "5m", "1h30m"); values.schema.json
admits only those forms for shutdownTimeout.
*/}}
{{- define "panka.durationSeconds" -}}
{{- $d := toString . }}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | default "0" | atoi }}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | default "0" | atoi }}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $h 3600) (mul $m 60) $s }}
{{- end }}

{{/*
Settings that cannot work together fail the render with a message saying what to set. The
schema catches types and forms; these are the rules between values.
*/}}
{{- define "panka.validate" -}}
{{- $v := .Values }}
{{- if eq $v.source.mode "git" }}
{{- if not $v.source.git.url }}
{{- fail "source.mode is git but source.git.url is empty: set the deployment repository's URL (or use source.mode: crd)" }}
{{- end }}
{{- if not $v.source.git.environments }}
{{- fail "source.mode is git but source.git.environments is empty: list the environments this controller owns, e.g. [development]" }}
{{- end }}
{{- if and $v.source.git.credentials.sshKeySecret.name (not $v.source.git.knownHosts) }}
{{- fail "source.git.credentials.sshKeySecret is set but source.git.knownHosts is empty: the controller refuses SSH without a known_hosts (ssh-keyscan HOST, after checking the fingerprint)" }}
{{- end }}
{{- if and $v.source.git.credentials.tokenSecret.name $v.source.git.credentials.sshKeySecret.name }}
{{- fail "set one of source.git.credentials.tokenSecret (HTTPS) and source.git.credentials.sshKeySecret (SSH), not both" }}
{{- end }}
{{- else }}
{{- if and $v.source.crd.allNamespaces $v.source.crd.namespace }}
{{- fail "set one of source.crd.namespace and source.crd.allNamespaces, not both" }}
{{- end }}
{{- if $v.webhook.enabled }}
{{- fail "webhook.enabled needs source.mode: git (the webhook triggers a fetch of the repository)" }}
{{- end }}
{{- end }}
{{- if and $v.webhook.enabled (not $v.webhook.secret.name) }}
{{- fail "webhook.enabled needs webhook.secret.name: a Secret holding the webhook's shared secret (the chart never creates secrets)" }}
{{- end }}
{{- if and (gt (int $v.sharding.shards) 1) (gt (int $v.replicaCount) 1) }}
{{- fail "replicaCount applies to the Deployment (sharding.shards: 1); a sharded StatefulSet runs one pod per shard, so leave replicaCount at 1" }}
{{- end }}
{{- if and (gt (int $v.replicaCount) 1) (not $v.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would reconcile every stack" }}
{{- end }}
{{- if and (or (gt (int $v.replicaCount) 1) (gt (int $v.sharding.shards) 1)) (not (and $v.state.bucket $v.state.lockTable)) }}
{{- fail "more than one controller pod needs shared state and locks: set state.bucket and state.lockTable (without them each pod keeps state in its own emptyDir)" }}
{{- end }}
{{- end }}
