{{/* Generated from config/ by make chart (internal/chartgen); do not edit. */}}

{{/* The image of the manager and the agents. */}}
{{- define "regwire.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Helm's labels, added to every object's own (never to selectors). */}}
{{- define "regwire.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The manager's --agent-* flags for the values that are set. */}}
{{- define "regwire.agentArgs" -}}
{{- with .Values.agent.runtimes }}
- --agent-runtimes={{ join "," . }}
{{- end }}
{{- with .Values.agent.containerd.certsDir }}
- --agent-containerd-certs-dir={{ . }}
{{- end }}
{{- with .Values.agent.containerd.config }}
- --agent-containerd-config={{ . }}
{{- end }}
{{- with .Values.agent.crioDir }}
- --agent-crio-dir={{ . }}
{{- end }}
{{- with .Values.agent.dockerCertsDir }}
- --agent-docker-certs-dir={{ . }}
{{- end }}
{{- range $k, $v := .Values.agent.nodeSelector }}
- --agent-node-selector={{ $k }}={{ $v }}
{{- end }}
{{- with .Values.agent.tolerations }}
- --agent-tolerations={{ toJson . }}
{{- end }}
{{- with .Values.agent.priorityClassName }}
- --agent-priority-class={{ . }}
{{- end }}
{{- with .Values.agent.resources }}
- --agent-resources={{ toJson . }}
{{- end }}
{{- end }}
