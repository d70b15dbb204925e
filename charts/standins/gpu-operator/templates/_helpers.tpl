{{/* Name of the chart's objects' app label. */}}
{{- define "gpu-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "gpu-operator.labels" -}}
app.kubernetes.io/name: {{ include "gpu-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{/* "<repository>/<image>:<version>" from a values block; version falls back to appVersion. */}}
{{- define "gpu-operator.image" -}}
{{- $v := .values -}}
{{- printf "%s/%s:%s" $v.repository $v.image (toString (default .ctx.Chart.AppVersion $v.version)) -}}
{{- end -}}

{{/*
An operand DaemonSet. Arguments (dict):
  ctx: the root context; name: object name; deploy: suffix of the nvidia.com/gpu.deploy.* node
  label it is gated on; image: image reference; env: list of env vars (optional);
  ports: container ports (optional); configMap: dict(name, mountPath) mounted read-only
  (optional); annotations: pod annotations (optional).
*/}}
{{- define "gpu-operator.daemonset" -}}
{{- $ctx := .ctx -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "gpu-operator.labels" $ctx | nindent 4 }}
    app: {{ .name }}
    app.kubernetes.io/component: {{ .deploy }}
spec:
  revisionHistoryLimit: {{ $ctx.Values.daemonsets.revisionHistoryLimit }}
  selector:
    matchLabels:
      app: {{ .name }}
  updateStrategy:
    type: {{ $ctx.Values.daemonsets.updateStrategy }}
  template:
    metadata:
      labels:
        app: {{ .name }}
        app.kubernetes.io/component: {{ .deploy }}
        app.kubernetes.io/part-of: gpu-operator
      {{- with .annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: gpu-operator
      priorityClassName: {{ $ctx.Values.daemonsets.priorityClassName }}
      nodeSelector:
        nvidia.com/gpu.deploy.{{ .deploy }}: "true"
      {{- with $ctx.Values.daemonsets.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .deploy }}
          image: {{ .image }}
          imagePullPolicy: IfNotPresent
          {{- with .env }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            # Not privileged: a plain kube-apiserver (no --allow-privileged) rejects that.
            capabilities:
              add: ["SYS_ADMIN"]
          {{- with .configMap }}
          volumeMounts:
            - name: config
              mountPath: {{ .mountPath }}
              readOnly: true
          {{- end }}
      {{- with .configMap }}
      volumes:
        - name: config
          configMap:
            name: {{ .name }}
            optional: true
      {{- end }}
{{- end -}}
