{{- define "kai-scheduler.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{- define "kai-scheduler.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.global.registry .name (default .ctx.Chart.AppVersion .ctx.Values.global.tag) -}}
{{- end -}}

{{/* A component Deployment: dict(ctx, name, replicas, args, resources?, configMap?). */}}
{{- define "kai-scheduler.deployment" -}}
{{- $ctx := .ctx -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "kai-scheduler.labels" $ctx | nindent 4 }}
    app: {{ .name }}
spec:
  replicas: {{ .replicas }}
  selector:
    matchLabels:
      app: {{ .name }}
  template:
    metadata:
      labels:
        app: {{ .name }}
        app.kubernetes.io/part-of: kai-scheduler
      annotations:
        blueprintd.io/gpu-sharing: {{ $ctx.Values.global.gpuSharing | quote }}
    spec:
      serviceAccountName: kai-scheduler
      {{- with $ctx.Values.global.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $ctx.Values.global.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "kai-scheduler.image" (dict "ctx" $ctx "name" .name) }}
          imagePullPolicy: IfNotPresent
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if .configMap }}
          volumeMounts:
            - name: config
              mountPath: /config
              readOnly: true
          {{- end }}
      {{- with .configMap }}
      volumes:
        - name: config
          configMap:
            name: {{ . }}
      {{- end }}
{{- end -}}
