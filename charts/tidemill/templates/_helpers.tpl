{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "tidemill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release> if it already contains the chart name, else <release>-<chart>. */}}
{{- define "tidemill.fullname" -}}
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

{{- define "tidemill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels; call with (dict "root" $ "component" "mlflow"). */}}
{{- define "tidemill.labels" -}}
helm.sh/chart: {{ include "tidemill.chart" .root }}
{{ include "tidemill.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tidemill
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tidemill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidemill.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference; call with (dict "image" .Values.x.image "root" $). Digest wins over tag. */}}
{{- define "tidemill.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "tidemill.mlflow.fullname" -}}{{ include "tidemill.fullname" . }}-mlflow{{- end }}
{{- define "tidemill.postgresql.fullname" -}}{{ include "tidemill.fullname" . }}-postgresql{{- end }}
{{- define "tidemill.controlApi.fullname" -}}{{ include "tidemill.fullname" . }}-control-api{{- end }}
{{- define "tidemill.ray.name" -}}{{ include "tidemill.fullname" . }}-ray{{- end }}
{{- define "tidemill.featureServer.fullname" -}}{{ include "tidemill.fullname" . }}-feature-server{{- end }}
{{- define "tidemill.platformApi.fullname" -}}{{ include "tidemill.fullname" . }}-platform-api{{- end }}
{{- define "tidemill.predictor.serviceAccount" -}}{{ include "tidemill.fullname" . }}-predictor{{- end }}
{{- define "tidemill.runtime.fullname" -}}{{ include "tidemill.fullname" . }}-predictor{{- end }}

{{- define "tidemill.isvc.name" -}}
{{- default (printf "%s-forecaster" (include "tidemill.fullname" .)) .Values.forecaster.name }}
{{- end }}

{{/* The registered models served, one InferenceService each: forecaster (the first) and each
entry of models (its fields over forecaster's). JSON list of {isvc, registeredModel}. */}}
{{- define "tidemill.isvc.all" -}}
{{- $all := list (dict "isvc" (include "tidemill.isvc.name" .) "registeredModel" .Values.forecaster.registeredModel) }}
{{- range .Values.models }}
{{- $all = append $all (dict "isvc" .name "registeredModel" .registeredModel) }}
{{- end }}
{{- toJson $all }}
{{- end }}

{{/* InferenceService names, a JSON list. */}}
{{- define "tidemill.isvc.names" -}}
{{- $names := list }}
{{- range include "tidemill.isvc.all" . | fromJsonArray }}
{{- $names = append $names .isvc }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* TIDEMILL_ISVC_NAMES: registered model -> InferenceService (serving/split.py), a JSON object;
empty when no model names its registered model. */}}
{{- define "tidemill.isvc.registry" -}}
{{- $map := dict }}
{{- range include "tidemill.isvc.all" . | fromJsonArray }}
{{- if .registeredModel }}
{{- $_ := set $map .registeredModel .isvc }}
{{- end }}
{{- end }}
{{- if $map }}{{ toJson $map }}{{ end }}
{{- end }}

{{/* In-cluster URLs. */}}
{{- define "tidemill.mlflow.url" -}}
http://{{ include "tidemill.mlflow.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.mlflow.service.port }}
{{- end }}
{{- define "tidemill.predictionLogSink.url" -}}
http://{{ include "tidemill.controlApi.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.controlApi.service.port }}/prediction-log
{{- end }}

{{/* Secret + key of the MLflow backend-store URL and of the prediction-log URL. */}}
{{- define "tidemill.backendStore.secretName" -}}
{{- if .Values.mlflow.backendStore.existingSecret }}{{ .Values.mlflow.backendStore.existingSecret }}
{{- else if .Values.postgresql.enabled }}{{ include "tidemill.postgresql.fullname" . }}-urls
{{- else }}{{ fail "mlflow.backendStore.existingSecret is required when postgresql.enabled=false" }}
{{- end }}
{{- end }}
{{- define "tidemill.backendStore.secretKey" -}}
{{- if .Values.mlflow.backendStore.existingSecret }}{{ .Values.mlflow.backendStore.secretKey }}{{ else }}mlflow-uri{{ end }}
{{- end }}
{{- define "tidemill.predictionLog.secretName" -}}
{{- if .Values.controlApi.predictionLog.existingSecret }}{{ .Values.controlApi.predictionLog.existingSecret }}
{{- else if .Values.postgresql.enabled }}{{ include "tidemill.postgresql.fullname" . }}-urls
{{- else }}{{ fail "controlApi.predictionLog.existingSecret is required when postgresql.enabled=false" }}
{{- end }}
{{- end }}
{{- define "tidemill.predictionLog.secretKey" -}}
{{- if .Values.controlApi.predictionLog.existingSecret }}{{ .Values.controlApi.predictionLog.secretKey }}{{ else }}prediction-log-url{{ end }}
{{- end }}

{{- define "tidemill.platformDb.secretName" -}}
{{- if .Values.platformApi.database.existingSecret }}{{ .Values.platformApi.database.existingSecret }}
{{- else if .Values.postgresql.enabled }}{{ include "tidemill.postgresql.fullname" . }}-urls
{{- else }}{{ fail "platformApi.database.existingSecret is required when postgresql.enabled=false" }}
{{- end }}
{{- end }}
{{- define "tidemill.platformDb.secretKey" -}}
{{- if .Values.platformApi.database.existingSecret }}{{ .Values.platformApi.database.secretKey }}{{ else }}platform-db-url{{ end }}
{{- end }}

{{/* An InferenceService's in-cluster URL, (dict "root" . "isvc" NAME): the Knative service
in serverless mode, the predictor Service in standard mode. */}}
{{- define "tidemill.isvc.urlOf" -}}
{{- if eq .root.Values.forecaster.deploymentMode "standard" -}}
http://{{ .isvc }}-predictor.{{ .root.Release.Namespace }}.svc.cluster.local
{{- else -}}
http://{{ .isvc }}.{{ .root.Release.Namespace }}.svc.cluster.local
{{- end -}}
{{- end }}

{{/* The forecaster's URL: where the platform API's /predict without a model name goes. */}}
{{- define "tidemill.isvc.url" -}}
{{- include "tidemill.isvc.urlOf" (dict "root" . "isvc" (include "tidemill.isvc.name" .)) }}
{{- end }}

{{/* TIDEMILL_PREDICT_URLS: registered model -> the URL of the InferenceService serving it
(serving/platform_api/models.py predicts by model name there), a JSON object; empty when no
model names its registered model. */}}
{{- define "tidemill.isvc.predictUrls" -}}
{{- $map := dict }}
{{- range include "tidemill.isvc.all" . | fromJsonArray }}
{{- if .registeredModel }}
{{- $_ := set $map .registeredModel (include "tidemill.isvc.urlOf" (dict "root" $ "isvc" .isvc)) }}
{{- end }}
{{- end }}
{{- if $map }}{{ toJson $map }}{{ end }}
{{- end }}

{{/* Secret + keys of Feast's registry and online store URLs (the feature server). */}}
{{- define "tidemill.feast.secretName" -}}
{{- if .Values.featureServer.existingSecret }}{{ .Values.featureServer.existingSecret }}
{{- else if .Values.postgresql.enabled }}{{ include "tidemill.postgresql.fullname" . }}-urls
{{- else }}{{ fail "featureServer.existingSecret is required when postgresql.enabled=false" }}
{{- end }}
{{- end }}

{{- define "tidemill.featureServer.url" -}}
http://{{ include "tidemill.featureServer.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.featureServer.port }}
{{- end }}

{{- define "tidemill.controlToken.secretName" -}}
{{- default (printf "%s-token" (include "tidemill.controlApi.fullname" .)) .Values.controlApi.auth.existingSecret }}
{{- end }}

{{/* Standard writable scratch volume for read-only root filesystems. */}}
{{- define "tidemill.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/*
Container securityContext of the predictor: only the fields Knative Serving admits by default
(no `privileged`), so the same spec works in serverless and standard mode.
*/}}
{{- define "tidemill.predictorContainerSecurityContext" -}}
{{- $sc := .Values.containerSecurityContext -}}
runAsNonRoot: {{ $sc.runAsNonRoot }}
runAsUser: {{ $sc.runAsUser }}
runAsGroup: {{ $sc.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ $sc.readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Predictor spec of the InferenceService; call with (dict "root" $ "storageUri" "..." "name" "").
The champion (spec.predictor) and, in standard mode, the challenger (spec.canary[0].predictor)
render from this one definition so they differ only in name and model.storageUri - the fields
serving/split_kubernetes.py patches.
*/}}
{{- define "tidemill.predictorSpec" -}}
{{- $root := .root }}
{{- $f := $root.Values.forecaster }}
{{- if .name }}
name: {{ .name }}
{{- end }}
serviceAccountName: {{ include "tidemill.predictor.serviceAccount" $root }}
minReplicas: {{ $f.minReplicas }}
maxReplicas: {{ $f.maxReplicas }}
scaleMetric: {{ $f.scaleMetric }}
scaleTarget: {{ $f.scaleTarget }}
timeout: {{ $f.timeout }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq $f.deploymentMode "standard" }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- end }}
{{- if $f.logger.enabled }}
logger:
  mode: {{ $f.logger.mode }}
  url: {{ include "tidemill.predictionLogSink.url" $root }}
{{- end }}
{{- with $f.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $f.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "tidemill.tmpVolume" $root | nindent 2 }}
model:
  # Container name; the canary predictor's schema requires it (KServe's default name).
  name: kserve-container
  modelFormat:
    name: {{ $f.modelFormat }}
  runtime: {{ include "tidemill.runtime.fullname" $root }}
  protocolVersion: v2
  storageUri: {{ .storageUri | quote }}
  image: {{ include "tidemill.image" (dict "image" $f.image "root" $root) }}
  imagePullPolicy: {{ $f.image.pullPolicy }}
  env:
    - name: TIDEMILL_MODEL_NAME
      value: {{ $f.modelName | quote }}
    - name: TIDEMILL_MODEL_DIR
      value: /mnt/models
    {{- with $root.Values.featureServer }}
    {{- if .enabled }}
    # a tabular request may send an entity key: its features come from Feast's feature server
    - name: TIDEMILL_FEAST_FEATURE_SERVER_URL
      value: {{ include "tidemill.featureServer.url" $root | quote }}
    - name: TIDEMILL_FEAST_FEATURE_VIEW
      value: {{ .featureView | quote }}
    - name: TIDEMILL_FEAST_ENTITY_KEY
      value: {{ .entityKey | quote }}
    - name: TIDEMILL_FEAST_ENTITY_KEY_TYPE
      value: {{ .entityKeyType | quote }}
    - name: TIDEMILL_FEAST_TIMEOUT_S
      value: {{ .timeoutSeconds | quote }}
    {{- end }}
    {{- end }}
    {{- with $f.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml $f.resources | nindent 4 }}
  readinessProbe:
    {{- toYaml $f.readinessProbe | nindent 4 }}
  livenessProbe:
    {{- toYaml $f.livenessProbe | nindent 4 }}
  securityContext:
    {{- include "tidemill.predictorContainerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* NetworkPolicy peers for a list of namespace names. */}}
{{- define "tidemill.np.namespaces" -}}
{{- range . }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
{{- end }}
{{- end }}
