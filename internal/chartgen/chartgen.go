// Package chartgen writes the Helm chart charts/regwire from the kustomize tree under
// config/: the objects of config/default become its templates, with the values Helm users
// expect substituted in, and config/monitoring its optional ServiceMonitor, alert rules
// and dashboard. The chart is generated, never edited: make chart writes it, and a test
// fails when it and config/ drift apart.
package chartgen

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/config"
)

// Dir is where the chart lives in the repository.
const Dir = "charts/regwire"

// Sentinels set into the objects before they are marshalled, replaced by template text.
const (
	sNamespace = "__RELEASE_NAMESPACE__"
	sLabels    = "__HELM_LABELS__"
	sImage     = "__IMAGE__"
	sArgs      = "__MANAGER_ARGS__"
	sReplicas  = "__REPLICAS__"
	sResources = "__MANAGER_RESOURCES__"
	sPodExtras = "__MANAGER_POD_EXTRAS__"
	sPullPol   = "__PULL_POLICY__"
	sCRDKeep   = "__CRD_KEEP__"
)

// Generate returns the chart's files (paths relative to Dir) for appVersion, the release
// the chart installs (its image tag by default).
func Generate(appVersion string, monitoring map[string][]byte) (map[string][]byte, error) {
	objs, err := config.Install("")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	var manager *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			manager = o
		}
	}
	if manager == nil {
		return nil, fmt.Errorf("config/default has no Deployment")
	}
	defaults, err := managerDefaults(manager)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue // Helm installs into the release's namespace (helm install -n … --create-namespace)
		}
		name, text, err := objectTemplate(o, defaults)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		files[name] = text
	}
	for name, b := range monitoring {
		files["files/"+name] = b
	}
	templates, err := static()
	if err != nil {
		return nil, err
	}
	for name, t := range templates {
		var buf bytes.Buffer
		funcs := template.FuncMap{"trimV": func(s string) string { return strings.TrimPrefix(s, "v") }}
		if err := template.Must(template.New(name).Delims("[[", "]]").Funcs(funcs).Parse(t)).Execute(&buf, map[string]any{
			"AppVersion": appVersion, "Defaults": defaults,
		}); err != nil {
			return nil, err
		}
		files[name] = buf.Bytes()
	}
	return files, nil
}

// defaults are what config/default's Deployment says, and values.yaml repeats.
type defaults struct {
	Repository string
	Replicas   int64
	Resources  string // YAML, indented for values.yaml
	// Args are the manager's arguments other than those values control.
	Args []string
}

func managerDefaults(d *unstructured.Unstructured) (defaults, error) {
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		return defaults{}, fmt.Errorf("the manager Deployment has %d containers, want 1", len(cs))
	}
	c := cs[0].(map[string]any)
	image, _ := c["image"].(string)
	repo, _, _ := strings.Cut(image, ":")
	var replicas int64
	switch v, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); n := v.(type) {
	case int64:
		replicas = n
	case float64: // numbers read from YAML as JSON
		replicas = int64(n)
	default:
		return defaults{}, fmt.Errorf("the manager Deployment's spec.replicas is %v", v)
	}
	res, err := yaml.Marshal(c["resources"])
	if err != nil {
		return defaults{}, err
	}
	var args []string
	for _, a := range c["args"].([]any) {
		s := a.(string)
		if s == "manager" || s == "--leader-elect" || strings.HasPrefix(s, "--agent-image=") {
			continue
		}
		args = append(args, s)
	}
	return defaults{Repository: repo, Replicas: replicas, Resources: indent(strings.TrimSpace(string(res)), 4), Args: args}, nil
}

var (
	fileName = regexp.MustCompile(`[^a-z0-9]+`)
	sentinel = regexp.MustCompile(`__[A-Z_]+__`)
)

// objectTemplate turns one object of config/default into a template file.
func objectTemplate(o *unstructured.Unstructured, d defaults) (string, []byte, error) {
	o = o.DeepCopy()
	if o.GetNamespace() != "" {
		o.SetNamespace(sNamespace)
	}
	labels := o.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[sLabels] = "x"
	o.SetLabels(labels)
	// Bindings name the ServiceAccounts of the release's namespace.
	if subjects, ok, _ := unstructured.NestedSlice(o.Object, "subjects"); ok {
		for _, s := range subjects {
			if m := s.(map[string]any); m["namespace"] != nil {
				m["namespace"] = sNamespace
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
	}
	dir := "templates"
	switch o.GetKind() {
	case "CustomResourceDefinition":
		dir = "templates/crds"
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[sCRDKeep] = "x"
		o.SetAnnotations(ann)
	case "Deployment":
		_ = unstructured.SetNestedField(o.Object, sReplicas, "spec", "replicas")
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		c := cs[0].(map[string]any)
		c["image"], c["args"], c["resources"], c["imagePullPolicy"] = sImage, []any{sArgs}, sResources, sPullPol
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
		_ = unstructured.SetNestedField(o.Object, "x", "spec", "template", "spec", sPodExtras)
	}
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		return "", nil, err
	}
	text := string(b)
	text = replaceLines(text, func(line, ind string) (string, bool) {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, sLabels+":"):
			return fmt.Sprintf(`%s{{- include "regwire.labels" . | nindent %d }}`, ind, len(ind)), true
		case strings.HasPrefix(t, sCRDKeep+":"):
			return fmt.Sprintf("%s{{- if .Values.crds.keep }}\n%shelm.sh/resource-policy: keep\n%s{{- end }}", ind, ind, ind), true
		case t == "- "+sArgs:
			return managerArgs(ind, d), true
		case strings.HasPrefix(t, "resources: "+sResources):
			return fmt.Sprintf("%sresources:\n%s  {{- toYaml .Values.manager.resources | nindent %d }}", ind, ind, len(ind)+2), true
		case strings.HasPrefix(t, sPodExtras+":"):
			return podExtras(ind), true
		case strings.HasPrefix(t, "imagePullPolicy: "+sPullPol):
			return fmt.Sprintf("%s{{- with .Values.image.pullPolicy }}\n%simagePullPolicy: {{ . }}\n%s{{- end }}", ind, ind, ind), true
		}
		return "", false
	})
	text = strings.NewReplacer(
		sNamespace, "{{ .Release.Namespace }}",
		sImage, `{{ include "regwire.image" . }}`,
		"replicas: "+sReplicas, "replicas: {{ .Values.manager.replicas }}",
	).Replace(text)
	if left := sentinel.FindString(text); left != "" {
		return "", nil, fmt.Errorf("a sentinel was left: %s", left)
	}
	name := path.Join(dir, fileName.ReplaceAllString(strings.ToLower(o.GetKind()+"-"+o.GetName()), "-")+".yaml")
	if dir == "templates/crds" {
		text = "{{- if .Values.crds.install }}\n" + text + "{{- end }}\n"
	}
	return name, []byte(header + text), nil
}

const header = "# Generated from config/ by `make chart` (internal/chartgen); do not edit.\n"

func replaceLines(text string, f func(line, indent string) (string, bool)) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		ind := l[:len(l)-len(strings.TrimLeft(l, " "))]
		if r, ok := f(l, ind); ok {
			lines[i] = r
		}
	}
	return strings.Join(lines, "\n")
}

// managerArgs: the arguments of config/default, with those values control in between.
func managerArgs(ind string, d defaults) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s- manager\n", ind)
	fmt.Fprintf(&b, "%s{{- if .Values.manager.leaderElection }}\n%s- --leader-elect\n%s{{- end }}\n", ind, ind, ind)
	for _, a := range d.Args {
		fmt.Fprintf(&b, "%s- %s\n", ind, a)
	}
	fmt.Fprintf(&b, `%s- --agent-image={{ include "regwire.image" . }}`+"\n", ind)
	fmt.Fprintf(&b, `%s{{- include "regwire.agentArgs" . | nindent %d }}`+"\n", ind, len(ind))
	fmt.Fprintf(&b, `%s{{- range .Values.manager.extraArgs }}`+"\n%s- {{ . | quote }}\n%s{{- end }}", ind, ind, ind)
	return b.String()
}

// podExtras: the manager pod's scheduling, none of which config/default sets.
func podExtras(ind string) string {
	var b strings.Builder
	for _, f := range []struct{ key, value string }{
		{"nodeSelector", ".Values.manager.nodeSelector"}, {"tolerations", ".Values.manager.tolerations"},
		{"affinity", ".Values.manager.affinity"}, {"imagePullSecrets", ".Values.imagePullSecrets"},
	} {
		fmt.Fprintf(&b, "%s{{- with %s }}\n%s%s:\n%s  {{- toYaml . | nindent %d }}\n%s{{- end }}\n", ind, f.value, ind, f.key, ind, len(ind)+2, ind)
	}
	fmt.Fprintf(&b, "%s{{- with .Values.manager.priorityClassName }}\n%spriorityClassName: {{ . }}\n%s{{- end }}", ind, ind, ind)
	return b.String()
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// Names lists the chart's files in order, for writing and comparing.
func Names(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MonitoringFiles are the files of config/monitoring the chart carries in files/.
var MonitoringFiles = []string{"dashboard.json", "prometheus_rule.yaml"}

// Monitoring reads MonitoringFiles from the repository at root.
func Monitoring(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, name := range MonitoringFiles {
		b, err := os.ReadFile(filepath.Join(root, "config", "monitoring", name))
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}
