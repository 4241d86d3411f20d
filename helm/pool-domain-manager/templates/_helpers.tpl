{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "pdm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, so the release
`pool-domain-manager` yields the Service `pool-domain-manager` the clients call.
*/}}
{{- define "pdm.fullname" -}}
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

{{- define "pdm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pdm.labels" -}}
helm.sh/chart: {{ include "pdm.chart" . }}
{{ include "pdm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: openova
{{- end }}

{{/* The labels both the server pods and the migration pods carry (not a selector on its own). */}}
{{- define "pdm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pdm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The server pods: the Deployment's (immutable) selector, the Service's, the PDB's and the
network policy's. The component keeps the migration Job's pods out of all of them.
*/}}
{{- define "pdm.serverSelectorLabels" -}}
{{ include "pdm.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "pdm.migrationSelectorLabels" -}}
{{ include "pdm.selectorLabels" . }}
app.kubernetes.io/component: migrations
{{- end }}

{{- define "pdm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pdm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pdm.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* PDM_DATABASE_URL from the database secret: the server and the migration Job both use it. */}}
{{- define "pdm.databaseEnv" -}}
- name: PDM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required (CloudNativePG: <cluster>-app)" .Values.database.existingSecret | quote }}
      key: {{ required "database.key is required" .Values.database.key | quote }}
{{- end }}

{{/* The pod-level settings both pod templates share. */}}
{{- define "pdm.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The emptyDir behind the writable /tmp (and /tmp/prometheus): medium and size from values. */}}
{{- define "pdm.emptyDir" -}}
{{- $spec := dict -}}
{{- with .Values.tmpVolume.medium }}{{ $_ := set $spec "medium" . }}{{ end -}}
{{- with .Values.tmpVolume.sizeLimit }}{{ $_ := set $spec "sizeLimit" . }}{{ end -}}
{{- if $spec -}}
emptyDir:
  {{- toYaml $spec | nindent 2 }}
{{- else -}}
emptyDir: {}
{{- end }}
{{- end }}

{{/* Egress rules both network policies share: PostgreSQL and cluster DNS. */}}
{{- define "pdm.egressDatabaseAndDns" -}}
{{- $out := .Values.networkPolicy.egress -}}
# PostgreSQL (the CloudNativePG cluster).
- to:
    - podSelector:
        matchLabels:
          {{- toYaml $out.postgres.podLabels | nindent 10 }}
      {{- with $out.postgres.namespaceLabels }}
      namespaceSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
  ports:
    - port: {{ $out.postgres.port }}
      protocol: TCP
# Cluster DNS.
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml $out.dns.namespaceLabels | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml $out.dns.podLabels | nindent 10 }}
  ports:
    - port: {{ $out.dns.port }}
      protocol: UDP
    - port: {{ $out.dns.port }}
      protocol: TCP
{{- end }}

{{/*
The auth mode, PDM_AUTH: operators, tokens or disabled. `auth.enabled`, the earlier
switch, wins when it is set: true = tokens, false = disabled.
*/}}
{{- define "pdm.authMode" -}}
{{- $auth := .Values.auth -}}
{{- $mode := "" -}}
{{- if and (hasKey $auth "enabled") (not (kindIs "invalid" $auth.enabled)) -}}
{{- $mode = ternary "tokens" "disabled" (eq (toString $auth.enabled) "true") -}}
{{- else -}}
{{- $mode = default "operators" $auth.mode | toString | lower -}}
{{- end -}}
{{- if not (has $mode (list "operators" "tokens" "disabled")) -}}
{{- fail (printf "auth.mode=%q must be operators, tokens or disabled" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end }}

{{/* "true" when the tokens file is mounted: a secret is named and the mode is not disabled. */}}
{{- define "pdm.tokensFile" -}}
{{- if and .Values.auth.existingSecret (ne (include "pdm.authMode" .) "disabled") }}true{{ end -}}
{{- end }}

{{/*
One `from` peer of the network policy for a caller: {enabled, namespace, namespaceLabels,
podLabels}. Nothing when the caller is disabled. `path`, when given, names the caller's
values in the error message (default networkPolicy.ingress.<name>).
*/}}
{{- define "pdm.ingressPeer" -}}
{{- $caller := .caller -}}
{{- $path := .path | default (printf "networkPolicy.ingress.%s" .name) -}}
{{- if and $caller $caller.enabled }}
{{- $ns := $caller.namespaceLabels | default (dict "kubernetes.io/metadata.name" (required (printf "%s.namespace (or namespaceLabels) is required" $path) $caller.namespace)) }}
- namespaceSelector:
    matchLabels:
      {{- toYaml $ns | nindent 6 }}
  {{- with $caller.podLabels }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The secret holding the console's key: console.secretKey.existingSecret, else the chart's own. */}}
{{- define "pdm.consoleSecretName" -}}
{{- .Values.console.secretKey.existingSecret | default (printf "%s-console" (include "pdm.fullname" .)) }}
{{- end }}

{{/* The console's Ingress: "true" when it is rendered; fails when the console is off. */}}
{{- define "pdm.consoleIngress" -}}
{{- if .Values.console.ingress.enabled }}
{{- if not .Values.console.enabled }}
{{- fail "console.ingress.enabled needs console.enabled (without it the console answers 503)" }}
{{- end -}}
true
{{- end }}
{{- end }}

{{/* "true" when the console is served over TLS through the Ingress: its cookie is then always Secure. */}}
{{- define "pdm.consoleSecureCookie" -}}
{{- if and (include "pdm.consoleIngress" .) .Values.console.ingress.tls.enabled }}true{{ end -}}
{{- end }}
