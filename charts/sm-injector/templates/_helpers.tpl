{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "sm-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name contains it.
*/}}
{{- define "sm-injector.fullname" -}}
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

{{- define "sm-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "sm-injector.labels" -}}
helm.sh/chart: {{ include "sm-injector.chart" . }}
{{ include "sm-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sm-injector
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of the webhook pods. app.kubernetes.io/name is also what the webhook's
objectSelector excludes, so the webhook never admits its own pods.
*/}}
{{- define "sm-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sm-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sm-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sm-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
repo:tag or repo@digest.
*/}}
{{- define "sm-injector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The init container's image: injector.image, each part defaulting to the webhook's. The webhook's
digest is inherited only when neither injector.image.repository nor .tag is set.
*/}}
{{- define "sm-injector.injectorImage" -}}
{{- $i := .Values.injector.image }}
{{- $repo := $i.repository | default .Values.image.repository }}
{{- $digest := $i.digest | default (ternary .Values.image.digest "" (and (eq $i.repository "") (eq $i.tag ""))) }}
{{- if $digest }}
{{- printf "%s@%s" $repo $digest }}
{{- else }}
{{- printf "%s:%s" $repo ($i.tag | default .Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "sm-injector.serviceName" -}}
{{- include "sm-injector.fullname" . }}
{{- end }}

{{/*
DNS names of the Service; the serving certificate covers all of them.
*/}}
{{- define "sm-injector.serviceDNSNames" -}}
{{- $svc := include "sm-injector.serviceName" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{- define "sm-injector.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "sm-injector.fullname" .)) }}
{{- end }}

{{/*
tls.mode=generate: the CA and serving certificate, as JSON {ca, crt, key} (PEM). Computed once per
render and memoized, so the Secret, the caBundle and the Deployment's checksum all see the same
certificate. When the Secret already exists in the cluster (helm upgrade), it is reused as is;
otherwise (first install, or `helm template` without a cluster) a new CA and certificate are made.
*/}}
{{- define "sm-injector.generatedTLS" -}}
{{- if not (hasKey .Values "__smInjectorGeneratedTLS") }}
{{- $name := include "sm-injector.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $data := dict }}
{{- if and $existing (hasKey $existing "data") }}
{{- $data = $existing.data }}
{{- end }}
{{- $tls := dict }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
{{- $tls = dict "ca" (index $data "ca.crt" | b64dec) "crt" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec) "reused" true }}
{{- else }}
{{- $dns := include "sm-injector.serviceDNSNames" . | fromJsonArray }}
{{- $ca := genCA (printf "%s-ca" (include "sm-injector.fullname" .)) (int .Values.tls.generate.caValidityDays) }}
{{- $cert := genSignedCert (index $dns 2) nil $dns (int .Values.tls.generate.certValidityDays) $ca }}
{{- $tls = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key "reused" false }}
{{- end }}
{{- $_ := set .Values "__smInjectorGeneratedTLS" $tls }}
{{- end }}
{{- get .Values "__smInjectorGeneratedTLS" | toJson }}
{{- end }}

{{/*
The base64 caBundle for the MutatingWebhookConfiguration; empty when it is injected by cert-manager
or left to be patched (manual mode without tls.manual.caBundle).
*/}}
{{- define "sm-injector.caBundle" -}}
{{- if eq .Values.tls.mode "generate" }}
{{- (include "sm-injector.generatedTLS" . | fromJson).ca | b64enc }}
{{- else if eq .Values.tls.mode "manual" }}
{{- .Values.tls.manual.caBundle }}
{{- end }}
{{- end }}

{{/*
cert-manager: does the chart create its own self-signed CA chain?
*/}}
{{- define "sm-injector.certManager.ownCA" -}}
{{- if and (eq .Values.tls.mode "certManager") (not .Values.tls.certManager.issuerRef) }}true{{ end }}
{{- end }}

{{/*
Consistency checks that the JSON schema cannot express. Included by the Deployment.
*/}}
{{- define "sm-injector.validate" -}}
{{- if ge (int .Values.webhook.shutdownDelaySeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "webhook.shutdownDelaySeconds (%v) must be less than terminationGracePeriodSeconds (%v): the pod would be killed while it still drains" .Values.webhook.shutdownDelaySeconds .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and (eq .Values.tls.mode "certManager") .Values.tls.certManager.issuerRef (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.issuerRef is set" }}
{{- end }}
{{- end }}

{{/*
Labels of the `helm test` pod. Deliberately not the webhook's selector labels, so the Service
never routes admissions to it.
*/}}
{{- define "sm-injector.testLabels" -}}
app.kubernetes.io/name: {{ include "sm-injector.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/*
The webhook's V8 heap flags (NODE_OPTIONS), from webhook.maxHeapMiB and webhook.maxSemiSpaceMiB.
*/}}
{{- define "sm-injector.webhookNodeOptions" -}}
{{- $flags := list -}}
{{- with .Values.webhook.maxHeapMiB }}{{ $flags = append $flags (printf "--max-old-space-size=%d" (int .)) }}{{ end -}}
{{- with .Values.webhook.maxSemiSpaceMiB }}{{ $flags = append $flags (printf "--max-semi-space-size=%d" (int .)) }}{{ end -}}
{{- join " " $flags -}}
{{- end -}}

{{/*
How the long-running containers (webhook, rotation) start the CLI: plainly, whatever the image's
ENTRYPOINT (the Dockerfile's entry-snapshot target starts from the init container's start-up
snapshot, which gains a long-running process nothing and costs the webhook ~8 MiB RSS). The
injected init container keeps the ENTRYPOINT.
*/}}
{{- define "sm-injector.plainCommand" -}}
["/nodejs/bin/node", "/app/sm-injector.mjs"]
{{- end -}}

{{/*
The webhook's command: plainCommand with webhook.v8Flags between node and the script.
*/}}
{{- define "sm-injector.webhookCommand" -}}
{{- $cmd := list "/nodejs/bin/node" -}}
{{- range .Values.webhook.v8Flags }}{{ $cmd = append $cmd . }}{{ end -}}
{{- $cmd = append $cmd "/app/sm-injector.mjs" -}}
{{- toJson $cmd -}}
{{- end -}}
