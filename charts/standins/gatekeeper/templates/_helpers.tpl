{{- define "gatekeeper.labels" -}}
app: gatekeeper
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{- define "gatekeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.release) -}}
{{- end -}}

{{- define "gatekeeper.crdImage" -}}
{{- printf "%s:%s" .Values.image.crdRepository (default .Chart.AppVersion .Values.image.release) -}}
{{- end -}}

{{/* Hook annotations: dict(hook, weight). */}}
{{- define "gatekeeper.hook" -}}
helm.sh/hook: {{ .hook }}
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/* A pod spec shared by the two Deployments: dict(ctx, pod, args, ports). */}}
{{- define "gatekeeper.podSpec" -}}
{{- $ctx := .ctx -}}
serviceAccountName: gatekeeper-admin
priorityClassName: {{ .pod.priorityClassName }}
{{- with $ctx.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: manager
    image: {{ include "gatekeeper.image" $ctx }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    ports:
      {{- toYaml .ports | nindent 6 }}
    {{- with .pod.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
