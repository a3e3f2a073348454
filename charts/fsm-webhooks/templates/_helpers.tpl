{{/*
Namespace of the mesh control plane: fsm.fsmNamespace, else the release namespace.
*/}}
{{- define "fsm.namespace" -}}
{{- default .Release.Namespace .Values.fsm.fsmNamespace -}}
{{- end -}}

{{/* Name of the servers' Deployment, ServiceAccount and RBAC objects. */}}
{{- define "fsm.webhooks.name" -}}
fsm-webhooks
{{- end -}}

{{/* Name of the pre-delete hook's Job, ServiceAccount and RBAC objects. */}}
{{- define "fsm.uninstallHook.name" -}}
fsm-webhooks-uninstall
{{- end -}}

{{- define "fsm.mutatingWebhookName" -}}
fsm-webhook-{{ .Values.fsm.meshName }}
{{- end -}}

{{- define "fsm.validatingWebhookName" -}}
fsm-validator-mesh-{{ .Values.fsm.meshName }}
{{- end -}}

{{- define "fsm.meshConfigCRDName" -}}
meshconfigs.config.flomesh.io
{{- end -}}

{{/*
Annotation marking a MeshConfig this chart created (uninstall.CreatedByAnnotation):
the uninstall hook deletes no other.
*/}}
{{- define "fsm.createdByAnnotation" -}}
fsm-webhooks.flomesh.io/created-by
{{- end -}}

{{/* Labels FSM puts on mesh objects, plus Helm's recommended ones. */}}
{{- define "fsm.labels" -}}
app.kubernetes.io/name: flomesh.io
app.kubernetes.io/instance: {{ .Values.fsm.meshName | quote }}
app.kubernetes.io/part-of: fsm-webhooks
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}

{{/* Labels that, with fsm.labels, mark the server pods. */}}
{{- define "fsm.webhooks.componentLabels" -}}
app: fsm-webhooks
app.kubernetes.io/component: webhooks
{{- end -}}

{{/* Selector of the server pods: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "fsm.webhooks.selectorLabels" -}}
{{ include "fsm.webhooks.componentLabels" . }}
app.kubernetes.io/instance: {{ .Values.fsm.meshName | quote }}
{{- end -}}

{{/*
image renders fsm.image.registry/fsm.image.name.<key>, then @fsm.image.digest.<key>
when set, else :tag. As in FSM's chart, fsm.image.tag is the tag of FSM's
images (fsmSidecarInit, fsmHealthcheck), FSM v1.5.1's by default; our own
image's tag is fsm.webhooks.imageTag, else the chart's appVersion, so an FSM
values file (tag "1.5.1") never names an fsm-webhooks tag that does not exist.
*/}}
{{/*
tag renders an image tag value as written: a values file decodes an unquoted
number (a date tag such as 20240101) as a float, which toString prints in
exponent form.
*/}}
{{- define "fsm.tag" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "fsm.image" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $img := $root.Values.fsm.image -}}
{{- $name := index $img.name $key -}}
{{- $digest := index ($img.digest | default dict) $key | default "" -}}
{{- if $digest -}}
{{- printf "%s/%s@%s" $img.registry $name $digest -}}
{{- else if eq $key "fsmWebhooks" -}}
{{- $t := $root.Values.fsm.webhooks.imageTag -}}
{{- if or (kindIs "invalid" $t) (eq (toString $t) "") -}}{{- $t = $root.Chart.AppVersion -}}{{- end -}}
{{- printf "%s/%s:%s" $img.registry $name (include "fsm.tag" $t) -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry $name (include "fsm.fsmImageTag" $root) -}}
{{- end -}}
{{- end -}}

{{/*
fsmImageTag: fsm.image.tag as written (an integer such as 0 or 20240101
included), FSM v1.5.1's tag when it is unset, null or empty.
*/}}
{{- define "fsm.fsmImageTag" -}}
{{- $t := .Values.fsm.image.tag -}}
{{- if or (kindIs "invalid" $t) (eq (toString $t) "") -}}
1.5.1
{{- else -}}
{{- include "fsm.tag" $t -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's registry falls back to fsm.image.registry when empty, as FSM's chart does. */}}
{{- define "fsm.sidecarImage" -}}
{{- $s := .Values.fsm.sidecar.image -}}
{{- printf "%s/%s:%s" ($s.registry | default .Values.fsm.image.registry) $s.name (include "fsm.tag" $s.tag) -}}
{{- end -}}

{{/*
fsm.validateMeshName refuses, on upgrade, a fsm.meshName other than the one
the release's servers run with (the live Deployment's --mesh-name; nothing to
compare on install, under `helm template` or when the Deployment is gone).
Rendered, Helm created the new name's webhook configurations (no caBundle;
the validating one also selects the fsm namespace's MeshConfigs, failurePolicy
Fail) and then failed on the Deployment, whose selector holds the mesh name
and is immutable: a failed release with a configuration nobody serves. And the
old mesh's bootstrap Secrets (app.kubernetes.io/instance=<old>) would have no
controller: the servers, the Secret write policy and the uninstall hook select
their own mesh's, so none is deleted with its pod, while a tresor root
rotation waits on every mesh's Secrets before it drops the old root.
*/}}
{{- define "fsm.validateMeshName" -}}
{{- if .Release.IsUpgrade -}}
{{- $live := lookup "apps/v1" "Deployment" (include "fsm.namespace" .) (include "fsm.webhooks.name" .) -}}
{{- range (dig "spec" "template" "spec" "containers" (list) $live) -}}
{{- range (.args | default list) -}}
{{- if hasPrefix "--mesh-name=" (toString .) -}}
{{- $old := trimPrefix "--mesh-name=" (toString .) -}}
{{- if ne $old (toString $.Values.fsm.meshName) -}}
{{- fail (printf "fsm.meshName: %q, but this release runs mesh %q: helm upgrade cannot rename a mesh (the Deployment's selector holds the name, and the bootstrap Secrets labelled app.kubernetes.io/instance=%s would be left to no controller). Keep fsm.meshName %q, or helm uninstall (its hook hands those Secrets to their pods) and helm install with the new name, then label the meshed namespaces flomesh.io/monitored-by=%s" $.Values.fsm.meshName $old $old $old (toString $.Values.fsm.meshName)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
validate fails the render with one clear message per cross-field rule the
schema cannot word well. Messages match what the binary says for the same
flags (FSM's wording) so users search one text.
*/}}
{{- define "fsm.validate" -}}
{{- include "fsm.checkGoDuration" (list "fsm.certificateProvider.serviceCertValidityDuration" .Values.fsm.certificateProvider.serviceCertValidityDuration) -}}
{{- include "fsm.checkGoDuration" (list "fsm.bootstrapCertValidityDuration" .Values.fsm.bootstrapCertValidityDuration) -}}
{{- include "fsm.checkGoDuration" (list "fsm.webhooks.injectorSecretHandoffBudget" .Values.fsm.webhooks.injectorSecretHandoffBudget) -}}
{{- /* FSM's certificate docs show --set fsm.serviceCertValidityDuration=24h;
FSM's chart reads only fsm.certificateProvider's key and ignores this one. An
FSM values file carrying it with the value in force installs; one that meant
another validity is told which key sets it, rather than silently ignored. */ -}}
{{- if hasKey .Values.fsm "serviceCertValidityDuration" -}}
{{- $v := .Values.fsm.serviceCertValidityDuration -}}
{{- if ne (toString $v) (toString .Values.fsm.certificateProvider.serviceCertValidityDuration) -}}
{{- fail (printf "fsm.serviceCertValidityDuration: %q is not read (FSM's docs show this key; FSM's chart ignores it): set fsm.certificateProvider.serviceCertValidityDuration (now %q)" (toString $v) (toString .Values.fsm.certificateProvider.serviceCertValidityDuration)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.fsm.webhooks.tlsCipherSuites (eq .Values.fsm.webhooks.tlsMinVersion "VersionTLS13") -}}
{{- fail (printf "fsm.webhooks.tlsCipherSuites %v: they choose TLS 1.2 suites, and fsm.webhooks.tlsMinVersion is VersionTLS13 (TLS 1.3's suites are fixed)" .Values.fsm.webhooks.tlsCipherSuites) -}}
{{- end -}}
{{- $cp := .Values.fsm.certificateProvider.kind -}}
{{- if eq $cp "vault" -}}
{{- if not .Values.fsm.vault.host -}}
{{- fail "fsm.vault.host: VaultHost not specified in Hashi Vault options (required with fsm.certificateProvider.kind=vault)" -}}
{{- end -}}
{{- if not .Values.fsm.vault.role -}}
{{- fail "fsm.vault.role: VaultRole not specified in Hashi Vault options (required with fsm.certificateProvider.kind=vault)" -}}
{{- end -}}
{{- if and (not .Values.fsm.vault.token) (not .Values.fsm.vault.secret.name) -}}
{{- fail "fsm.vault: set fsm.vault.secret.name and fsm.vault.secret.key (or fsm.vault.token) with fsm.certificateProvider.kind=vault" -}}
{{- end -}}
{{- if and .Values.fsm.vault.secret.name (not .Values.fsm.vault.secret.key) -}}
{{- fail (printf "fsm.vault.secret.key: required when fsm.vault.secret.name is set (%q)" .Values.fsm.vault.secret.name) -}}
{{- end -}}
{{- $ca := .Values.fsm.vault.caSecret | default dict -}}
{{- if $ca.name -}}
{{- if not $ca.key -}}
{{- fail (printf "fsm.vault.caSecret.key: required when fsm.vault.caSecret.name is set (%q)" $ca.name) -}}
{{- end -}}
{{- /* Over http the CA would go unused, and the token in clear. */ -}}
{{- if ne .Values.fsm.vault.protocol "https" -}}
{{- fail (printf "fsm.vault.caSecret.name %q: the CA verifies Vault's https certificate, but fsm.vault.protocol is %s" $ca.name .Values.fsm.vault.protocol) -}}
{{- end -}}
{{- end -}}
{{- $cc := .Values.fsm.vault.clientCertSecret | default dict -}}
{{- if $cc.name -}}
{{- if or (not $cc.certKey) (not $cc.key) -}}
{{- fail (printf "fsm.vault.clientCertSecret.certKey and .key: both required when fsm.vault.clientCertSecret.name is set (%q)" $cc.name) -}}
{{- end -}}
{{- /* Over http there is no TLS handshake to present it in. */ -}}
{{- if ne .Values.fsm.vault.protocol "https" -}}
{{- fail (printf "fsm.vault.clientCertSecret.name %q: the client certificate is presented to Vault's https listener, but fsm.vault.protocol is %s" $cc.name .Values.fsm.vault.protocol) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq $cp "cert-manager" -}}
{{- $cm := .Values.fsm.certmanager -}}
{{- if or (not $cm.issuerName) (not $cm.issuerKind) (not $cm.issuerGroup) -}}
{{- fail "fsm.certmanager: IssuerName/IssuerKind/IssuerGroup not specified in cert-manager.io options (all three are required with fsm.certificateProvider.kind=cert-manager)" -}}
{{- end -}}
{{- /* The binary refuses a --cert-manager-issuer-name no object can have
(its pods would crash-loop); FSM's schema takes any string here, so the
check is the render's, with cert-manager only. */ -}}
{{- if or (gt (len (toString $cm.issuerName)) 253) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" (toString $cm.issuerName))) -}}
{{- fail (printf "fsm.certmanager.issuerName: invalid value %q: must be a Kubernetes object name (lower-case letters, digits, '-', '.')" (toString $cm.issuerName)) -}}
{{- end -}}
{{- /* cert-manager's own group has two kinds (the binary refuses any other,
and its pods would crash-loop); an external issuer's group has its own. */ -}}
{{- if and (eq $cm.issuerGroup "cert-manager.io") (not (has $cm.issuerKind (list "Issuer" "ClusterIssuer"))) -}}
{{- fail (printf "fsm.certmanager.issuerKind: invalid value %q: must be one of Issuer, ClusterIssuer with fsm.certmanager.issuerGroup=cert-manager.io (an external issuer's kind goes with its own group)" (toString $cm.issuerKind)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
validateMeshConfig fails the render of the default MeshConfig for a
cross-field rule the schema cannot express, with the validator's rule
(validator/meshconfig) in the values' names: the MeshConfig would be created
as the pre-install hook, and denied by the validator on its next update.
*/}}
{{- define "fsm.validateMeshConfig" -}}
{{- $w := .Values.fsm.warmup | default dict -}}
{{- include "fsm.checkGoDuration" (list "fsm.warmup.duration" $w.duration) -}}
{{- include "fsm.checkGoDuration" (list "fsm.configResyncInterval" .Values.fsm.configResyncInterval) -}}
{{- $min := 10 -}}
{{- if not (kindIs "invalid" $w.minWeight) -}}{{- $min = int64 $w.minWeight -}}{{- end -}}
{{- $max := 100 -}}
{{- if not (kindIs "invalid" $w.maxWeight) -}}{{- $max = int64 $w.maxWeight -}}{{- end -}}
{{- if gt (int64 $min) (int64 $max) -}}
{{- fail (printf "fsm.warmup.minWeight: %d must be less than or equal to fsm.warmup.maxWeight (%d) (defaults: minWeight 10, maxWeight 100)" (int64 $min) (int64 $max)) -}}
{{- end -}}
{{- end -}}

{{- /*
fsm.checkGoDuration (list KEY VALUE): fails when VALUE, a duration the schema
let through, is beyond what Go's time.ParseDuration takes (2562047h47m16.8s,
the largest int64 of nanoseconds): the binary would refuse its flag and crash
loop, FSM's controller its MeshConfig. The schema's patterns cannot bound a
sum; this adds up the parts (in float64: near the limit, within a
microsecond).
*/ -}}
{{- define "fsm.checkGoDuration" -}}
{{- $v := index . 1 | default "" | toString -}}
{{- $unit := dict "ns" 1.0 "us" 1e3 "µs" 1e3 "μs" 1e3 "ms" 1e6 "s" 1e9 "m" 6e10 "h" 3.6e12 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]*\\.?[0-9]*(ns|us|µs|μs|ms|s|m|h)" $v -1 -}}
{{- $n := regexFind "^[0-9]*\\.?[0-9]*" . -}}
{{- $total = addf $total (mulf (float64 (trimSuffix "." (printf "0%s" $n))) (get $unit (trimPrefix $n .))) -}}
{{- end -}}
{{- if gt $total 9.223372036854775807e18 -}}
{{- fail (printf "%s: %q is longer than the largest Go duration, 2562047h47m16.854775807s" (index . 0) $v) -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security settings shared by the servers and the hook (restricted Pod Security Standard). */}}
{{/*
On OpenShift the namespace's SecurityContextConstraints assign the user,
group and fsGroup from the namespace's range (restricted-v2 refuses a pod
asking for 65532), as FSM's chart leaves them out there; the image runs as
any non-root user (static binary, read-only root, nothing written).
*/}}
{{- define "fsm.podSecurityContext" -}}
runAsNonRoot: true
{{- if not (.Capabilities.APIVersions.Has "security.openshift.io/v1") }}
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "fsm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
FSM's chart values the servers honour (charts/fsm-webhooks/README.md, "FSM
values"). Precedence everywhere: our fsm.webhooks.* when set, else FSM's
fsm.injector.* (the component whose pods these replace), else our default.
*/}}
{{- define "fsm.webhooks.replicas" -}}
{{- $w := .Values.fsm.webhooks -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- if not (kindIs "invalid" $w.replicaCount) -}}
{{- int $w.replicaCount -}}
{{- else if not (kindIs "invalid" $inj.replicaCount) -}}
{{- int $inj.replicaCount -}}
{{- else -}}
2
{{- end -}}
{{- end -}}

{{/* Container resources: fsm.webhooks.resources, else FSM's fsm.injector.resource, else the default. */}}
{{- define "fsm.webhooks.resources" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- if .Values.fsm.webhooks.resources -}}
{{- toYaml .Values.fsm.webhooks.resources -}}
{{- else if $inj.resource -}}
{{- toYaml $inj.resource -}}
{{- else -}}
requests:
  cpu: 100m
  memory: 128Mi
limits:
  memory: 512Mi
{{- end -}}
{{- end -}}

{{/*
--log-level: fsm.webhooks.logLevel, else FSM's fsm.controllerLogLevel mapped
onto our four levels (trace→debug; fatal, panic, disabled→error), else info.
*/}}
{{- define "fsm.webhooks.logLevel" -}}
{{- $map := dict "trace" "debug" "debug" "debug" "info" "info" "warn" "warn" "error" "error" "fatal" "error" "panic" "error" "disabled" "error" -}}
{{- if .Values.fsm.webhooks.logLevel -}}
{{- .Values.fsm.webhooks.logLevel -}}
{{- else if .Values.fsm.controllerLogLevel -}}
{{- get $map .Values.fsm.controllerLogLevel | default "info" -}}
{{- else -}}
info
{{- end -}}
{{- end -}}

{{/*
PodDisruptionBudget wanted: FSM's fsm.injector.enablePodDisruptionBudget when
set (FSM's meaning: minAvailable, here fsm.webhooks.pdbMinAvailable), else
whenever more than one replica runs. Renders "true" or nothing.
*/}}
{{- define "fsm.webhooks.pdbEnabled" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- $wanted := false -}}
{{- if not (kindIs "invalid" $inj.enablePodDisruptionBudget) -}}
{{- $wanted = $inj.enablePodDisruptionBudget -}}
{{- else -}}
{{- $wanted = gt (int (include "fsm.webhooks.replicas" .)) 1 -}}
{{- end -}}
{{- if and $wanted (include "fsm.webhooks.pdbAllowsEviction" .) -}}
true
{{- end -}}
{{- end -}}

{{/*
pdbAllowsEviction: the budget leaves at least one replica to evict. One
keeping every replica (minAvailable 1 of FSM's one replica, or 100%) would
block every node drain for good, so it is not rendered (NOTES say so).
*/}}
{{- define "fsm.webhooks.pdbAllowsEviction" -}}
{{- $replicas := int (include "fsm.webhooks.replicas" .) -}}
{{- $min := .Values.fsm.webhooks.pdbMinAvailable -}}
{{- $keep := 0 -}}
{{- if and (kindIs "string" $min) (hasSuffix "%" $min) -}}
{{- $pct := int (trimSuffix "%" $min) -}}
{{- $keep = div (add (mul $replicas $pct) 99) 100 -}}
{{- else -}}
{{- $keep = int $min -}}
{{- end -}}
{{- if lt (int $keep) $replicas -}}
true
{{- end -}}
{{- end -}}

{{/*
Pod labels: FSM's fsm.injector.podLabels, then fsm.webhooks.podLabels (ours
win a conflict). A key the chart's own pod labels use is dropped: a later
duplicate would win in the template, and a changed selector label no longer
matches the Deployment's selector.
*/}}
{{- define "fsm.webhooks.podLabels" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- $l := merge (deepCopy (.Values.fsm.webhooks.podLabels | default dict)) ($inj.podLabels | default dict) -}}
{{- $chart := merge (fromYaml (include "fsm.labels" .)) (fromYaml (include "fsm.webhooks.componentLabels" .)) -}}
{{- range $k, $_ := $chart -}}
{{- $_ := unset $l $k -}}
{{- end -}}
{{- with $l }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* nodeSelector: fsm.webhooks.nodeSelector plus FSM's fsm.injector.nodeSelector (ours win a conflict). */}}
{{- define "fsm.webhooks.nodeSelector" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- $s := merge (deepCopy (.Values.fsm.webhooks.nodeSelector | default dict)) ($inj.nodeSelector | default dict) -}}
{{- with $s }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* tolerations: fsm.webhooks.tolerations, then FSM's fsm.injector.tolerations. */}}
{{- define "fsm.webhooks.tolerations" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- $t := concat (.Values.fsm.webhooks.tolerations | default list) ($inj.tolerations | default list) -}}
{{- with $t }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
The injector registration's timeoutSeconds: FSM's
fsm.injector.webhookTimeoutSeconds when set, else fsm.webhook.timeoutSeconds.
*/}}
{{- define "fsm.injector.timeoutSeconds" -}}
{{- $inj := .Values.fsm.injector | default dict -}}
{{- if not (kindIs "invalid" $inj.webhookTimeoutSeconds) -}}
{{- int $inj.webhookTimeoutSeconds -}}
{{- else -}}
{{- int .Values.fsm.webhook.timeoutSeconds -}}
{{- end -}}
{{- end -}}

{{/*
FSM's configuration names: the servers register, guard (RBAC, admission
policies) and repair only the names fsmnames builds, so an FSM values file is
accepted when it names those (FSM's defaults) and refused otherwise, never
silently registered under another name.
*/}}
{{- define "fsm.validateFSMNames" -}}
{{- with .Values.fsm.webhookConfigNamePrefix -}}
{{- if ne . "fsm-webhook" -}}
{{- fail (printf "fsm.webhookConfigNamePrefix: %q is not supported: the injector's MutatingWebhookConfiguration is always %s (FSM's default prefix fsm-webhook)" . (include "fsm.mutatingWebhookName" $)) -}}
{{- end -}}
{{- end -}}
{{- with (.Values.fsm.validatorWebhook | default dict).webhookConfigurationName -}}
{{- if ne . (include "fsm.validatingWebhookName" $) -}}
{{- fail (printf "fsm.validatorWebhook.webhookConfigurationName: %q is not supported: the validator's ValidatingWebhookConfiguration is always %s (FSM's default)" . (include "fsm.validatingWebhookName" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
fsm.liveCABundle (list KIND NAME): the caBundle of the live webhook
configuration's first entry that has one, empty when there is none (fresh
install, `helm template`). Every entry calls the same server and carries the
same bundle.
*/ -}}
{{- define "fsm.liveCABundle" -}}
{{- $live := lookup "admissionregistration.k8s.io/v1" (index . 0) "" (index . 1) -}}
{{- $bundle := "" -}}
{{- range (dig "webhooks" (list) $live) -}}
{{- if not $bundle -}}{{- $bundle = dig "clientConfig" "caBundle" "" . -}}{{- end -}}
{{- end -}}
{{- $bundle -}}
{{- end -}}


{{- /*
fsm.valueJSON (list MAP KEY DEFAULT): MAP's KEY as JSON (valid YAML flow:
strings quoted, lists and maps inline, integers without an exponent), or
DEFAULT's when the key is absent or null. For FSM's keys this chart's
values.yaml does not carry: FSM's chart writes them into its preset
MeshConfig, with DEFAULT its values.yaml's.
*/ -}}
{{- define "fsm.valueJSON" -}}
{{- $v := index ((index . 0) | default dict) (index . 1) -}}
{{- if kindIs "invalid" $v -}}
{{- index . 2 | toJson -}}
{{- else -}}
{{- $v | toJson -}}
{{- end -}}
{{- end -}}

{{- /*
fsm.meshConfig.fsmLogLevel: MeshConfig spec.observability.fsmLogLevel:
fsm.meshConfig.fsmLogLevel when set, else FSM's fsm.controllerLogLevel (which
FSM's chart writes there), else info.
*/ -}}
{{- define "fsm.meshConfig.fsmLogLevel" -}}
{{- .Values.fsm.meshConfig.fsmLogLevel | default .Values.fsm.controllerLogLevel | default "info" -}}
{{- end -}}

{{- /*
fsm.meshConfig.localDNSProxy: MeshConfig spec.sidecar.localDNSProxy as JSON.
FSM's chart writes its whole fsm.localDNSProxy map there; here each key given
overrides FSM v1.5.1's default (its values.yaml), as Helm would have merged
it, and only the fields the MeshConfig CRD has are written
(searchesWithNamespace and searchesWithTrustDomain are not: FSM's bootstrap
drops them too). Without fsm.localDNSProxy, FSM's default whole.
*/ -}}
{{- define "fsm.meshConfig.localDNSProxy" -}}
{{- $in := .Values.fsm.localDNSProxy | default dict -}}
{{- $out := dict "enable" false "generateIPv6BasedOnIPv4" false -}}
{{- range $k := list "enable" "generateIPv6BasedOnIPv4" "primaryUpstreamDNSServerIPAddr" "secondaryUpstreamDNSServerIPAddr" "db" -}}
{{- $v := index $in $k -}}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- $w := dict "enable" false "los" (list) "ips" (list (dict "ipv4" "127.0.0.2")) -}}
{{- $win := $in.wildcard | default dict -}}
{{- range $k := list "enable" "los" "ips" -}}
{{- $v := index $win $k -}}
{{- if not (kindIs "invalid" $v) -}}
{{- $_ := set $w $k $v -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out "wildcard" $w -}}
{{- $out | toJson -}}
{{- end -}}

{{- /*
fsm.meshConfig.pluginChains: MeshConfig spec.pluginChains as JSON, from
fsm.pluginChains (FSM v1.5.1's defaults in values.yaml). Every chain the CRD
requires is written, and an entry without `disable` gets false: FSM's values
omit it and FSM's bootstrap adds it when it decodes the preset.
*/ -}}
{{- define "fsm.meshConfig.pluginChains" -}}
{{- $in := .Values.fsm.pluginChains | default dict -}}
{{- $out := dict -}}
{{- range $chain := list "inbound-tcp" "inbound-http" "outbound-tcp" "outbound-http" -}}
{{- $plugins := list -}}
{{- range $p := index $in $chain | default list -}}
{{- $plugins = append $plugins (dict "plugin" $p.plugin "priority" $p.priority "disable" ($p.disable | default false)) -}}
{{- end -}}
{{- $_ := set $out $chain $plugins -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{- /*
fsm.meshConfig.xnetDNSProxy: MeshConfig spec.sidecar.xnetDNSProxy as JSON, from
fsm.xnetDNSProxy. An upstream without a port gets 0, as FSM's bootstrap
stores FSM's default upstream (its Go type has no omitempty). Only the
fields the MeshConfig has are written (name, namespace, ip, port): FSM's
schema accepts other keys, and FSM's install drops them.
*/ -}}
{{- define "fsm.meshConfig.xnetDNSProxy" -}}
{{- $in := .Values.fsm.xnetDNSProxy | default dict -}}
{{- $ups := list -}}
{{- range $u := $in.upstreams | default list -}}
{{- $o := pick $u "name" "namespace" "ip" -}}
{{- $_ := set $o "port" (int64 ($u.port | default 0)) -}}
{{- $ups = append $ups $o -}}
{{- end -}}
{{- dict "enable" ($in.enable | default false) "upstreams" $ups | toJson -}}
{{- end -}}

{{- /*
fsm.meshConfig.componentImage (list FSM COMPONENT NAME TAG): the image
FSM's chart writes for fsm.serviceLB or fsm.repoServer (its serviceLB.image
and repoServer.image helpers): registry/name:tag from COMPONENT.image, each
key unset, null or empty taking FSM v1.5.1's default (registry flomesh, NAME,
TAG), but an empty registry, which FSM's helpers replace by fsm.image.registry.
*/ -}}
{{- define "fsm.meshConfig.componentImage" -}}
{{- $f := index . 0 -}}
{{- $img := (index . 1 | default dict).image | default dict -}}
{{- $registry := $img.registry -}}
{{- if kindIs "invalid" $registry -}}
{{- $registry = "flomesh" -}}
{{- else if not $registry -}}
{{- $registry = $f.image.registry -}}
{{- end -}}
{{- $tag := $img.tag -}}
{{- if or (kindIs "invalid" $tag) (eq (toString $tag) "") -}}{{- $tag = index . 3 -}}{{- end -}}
{{- printf "%s/%s:%s" $registry ($img.name | default (index . 2)) (include "fsm.tag" $tag) -}}
{{- end -}}

{{- /*
fsm.meshConfig.imageMaps: MeshConfig spec.image.name and .digest for FSM's
components, each from fsm.image.name/digest when given, else FSM v1.5.1's
default (the component's image name; no digest).
*/ -}}
{{- define "fsm.meshConfig.imageMaps" -}}
{{- $names := dict "fsmController" "fsm-controller" "fsmInjector" "fsm-injector" "fsmSidecarInit" "fsm-sidecar-init" "fsmBootstrap" "fsm-bootstrap" "fsmCRDs" "fsm-crds" "fsmPreinstall" "fsm-preinstall" "fsmHealthcheck" "fsm-healthcheck" "fsmXnetmgmt" "fsm-xnetmgmt" "fsmConnector" "fsm-connector" "fsmIngress" "fsm-ingress" "fsmGateway" "fsm-gateway" "fsmCurl" "fsm-curl" -}}
{{- $inName := .Values.fsm.image.name | default dict -}}
{{- $inDigest := .Values.fsm.image.digest | default dict -}}
{{- $name := dict -}}
{{- $digest := dict -}}
{{- range $k, $v := $names -}}
{{- $_ := set $name $k (index $inName $k | default $v) -}}
{{- $_ := set $digest $k (index $inDigest $k | default "") -}}
{{- end -}}
{{- dict "name" $name "digest" $digest | toYaml -}}
{{- end -}}

{{- /*
fsm.durationSeconds: a Prometheus duration such as 30s, 1m or 1m30s (the
units h, m, s; ms rounds down) in whole seconds.
*/ -}}
{{- define "fsm.durationSeconds" -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+(ms|h|m|s)" (toString .) -1 -}}
{{- $n := regexFind "^[0-9]+" $part | int -}}
{{- $unit := regexFind "[a-z]+$" $part -}}
{{- if eq $unit "h" }}{{ $total = add $total (mul $n 3600) }}{{ end -}}
{{- if eq $unit "m" }}{{ $total = add $total (mul $n 60) }}{{ end -}}
{{- if eq $unit "s" }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* flomesh.io/reconcile on the webhook configurations: "false" while they
are ours, so the write that adopts one from FSM also takes it out of the
selection of FSM's reconciler (fsm.enableReconciler; FSM's controller keeps
running after a takeover): FSM's informer sees it deleted, not changed, and
its create of it again fails, where a change it saw would be put back (and
flipped back and forth: its revert is a change it reverts). Handed back:
FSM's value, so its reconciler guards the configuration again. */}}
{{- define "fsm.reconcileLabel" -}}
{{- if not .Values.fsm.webhooks.handBack -}}
flomesh.io/reconcile: "false"
{{- else if .Values.fsm.enableReconciler -}}
flomesh.io/reconcile: "true"
{{- end -}}
{{- end -}}
