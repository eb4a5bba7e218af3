package chartgen

// static are the chart's files that do not come from an object of config/default,
// templates with [[ ]] delimiters over the defaults read from config/.
var static = map[string]string{
	"Chart.yaml": `# Generated from config/ by ` + "`make chart`" + ` (internal/chartgen); do not edit.
apiVersion: v2
name: regwire
description: Wires Kubernetes clusters to private container registries (containerd, CRI-O and Docker node configuration, /etc/hosts aliases, pull secrets, image syncs, Nexus provisioning)
type: application
version: [[ trimV .AppVersion ]]
appVersion: "[[ .AppVersion ]]"
kubeVersion: ">=1.30.0-0"
home: https://github.com/regwire/regwire
sources:
  - https://github.com/regwire/regwire
keywords: [registry, mirror, containerd, nexus, image-sync]
`,
	"values.yaml": `# Generated from config/ by ` + "`make chart`" + ` (internal/chartgen); do not edit.
# Defaults render exactly what dist/install.yaml installs (apart from Helm's labels).

image:
  # Image of the manager and of the node agents it starts (one image, every role).
  repository: [[ .Defaults.Repository ]]
  # Tag; empty means the chart's appVersion.
  tag: ""
  # Digest (sha256:…); when set it wins over the tag.
  digest: ""
  # imagePullPolicy of the manager; empty leaves the cluster's default.
  pullPolicy: ""

# Pull secrets for the manager's image (names of Secrets in the release namespace).
imagePullSecrets: []

crds:
  # Install the CRDs with the chart, and upgrade them with it (templates, not crds/:
  # Helm never upgrades what crds/ holds).
  install: true
  # Keep the CRDs, and so every RegistryMirror and ImageSync, when the release is
  # uninstalled (helm.sh/resource-policy: keep). Set false to delete them with it.
  keep: true

manager:
  # Replicas of the manager; with more than one, keep leaderElection on.
  replicas: [[ .Defaults.Replicas ]]
  # Elect a leader (a Lease in the release namespace) so that one replica reconciles.
  leaderElection: true
  resources:
[[ .Defaults.Resources ]]
  nodeSelector: {}
  tolerations: []
  affinity: {}
  priorityClassName: ""
  # More manager flags, e.g. ["--stall-timeout=5m", "--allow-private-redirects"].
  extraArgs: []

# The node agent DaemonSet, which the manager creates and keeps. Empty values keep the
# manager's defaults.
agent:
  # Runtimes the agent writes configuration for: containerd, crio, docker (default
  # containerd only; each adds only its own host mounts, crio adds hostPID).
  runtimes: []
  containerd:
    # containerd's config_path directory on the nodes and its configuration file (read to
    # report ConfigPathNotSet), by distribution:
    #   containerd, kubeadm, kind, EKS, GKE, AKS: /etc/containerd/certs.d and
    #     /etc/containerd/config.toml (the defaults)
    #   k3s:  /var/lib/rancher/k3s/agent/etc/containerd/certs.d and
    #     /var/lib/rancher/k3s/agent/etc/containerd/config.toml
    #   RKE2: /var/lib/rancher/rke2/agent/etc/containerd/certs.d and
    #     /var/lib/rancher/rke2/agent/etc/containerd/config.toml
    # k3s and RKE2 rewrite that directory from registries.yaml when they start; the agent
    # writes its files again on its next resync (a minute).
    certsDir: ""
    config: ""
  # /etc/containers on the nodes, for CRI-O.
  crioDir: ""
  # Docker Engine's certs.d on the nodes.
  dockerCertsDir: ""
  # Node labels the agent requires (default: every node).
  nodeSelector: {}
  # Tolerations of the agent (empty: every taint tolerated, as every node that may pull
  # images needs the wiring).
  tolerations: []
  # PriorityClass of the agent (empty: system-node-critical).
  priorityClassName: ""
  # Resources of the agent container (empty: requests 5m CPU and 32Mi, limit 128Mi).
  resources: {}

metrics:
  serviceMonitor:
    # A ServiceMonitor for the Prometheus Operator, scraping the manager's metrics Service.
    enabled: false
    interval: ""
    # Labels your Prometheus selects ServiceMonitors by, e.g. {release: prometheus}.
    labels: {}
  prometheusRule:
    # Alerts: a mirror not ready on some nodes, a CA expiring, ImageSyncs failing,
    # reconcile errors (config/monitoring/prometheus_rule.yaml).
    enabled: false
    labels: {}
  dashboard:
    # The Grafana dashboard in a ConfigMap labelled for Grafana's dashboard sidecar.
    enabled: false
    labels:
      grafana_dashboard: "1"
`,
	"templates/_helpers.tpl": `{{/* Generated from config/ by make chart (internal/chartgen); do not edit. */}}

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
`,
	"templates/servicemonitor.yaml": `# Generated from config/ by make chart (internal/chartgen); do not edit.
{{- if .Values.metrics.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: regwire-manager
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "regwire.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: regwire
      app.kubernetes.io/component: manager
  endpoints:
    - port: metrics
      path: /metrics
      {{- with .Values.metrics.serviceMonitor.interval }}
      interval: {{ . }}
      {{- end }}
{{- end }}
`,
	"templates/prometheusrule.yaml": `# Generated from config/ by make chart (internal/chartgen); do not edit.
{{- if .Values.metrics.prometheusRule.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: regwire
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "regwire.labels" . | nindent 4 }}
    {{- with .Values.metrics.prometheusRule.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- (.Files.Get "files/prometheus_rule.yaml" | fromYaml).spec | toYaml | nindent 2 }}
{{- end }}
`,
	"templates/dashboard.yaml": `# Generated from config/ by make chart (internal/chartgen); do not edit.
{{- if .Values.metrics.dashboard.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: regwire-grafana-dashboard
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "regwire.labels" . | nindent 4 }}
    {{- with .Values.metrics.dashboard.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
data:
  dashboard.json: |
    {{- .Files.Get "files/dashboard.json" | nindent 4 }}
{{- end }}
`,
	"templates/NOTES.txt": `regwire {{ .Chart.AppVersion }} is installed in {{ .Release.Namespace }}.

The manager starts the node agent DaemonSet (regwire-agent) itself. Wire a registry with
a RegistryMirror and copy images into it with ImageSyncs:

  kubectl get registrymirrors,imagesyncs -A
  kubectl -n {{ .Release.Namespace }} get deployment,daemonset

{{- if .Values.crds.keep }}

The CRDs are kept when the release is uninstalled (crds.keep): delete them by hand to
remove every RegistryMirror and ImageSync.
{{- end }}
`,
}

func init() {
	static["values.schema.json"] = valuesSchema
}

// valuesSchema makes Helm refuse values the chart does not know (a misspelt key would
// otherwise be ignored without a word) and values of the wrong type.
const valuesSchema = `{
  "$schema": "https://json-schema.org/draft-07/schema#",
  "title": "regwire chart values",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "image": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "repository": {"type": "string", "minLength": 1},
        "tag": {"type": "string"},
        "digest": {"type": "string", "pattern": "^(|sha256:[a-f0-9]{64})$"},
        "pullPolicy": {"type": "string", "enum": ["", "Always", "IfNotPresent", "Never"]}
      }
    },
    "imagePullSecrets": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
    "crds": {
      "type": "object",
      "additionalProperties": false,
      "properties": {"install": {"type": "boolean"}, "keep": {"type": "boolean"}}
    },
    "manager": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "leaderElection": {"type": "boolean"},
        "resources": {"type": "object"},
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "affinity": {"type": "object"},
        "priorityClassName": {"type": "string"},
        "extraArgs": {"type": "array", "items": {"type": "string"}}
      }
    },
    "agent": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "runtimes": {"type": "array", "items": {"type": "string", "enum": ["containerd", "crio", "docker"]}},
        "containerd": {
          "type": "object",
          "additionalProperties": false,
          "properties": {"certsDir": {"type": "string"}, "config": {"type": "string"}}
        },
        "crioDir": {"type": "string"},
        "dockerCertsDir": {"type": "string"},
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "priorityClassName": {"type": "string"},
        "resources": {"type": "object"}
      }
    },
    "metrics": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "serviceMonitor": {
          "type": "object",
          "additionalProperties": false,
          "properties": {"enabled": {"type": "boolean"}, "interval": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}
        },
        "prometheusRule": {
          "type": "object",
          "additionalProperties": false,
          "properties": {"enabled": {"type": "boolean"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}
        },
        "dashboard": {
          "type": "object",
          "additionalProperties": false,
          "properties": {"enabled": {"type": "boolean"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}
        }
      }
    }
  }
}
`
