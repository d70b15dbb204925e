{{- define "kata-deploy.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
blueprintd.io/standin: "true"
{{- end -}}

{{- define "kata-deploy.image" -}}
{{- printf "%s:%s" .Values.image.reference (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The "-<suffix>" of a multi-install, or nothing. */}}
{{- define "kata-deploy.suffix" -}}
{{- with .Values.env.multiInstallSuffix }}-{{ . }}{{ end -}}
{{- end -}}

{{/*
Enabled shims, sorted, as a JSON list. As in 3.24.0 every key of `shims` is a shim and must be
a map with `enabled` (values.schema.json says so first; this is the template's own guard).
*/}}
{{- define "kata-deploy.enabledShims" -}}
{{- $out := list -}}
{{- range $name, $cfg := .Values.shims -}}
{{- if not (kindIs "map" $cfg) -}}
{{- fail (printf "shims.%s is %v: every key under shims is a shim and must be a map with `enabled` (to turn shims off, set shims.<name>.enabled: false on each)" $name $cfg) -}}
{{- end -}}
{{- if $cfg.enabled -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- toJson (sortAlpha $out) -}}
{{- end -}}

{{/* Pod overhead of each shim's RuntimeClass (memory, cpu); unknown shims use "default". */}}
{{- define "kata-deploy.overheads" -}}
{{- $vm := dict "memory" "130Mi" "cpu" "250m" -}}
{{- $qemu := dict "memory" "160Mi" "cpu" "250m" -}}
{{- $tee := dict "memory" "2048Mi" "cpu" "1.0" -}}
{{- $gpu := dict "memory" "4096Mi" "cpu" "1.0" -}}
{{- $gpuTee := dict "memory" "16384Mi" "cpu" "1.0" -}}
{{- toYaml (dict
    "default" $qemu
    "clh" $vm "cloud-hypervisor" $vm "dragonball" $vm "fc" $vm "stratovirt" $vm
    "qemu" $qemu "qemu-coco-dev" $qemu "qemu-runtime-rs" $qemu
    "qemu-se-runtime-rs" (dict "memory" "1024Mi" "cpu" "1.0")
    "qemu-snp" $tee "qemu-tdx" $tee
    "qemu-nvidia-gpu" $gpu "qemu-nvidia-gpu-snp" $gpuTee "qemu-nvidia-gpu-tdx" $gpuTee) -}}
{{- end -}}
