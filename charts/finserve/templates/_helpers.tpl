{{/* Names, labels and the pieces several templates share. */}}

{{- define "finserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "finserve.fullname" -}}
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

{{- define "finserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "finserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: finserve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "finserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "ctx" $ "component" "serving"). */}}
{{- define "finserve.componentLabels" -}}
{{ include "finserve.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "finserve.componentSelector" -}}
{{ include "finserve.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference: call with (dict "ctx" $ "image" .Values.images.serving). */}}
{{- define "finserve.image" -}}
{{- $repo := .image.repository }}
{{- with .ctx.Values.images.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "finserve.servingImage" -}}
{{- $img := ternary .ctx.Values.images.servingGpu .ctx.Values.images.serving (gt (int .gpus) 0) }}
{{- include "finserve.image" (dict "ctx" .ctx "image" $img) }}
{{- end }}

{{- define "finserve.trainingImage" -}}
{{- $img := ternary .ctx.Values.images.trainingGpu .ctx.Values.images.training (gt (int .gpus) 0) }}
{{- include "finserve.image" (dict "ctx" .ctx "image" $img) }}
{{- end }}

{{- define "finserve.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "finserve.servingServiceAccount" -}}
{{- default (printf "%s-serving" (include "finserve.fullname" .)) .Values.serving.serviceAccount.name }}
{{- end }}

{{- define "finserve.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "finserve.fullname" .)) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "finserve.redisName" -}}
{{- printf "%s-redis" (include "finserve.fullname" .) }}
{{- end }}

{{- define "finserve.redisSecretName" -}}
{{- default (include "finserve.redisName" .) .Values.redis.bundled.auth.existingSecret }}
{{- end }}

{{- define "finserve.registryClaimName" -}}
{{- default (printf "%s-registry" (include "finserve.fullname" .)) .Values.registry.pvc.existingClaim }}
{{- end }}

{{/* The serving config of one pool: serving.config with the pool's overrides merged over it. */}}
{{/* The serving config with the chart's auth values rendered into its `auth` (serving.config.auth wins). */}}
{{- define "finserve.servingConfig" -}}
{{- $a := .Values.serving.auth }}
{{- $auth := dict }}
{{- /* auto with no credential source at all: finserve up would listen on loopback only, which no Service or
probe reaches. The chart renders `none` for it only when the installer consented (finserve.authConsent). */}}
{{- $creds := or $a.keys.existingSecret $a.jwt.jwksUrl $a.jwt.jwksConfigMap .Values.serving.apiKey.existingSecret }}
{{- if ne $a.mode "auto" }}
{{- $_ := set $auth "mode" $a.mode }}
{{- else if not $creds }}
{{- $_ := set $auth "mode" "none" }}
{{- end }}
{{- if $a.keys.existingSecret }}
{{- $_ := set $auth "keys_file" (printf "/etc/finserve/auth-keys/%s" $a.keys.key) }}
{{- end }}
{{- if or $a.jwt.jwksUrl $a.jwt.jwksConfigMap }}
{{- $jwt := dict "issuer" (required "serving.auth.jwt.issuer is needed when JWTs are on" $a.jwt.issuer)
  "audience" (required "serving.auth.jwt.audience is needed when JWTs are on" $a.jwt.audience)
  "principal_claim" $a.jwt.principalClaim "tenants_claim" $a.jwt.tenantsClaim "scope_claim" $a.jwt.scopeClaim
  "leeway_s" (int $a.jwt.leewaySeconds) }}
{{- if $a.jwt.jwksConfigMap }}
{{- $_ := set $jwt "jwks_file" (printf "/etc/finserve/jwks/%s" $a.jwt.jwksKey) }}
{{- else }}
{{- $_ := set $jwt "jwks_url" $a.jwt.jwksUrl }}
{{- end }}
{{- $_ := set $auth "jwt" $jwt }}
{{- end }}
{{- $cfg := deepCopy (default dict .Values.serving.config) }}
{{- if $auth }}
{{- $_ := set $cfg "auth" (mergeOverwrite $auth (deepCopy (default dict $cfg.auth))) }}
{{- end }}
{{- include "finserve.authConsent" (dict "ctx" . "auth" (default dict $cfg.auth) "where" "serving.config") }}
{{- include "finserve.providerKeysMounted" (dict "ctx" . "cfg" $cfg "where" "serving.config") }}
{{- toYaml $cfg }}
{{- end }}

{{- define "finserve.poolConfig" -}}
{{- $base := include "finserve.servingConfig" .ctx | fromYaml }}
{{- $cfg := mergeOverwrite $base (deepCopy (default dict .pool.config)) }}
{{- include "finserve.authConsent" (dict "ctx" .ctx "auth" (default dict $cfg.auth) "where" (printf "serving.pools %s" .pool.name)) }}
{{- include "finserve.providerKeysMounted" (dict "ctx" .ctx "cfg" $cfg "where" (printf "serving.pools %s" .pool.name)) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Fails the render when an openai provider's api_key_file points into /etc/finserve/providers/<name>/ and no
serving.providerSecrets entry mounts <name> (the pod would start, then fail every call to that provider). */}}
{{- define "finserve.providerKeysMounted" -}}
{{- $mounted := dict }}
{{- range .ctx.Values.serving.providerSecrets }}
{{- if hasKey $mounted .name }}{{ fail (printf "serving.providerSecrets: name %q is used twice" .name) }}{{ end }}
{{- $_ := set $mounted .name true }}
{{- end }}
{{- $gen := default dict .cfg.generator }}
{{- range (default list $gen.providers) }}
{{- $file := dig "openai" "api_key_file" "" . }}
{{- if hasPrefix "/etc/finserve/providers/" $file }}
{{- $folder := index (splitList "/" (trimPrefix "/etc/finserve/providers/" $file)) 0 }}
{{- if not (hasKey $mounted $folder) }}
{{- fail (printf "%s: provider %q reads its API key from %s, but no serving.providerSecrets entry is named %q" $.where .name $file $folder) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Refuses (helm's fail) a serving config that would take requests without authentication unless the
installer said so: `auth.mode` none, or auto with no keys file, JWKS or legacy key. Renders nothing. */}}
{{- define "finserve.authConsent" -}}
{{- $creds := or .auth.keys_file .auth.jwt .ctx.Values.serving.apiKey.existingSecret }}
{{- if and (or (eq (default "auto" .auth.mode) "none") (not $creds)) (not .ctx.Values.serving.auth.allowUnauthenticated) }}
{{- fail (printf "refusing to serve the API without authentication (%s: auth mode none, or no credential source). Set serving.auth.keys.existingSecret (API keys), serving.auth.jwt.jwksUrl or jwksConfigMap (JWTs) or serving.apiKey.existingSecret; or, for a test cluster only, consent with serving.auth.allowUnauthenticated=true (docs/security.md)" .where) }}
{{- end }}
{{- end }}

{{/* Refuses a drain that cannot fit the pod's grace period: on SIGTERM (or in the RayService head's preStop
hook) serving drains for up to serving.config.drain.grace_s (default 15), then needs up to about 15 s to stop
Ray Serve (11.7 s measured) before Kubernetes' SIGKILL at terminationGracePeriodSeconds. Renders nothing. */}}
{{- define "finserve.drainFits" -}}
{{- $drain := (.Values.serving.config.drain | default dict) }}
{{- $grace := (hasKey $drain "grace_s") | ternary (index $drain "grace_s") 15 | float64 }}
{{- $period := .Values.serving.terminationGracePeriodSeconds | float64 }}
{{- if gt (addf $grace 15) $period }}
{{- fail (printf "serving.config.drain.grace_s (%v s) plus about 15 s to stop must fit serving.terminationGracePeriodSeconds (%v s): raise the period or lower the grace" $grace $period) }}
{{- end }}
{{- end }}

{{/* GPU resources and toleration: call with (dict "resources" ... "tolerations" ... "gpus" N). */}}
{{- define "finserve.resources" -}}
{{- $res := deepCopy (default dict .resources) }}
{{- if gt (int .gpus) 0 }}
{{- $limits := default dict $res.limits }}
{{- $_ := set $limits "nvidia.com/gpu" (int .gpus) }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{- define "finserve.tolerations" -}}
{{- $tol := default list .tolerations }}
{{- if gt (int .gpus) 0 }}
{{- $tol = append $tol (dict "key" "nvidia.com/gpu" "operator" "Exists" "effect" "NoSchedule") }}
{{- end }}
{{- with $tol }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Environment shared by serving containers and the Jobs: ports, paths, backends, secrets. */}}
{{- define "finserve.env" -}}
{{ include "finserve.telemetryEnv" . }}
- name: FINSERVE_HTTP_HOST
  value: "0.0.0.0"
- name: FINSERVE_HTTP_PORT
  value: {{ .Values.serving.httpPort | quote }}
- name: FINSERVE_GRPC_PORT
  value: {{ .Values.serving.grpcPort | quote }}
- name: FINSERVE_DATA_DIR
  value: /var/lib/finserve
- name: FINSERVE_ROUTING_TABLE
  value: /etc/finserve/routing
{{- if eq .Values.registry.type "pvc" }}
- name: FINSERVE_REGISTRY
  value: /mnt/registry
{{- else if eq .Values.registry.type "objectStorage" }}
- name: FINSERVE_REGISTRY
  value: {{ required "registry.objectStorage.url is required when registry.type is objectStorage" .Values.registry.objectStorage.url | quote }}
{{- end }}
{{- if eq .Values.redis.mode "bundled" }}
- name: FINSERVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "finserve.redisSecretName" . }}
      key: {{ .Values.redis.bundled.auth.key }}
- name: FINSERVE_REDIS_URL
  value: {{ printf "redis://:$(FINSERVE_REDIS_PASSWORD)@%s:6379/0" (include "finserve.redisName" .) | quote }}
{{- else if eq .Values.redis.mode "external" }}
{{- if .Values.redis.external.urlSecret.name }}
- name: FINSERVE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.urlSecret.name }}
      key: {{ .Values.redis.external.urlSecret.key }}
{{- else }}
- name: FINSERVE_REDIS_URL
  value: {{ required "redis.external.url or redis.external.urlSecret.name is required when redis.mode is external" .Values.redis.external.url | quote }}
{{- end }}
{{- end }}
{{- with .Values.milvus.uri }}
- name: FINSERVE_MILVUS_URI
  value: {{ . | quote }}
{{- end }}
{{- with .Values.serving.apiKey.existingSecret }}
- name: FINSERVE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.serving.apiKey.key }}
{{- end }}
{{- /* Ray, Hugging Face and tldextract write under HOME and XDG caches: point them at /tmp. */}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
{{- end }}

{{/* FINSERVE_CPU_KERNELS for serving containers when serving.cpuKernels is set (else auto: the
best variant the node's CPU runs). */}}
{{- define "finserve.kernelEnv" -}}
{{- with .Values.serving.cpuKernels -}}
- name: FINSERVE_CPU_KERNELS
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Ray Serve's switches (serving/serve_env.py sets the same for `finserve up`): Ray reads them once per
process, so they go on every Ray container, derived from serving.config.deployments. HAProxy ingress
(`deployments.ingress`, default haproxy) is `finserve up`-only and ignored here: in a cluster the
Service in front of the head is the ingress, and Ray's Python proxy on each node sits behind it.
*/}}
{{- define "finserve.rayServeEnv" -}}
{{- $deployments := (.Values.serving.config.deployments | default dict) -}}
{{- $throughput := true -}}
{{- if hasKey $deployments "throughput_optimized" }}{{ $throughput = index $deployments "throughput_optimized" }}{{ end -}}
- name: RAY_SERVE_THROUGHPUT_OPTIMIZED
  value: {{ ternary "1" "0" $throughput | quote }}
- name: RAY_SERVE_ENABLE_DIRECT_INGRESS
  value: "0"
- name: RAY_SERVE_ENABLE_HA_PROXY
  value: "0"
{{- /* Ray reads x-request-id before finserve: serving/ray_ingress.py makes it safe first. */}}
- name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
  value: finserve.serving.ray_ingress.middlewares
{{- end }}

{{- define "finserve.envFrom" -}}
{{- if and (eq .Values.registry.type "objectStorage") .Values.registry.objectStorage.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.registry.objectStorage.credentialsSecret }}
{{- end }}
{{- end }}

{{/* Volumes every serving-image pod mounts; call with (dict "ctx" $ "configMap" NAME). */}}
{{- define "finserve.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: routing
  configMap:
    name: {{ .ctx.Values.routing.configMapName }}
    # The operator may not have written the table yet; serving starts on its configured routes.
    optional: true
- name: data
{{- if .ctx.Values.serving.dataVolume.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .ctx.Values.serving.dataVolume.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .ctx.Values.serving.dataVolume.sizeLimit }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .ctx.Values.serving.tmpSizeLimit }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .ctx.Values.serving.shmSize }}
{{- if eq .ctx.Values.registry.type "pvc" }}
- name: registry
  persistentVolumeClaim:
    claimName: {{ include "finserve.registryClaimName" .ctx }}
{{- end }}
{{- if .audit }}
- name: audit
  persistentVolumeClaim:
    claimName: {{ include "finserve.auditClaimName" .ctx }}
- name: audit-key
  secret:
    secretName: {{ include "finserve.auditKeySecretName" .ctx }}
    defaultMode: 0400
{{- with .ctx.Values.serving.auth.keys.existingSecret }}
- name: auth-keys
  secret:
    secretName: {{ . }}
    defaultMode: 0400
{{- end }}
{{- with .ctx.Values.serving.auth.jwt.jwksConfigMap }}
- name: jwks
  configMap:
    name: {{ . }}
{{- end }}
{{- range .ctx.Values.serving.providerSecrets }}
- name: provider-{{ .name }}
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end }}
{{- end }}

{{/* Mounts matching finserve.volumes; registryWritable for the training Job only; audit for serving
pods only (a ReadWriteOnce claim would pin Jobs to the serving node). */}}
{{- define "finserve.volumeMounts" -}}
- name: config
  mountPath: /etc/finserve/serving.yaml
  subPath: serving.yaml
  readOnly: true
- name: routing
  # A folder, not a subPath: the kubelet then updates the table in place when the operator writes it.
  mountPath: /etc/finserve/routing
  readOnly: true
- name: data
  mountPath: /var/lib/finserve
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- if eq .ctx.Values.registry.type "pvc" }}
- name: registry
  mountPath: /mnt/registry
  readOnly: {{ not .registryWritable }}
{{- end }}
{{- if .audit }}
# The audit log outlives the pod: a claim over the data dir's audit folder (DATA_DIR/audit).
- name: audit
  mountPath: /var/lib/finserve/audit
- name: audit-key
  mountPath: /etc/finserve/audit-key
  readOnly: true
{{- with .ctx.Values.serving.auth.keys.existingSecret }}
# A folder, not a subPath: the kubelet updates it when the Secret changes (keys made or revoked).
- name: auth-keys
  mountPath: /etc/finserve/auth-keys
  readOnly: true
{{- end }}
{{- with .ctx.Values.serving.auth.jwt.jwksConfigMap }}
- name: jwks
  mountPath: /etc/finserve/jwks
  readOnly: true
{{- end }}
{{- range .ctx.Values.serving.providerSecrets }}
# An openai-engine provider's API key (its openai.api_key_file names a file in this folder).
- name: provider-{{ .name }}
  mountPath: /etc/finserve/providers/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Serving containers only: where the audit log's checkpoint key is mounted. */}}
{{- define "finserve.auditEnv" -}}
- name: FINSERVE_AUDIT_KEY_FILE
  value: /etc/finserve/audit-key/{{ .Values.audit.checkpointKey.key }}
{{- end }}

{{/* Serving containers only: the own /metrics listener on every interface of the pod at serving.metricsPort
(serving/exposure.py; its default, 127.0.0.1, is for `finserve up` on a host). The gateway Service does not
carry the port and the NetworkPolicy admits it from networkPolicy.metricsFrom only. */}}
{{- define "finserve.metricsEnv" -}}
- name: FINSERVE_METRICS_HOST
  value: "0.0.0.0"
- name: FINSERVE_METRICS_PORT
  value: {{ .Values.serving.metricsPort | quote }}
{{- end }}

{{- define "finserve.auditClaimName" -}}
{{- .Values.audit.persistence.existingClaim | default (printf "%s-audit" (include "finserve.fullname" .)) }}
{{- end }}

{{- define "finserve.auditKeySecretName" -}}
{{- .Values.audit.checkpointKey.existingSecret | default (printf "%s-audit-key" (include "finserve.fullname" .)) }}
{{- end }}

{{/* Pools merged over poolDefaults, as a JSON list (use with fromJsonArray); names must be unique. */}}
{{- define "finserve.pools" -}}
{{- $out := list }}
{{- $seen := dict }}
{{- range .Values.serving.pools }}
{{- if hasKey $seen .name }}{{ fail (printf "serving.pools: pool name %q is used twice" .name) }}{{ end }}
{{- $_ := set $seen .name true }}
{{- $out = append $out (mergeOverwrite (deepCopy $.Values.serving.poolDefaults) (deepCopy .)) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- define "finserve.workerGroups" -}}
{{- $out := list }}
{{- $seen := dict }}
{{- range .Values.serving.rayService.workerGroups }}
{{- if hasKey $seen .name }}{{ fail (printf "serving.rayService.workerGroups: group name %q is used twice" .name) }}{{ end }}
{{- $_ := set $seen .name true }}
{{- $out = append $out (mergeOverwrite (deepCopy $.Values.serving.rayService.workerGroupDefaults) (deepCopy .)) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* checkov findings this chart keeps on purpose, each with its reason; call with a list of IDs.
tests/charts/test_chart_checkov.py fails on any finding not skipped here. */}}
{{- define "finserve.checkovSkips" -}}
{{- $reasons := dict
  "CKV_K8S_43" "Images are referenced by tag so kind and minikube can run images loaded without a registry; pin a digest by setting images.<name>.tag to TAG@sha256:DIGEST"
  "CKV_K8S_15" "IfNotPresent: kind and minikube run images loaded into the node without a registry, and release tags are immutable"
  "CKV_K8S_35" "Secrets reach the process as env vars from secretKeyRef because finserve (FINSERVE_API_KEY, FINSERVE_REDIS_URL) and redis (--requirepass) read them that way; nothing is inlined"
  "CKV_K8S_38" "The operator calls the Kubernetes API (ModelRollouts, the routing ConfigMap, scale): it needs its ServiceAccount token"
}}
{{- range $i, $id := . }}
checkov.io/skip{{ add1 $i }}: {{ printf "%s=%s" $id (get $reasons $id) | quote }}
{{- end }}
{{- end }}

{{/* True (non-empty) when serving-image pods get a Secret through the environment. */}}
{{- define "finserve.secretEnv" -}}
{{- if or (eq .Values.redis.mode "bundled") (and (eq .Values.redis.mode "external") .Values.redis.external.urlSecret.name) .Values.serving.apiKey.existingSecret }}true{{ end }}
{{- end }}

{{/* The skips of a pod running a finserve image. */}}
{{- define "finserve.podSkips" -}}
{{- $ids := list "CKV_K8S_43" "CKV_K8S_15" }}
{{- if include "finserve.secretEnv" . }}{{ $ids = append $ids "CKV_K8S_35" }}{{ end }}
{{- include "finserve.checkovSkips" $ids }}
{{- end }}

{{/* True (non-empty) when a Prometheus Operator monitor is on and the operator runs: its rollout
gauges are scraped then (PodMonitor, NetworkPolicy). */}}
{{- define "finserve.operatorScraped" -}}
{{- if and .Values.operator.enabled (or .Values.monitoring.serviceMonitor.enabled .Values.monitoring.podMonitor.enabled) }}true{{ end }}
{{- end }}

{{/* Log format and tracing (docs/observability.md): FINSERVE_LOG_FORMAT for finserve and uvicorn, Ray
Serve's and kopf's own switches beside it; OTEL_* for the OTLP exporter, or tracing off. */}}
{{- define "finserve.telemetryEnv" -}}
- name: FINSERVE_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: RAY_SERVE_LOG_ENCODING
  value: {{ ternary "JSON" "TEXT" (eq .Values.logging.format "json") | quote }}
{{- if and .Values.tracing.enabled .Values.tracing.otlpEndpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplingRatio | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=%s,k8s.namespace.name=%s" .Release.Name .Release.Namespace | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- end }}
