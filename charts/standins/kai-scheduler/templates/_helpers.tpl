{{- define "kai-scheduler.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{/* "<registry>/<image name>:<tag>": dict(ctx, image). */}}
{{- define "kai-scheduler.image" -}}
{{- $g := .ctx.Values.global -}}
{{- printf "%s/%s:%s" $g.registry .image.name (default (default .ctx.Chart.AppVersion $g.tag) .image.tag) -}}
{{- end -}}

{{/* A component Deployment: dict(ctx, name, image, replicas, args, configMap?). */}}
{{- define "kai-scheduler.deployment" -}}
{{- $ctx := .ctx -}}
{{- $g := $ctx.Values.global -}}
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
        blueprintd.io/gpu-sharing: {{ $g.gpuSharing | quote }}
    spec:
      serviceAccountName: kai-scheduler
      {{- with $g.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "kai-scheduler.image" (dict "ctx" $ctx "image" .image) }}
          imagePullPolicy: {{ default $g.imagePullPolicy .image.pullPolicy }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $g.securityContext }}
          securityContext:
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
