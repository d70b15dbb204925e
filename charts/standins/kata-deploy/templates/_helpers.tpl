{{- define "kata-deploy.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{/* Enabled shim names, sorted, as a list (upstream map shape: shims.<name>.enabled). */}}
{{- define "kata-deploy.shims" -}}
{{- $out := list -}}
{{- range $name, $cfg := .Values.shims -}}
{{- if and (ne $name "disableAll") (kindIs "map" $cfg) -}}
{{- if $cfg.enabled -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (sortAlpha $out) -}}
{{- end -}}
