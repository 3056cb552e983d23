{{/*
Chart name.
*/}}
{{- define "answerback.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name when it contains the chart name,
else <release>-<chart>. Components are <fullname>-<component>.
*/}}
{{- define "answerback.fullname" -}}
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

{{/*
Name of a component's resources: include "answerback.componentName" (list $ "gateway").
*/}}
{{- define "answerback.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "answerback.fullname" $root | trunc 52 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "answerback.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "answerback.labels" -}}
helm.sh/chart: {{ include "answerback.chart" . }}
app.kubernetes.io/name: {{ include "answerback.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: answerback
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of a component's resources: include "answerback.componentLabels" (list $ "gateway").
*/}}
{{- define "answerback.componentLabels" -}}
{{ include "answerback.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Selector labels of a component: include "answerback.selectorLabels" (list $ "gateway").
*/}}
{{- define "answerback.selectorLabels" -}}
app.kubernetes.io/name: {{ include "answerback.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "answerback.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "answerback.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image of a service: <registry>/answerback-<service>:<tag>.
*/}}
{{- define "answerback.image" -}}
{{- $root := index . 0 }}
{{- $tag := toString (default $root.Chart.AppVersion $root.Values.image.tag) }}
{{- printf "%s/answerback-%s:%s" (trimSuffix "/" $root.Values.image.registry) (index . 1) $tag }}
{{- end }}

{{/*
Whether Kafka TLS is on: asked for, or implied by a CA or a client certificate.
*/}}
{{- define "answerback.kafkaTLS" -}}
{{- with .Values.kafka.tls }}
{{- if or .enabled .caSecret.name .clientCertSecret.name }}true{{ end }}
{{- end }}
{{- end }}

{{/* Where the mounted secrets live in the containers. */}}
{{- define "answerback.kafkaCAFile" -}}/etc/answerback/kafka-ca/ca.crt{{- end }}
{{- define "answerback.kafkaCertFile" -}}/etc/answerback/kafka-client/tls.crt{{- end }}
{{- define "answerback.kafkaKeyFile" -}}/etc/answerback/kafka-client/tls.key{{- end }}
{{- define "answerback.kafkaPasswordFile" -}}/etc/answerback/kafka-sasl/password{{- end }}
{{- define "answerback.jwksFile" -}}/etc/answerback/jwks/jwks.json{{- end }}

{{/*
ConfigMap data every service reads: the Kafka connection (below), logging,
tracing.
*/}}
{{- define "answerback.commonConfig" -}}
{{ include "answerback.kafkaConfig" . }}
{{- with .Values.logLevel }}
LOG_LEVEL: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.logLevel }}
KAFKA_LOG_LEVEL: {{ . | quote }}
{{- end }}
{{- with .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
ConfigMap data of the Kafka connection: brokers, topic prefix, TLS and SASL
(without secrets). Read by every service and by abctl.
*/}}
{{- define "answerback.kafkaConfig" -}}
KAFKA_BROKERS: {{ required "kafka.brokers is required" .Values.kafka.brokers | quote }}
{{- with .Values.kafka.topicPrefix }}
TOPIC_PREFIX: {{ . | quote }}
{{- end }}
{{- if include "answerback.kafkaTLS" . }}
KAFKA_TLS: "true"
{{- end }}
{{- if .Values.kafka.tls.caSecret.name }}
KAFKA_TLS_CA_FILE: {{ include "answerback.kafkaCAFile" . | quote }}
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret.name }}
KAFKA_TLS_CERT_FILE: {{ include "answerback.kafkaCertFile" . | quote }}
KAFKA_TLS_KEY_FILE: {{ include "answerback.kafkaKeyFile" . | quote }}
{{- end }}
{{- with .Values.kafka.tls.serverName }}
KAFKA_TLS_SERVER_NAME: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl.username }}
KAFKA_SASL_USERNAME: {{ . | quote }}
{{- end }}
{{- if and .Values.kafka.sasl.passwordSecret.name .Values.kafka.sasl.passwordSecret.mountAsFile }}
KAFKA_SASL_PASSWORD_FILE: {{ include "answerback.kafkaPasswordFile" . | quote }}
{{- end }}
{{- end }}

{{/*
METRICS_ADDR and PPROF: include "answerback.metricsConfig" (list $ .Values.gateway).
*/}}
{{- define "answerback.metricsConfig" -}}
{{- $root := index . 0 -}}
METRICS_ADDR: {{ printf ":%v" $root.Values.metrics.port | quote }}
{{- if (index . 1).pprof }}
PPROF: "true"
{{- end }}
{{- end }}

{{/*
Secret environment variables every service reads (as env entries).
*/}}
{{- define "answerback.kafkaSecretEnv" -}}
{{- with .Values.kafka.sasl.passwordSecret }}
{{- if and .name (not .mountAsFile) }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

{{- define "answerback.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.urlSecret.name is required" .Values.database.urlSecret.name }}
      key: {{ required "database.urlSecret.key is required" .Values.database.urlSecret.key }}
{{- end }}

{{/*
The gateway's DATABASE_URL: its own role's (the tenant wall) when given, else the owner's.
*/}}
{{- define "answerback.gatewayDatabaseEnv" -}}
{{- with .Values.database.gateway.urlSecret }}
{{- if .name }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ required "database.gateway.urlSecret.key is required" .key }}
{{- else }}
{{- include "answerback.databaseEnv" $ }}
{{- end }}
{{- end }}
{{- end }}

{{/*
INSTANCE_ID: the pod's name, unique per live pod and never reused.
*/}}
{{- define "answerback.instanceEnv" -}}
- name: INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/*
Volumes for the Kafka secrets mounted as files (CA, client certificate,
SASL password file). Empty when none is configured.
*/}}
{{- define "answerback.kafkaVolumes" -}}
{{- with .Values.kafka.tls.caSecret }}
{{- if .name }}
- name: kafka-ca
  secret:
    secretName: {{ .name }}
    defaultMode: 288 # 0440: readable by the owner and fsGroup
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- with .Values.kafka.tls.clientCertSecret }}
{{- if .name }}
- name: kafka-client
  secret:
    secretName: {{ .name }}
    defaultMode: 288 # 0440: readable by the owner and fsGroup
    items:
      - key: {{ .certKey }}
        path: tls.crt
      - key: {{ .keyKey }}
        path: tls.key
{{- end }}
{{- end }}
{{- with .Values.kafka.sasl.passwordSecret }}
{{- if and .name .mountAsFile }}
- name: kafka-sasl
  secret:
    secretName: {{ .name }}
    defaultMode: 288 # 0440: readable by the owner and fsGroup
    items:
      - key: {{ .key }}
        path: password
{{- end }}
{{- end }}
{{- end }}

{{- define "answerback.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/answerback/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret.name }}
- name: kafka-client
  mountPath: /etc/answerback/kafka-client
  readOnly: true
{{- end }}
{{- if and .Values.kafka.sasl.passwordSecret.name .Values.kafka.sasl.passwordSecret.mountAsFile }}
- name: kafka-sasl
  mountPath: /etc/answerback/kafka-sasl
  readOnly: true
{{- end }}
{{- end }}

{{/*
Pod-level settings every service shares: include "answerback.podCommon" (list $ .Values.gateway).
*/}}
{{- define "answerback.podCommon" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 -}}
serviceAccountName: {{ include "answerback.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Topology spread: the component's own, else spread over nodes when possible.
include "answerback.topologySpread" (list $ "gateway" .Values.gateway).
*/}}
{{- define "answerback.topologySpread" -}}
{{- $c := index . 2 -}}
topologySpreadConstraints:
{{- if $c.topologySpreadConstraints }}
  {{- toYaml $c.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "answerback.selectorLabels" (list (index . 0) (index . 1)) | nindent 8 }}
{{- end }}
{{- end }}

{{/*
Pod annotations: config checksum (a changed ConfigMap rolls the pods),
Prometheus scrape hints, the component's own.
include "answerback.podAnnotations" (list $ "gateway" .Values.gateway true).
*/}}
{{- define "answerback.podAnnotations" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $c := index . 2 }}
{{- $metrics := index . 3 -}}
checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
{{- if and $metrics $root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $root.Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with $c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Refuse settings that cannot work.
*/}}
{{- define "answerback.validate" -}}
{{- $p := int .Values.kafka.partitions }}
{{- if lt $p 1 }}
{{- fail "kafka.partitions must be at least 1" }}
{{- end }}
{{- if gt (int .Values.aggregator.replicas) $p }}
{{- fail (printf "aggregator.replicas (%v) exceeds kafka.partitions (%v): one consumer per partition, the rest would idle" .Values.aggregator.replicas $p) }}
{{- end }}
{{- if gt (int .Values.projector.replicas) $p }}
{{- fail (printf "projector.replicas (%v) exceeds kafka.partitions (%v): one consumer per partition, the rest would idle" .Values.projector.replicas $p) }}
{{- end }}
{{- if and .Values.salesdaily.enabled (gt (int .Values.salesdaily.replicas) $p) }}
{{- fail (printf "salesdaily.replicas (%v) exceeds kafka.partitions (%v)" .Values.salesdaily.replicas $p) }}
{{- end }}
{{- if not (or .Values.auth.jwksUrl .Values.auth.jwksConfigMap.name) }}
{{- fail "the gateway needs auth.jwksUrl or auth.jwksConfigMap.name" }}
{{- end }}
{{- if and .Values.auth.jwksUrl .Values.auth.jwksConfigMap.name }}
{{- fail "set one of auth.jwksUrl and auth.jwksConfigMap.name, not both" }}
{{- end }}
{{- if not (and .Values.auth.issuer .Values.auth.audience) }}
{{- fail "the gateway needs auth.issuer and auth.audience" }}
{{- end }}
{{- if ne (empty .Values.database.gateway.role) (empty .Values.database.gateway.urlSecret.name) }}
{{- fail "the tenant wall needs both database.gateway.role and database.gateway.urlSecret.name (or neither)" }}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.passwordSecret.name) }}
{{- fail "kafka.sasl.mechanism is set: name the password's Secret in kafka.sasl.passwordSecret.name" }}
{{- end }}
{{- with .Values.gateway.autoscaling }}
{{- if and .enabled (gt (int .minReplicas) (int .maxReplicas)) }}
{{- fail "gateway.autoscaling.minReplicas exceeds maxReplicas" }}
{{- end }}
{{- end }}
{{- if ge (int .Values.gateway.preStopSleepSeconds) (int .Values.gateway.terminationGracePeriodSeconds) }}
{{- fail "gateway.preStopSleepSeconds must be shorter than gateway.terminationGracePeriodSeconds" }}
{{- end }}
{{- end }}

{{/*
Kubernetes name of a topic's KafkaTopic: lower case, "_" as "-".
*/}}
{{- define "answerback.topicResourceName" -}}
{{- . | lower | replace "_" "-" | trunc 253 | trimSuffix "-" | trimSuffix "." }}
{{- end }}
