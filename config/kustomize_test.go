// Package config_test checks that the kustomize tree under config/ builds into a coherent
// install.
package config_test

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/config"
)

func build(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

func TestDefaultBuildsACoherentInstall(t *testing.T) {
	t.Parallel()
	m := build(t, "default")
	var got []string
	for _, r := range m.Resources() {
		got = append(got, r.GetKind()+"/"+r.GetName())
		if ns := r.GetNamespace(); ns != "" && ns != "regwire-system" {
			t.Errorf("%s/%s is in namespace %q, want regwire-system", r.GetKind(), r.GetName(), ns)
		}
	}
	for _, want := range []string{
		"CustomResourceDefinition/registrymirrors.regwire.dev",
		"CustomResourceDefinition/imagesyncs.regwire.dev",
		"CustomResourceDefinition/registrynodes.regwire.dev",
		"Namespace/regwire-system",
		"ServiceAccount/regwire-manager",
		"ClusterRole/regwire-manager-role",
		"ClusterRoleBinding/regwire-manager-rolebinding",
		"Role/regwire-leader-election-role",
		"RoleBinding/regwire-leader-election-rolebinding",
		"Role/regwire-manager-role",
		"RoleBinding/regwire-manager-rolebinding",
		"ServiceAccount/regwire-agent",
		"Role/regwire-agent-role",
		"ClusterRole/regwire-agent-role",
		"RoleBinding/regwire-agent-rolebinding",
		"ClusterRoleBinding/regwire-agent-rolebinding",
		"Deployment/regwire-manager",
		"Service/regwire-manager-metrics",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("config/default lacks %s; it has %v", want, got)
		}
	}

	// Bindings must point at the prefixed ServiceAccount and roles.
	for _, name := range []string{"regwire-manager-rolebinding", "regwire-leader-election-rolebinding"} {
		for _, r := range m.Resources() {
			if r.GetName() != name {
				continue
			}
			y, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"name: regwire-manager\n", "namespace: regwire-system"} {
				if !strings.Contains(string(y), want) {
					t.Errorf("%s does not bind %q:\n%s", name, want, y)
				}
			}
		}
	}
}

func TestSamplesBuild(t *testing.T) {
	t.Parallel()
	if n := build(t, "samples").Size(); n < 2 {
		t.Errorf("config/samples builds %d objects, want both samples", n)
	}
}

func TestInstallBuildsTheEmbeddedTreeWithTheImage(t *testing.T) {
	t.Parallel()
	objs, err := config.Install("registry.local/regwire:v9@sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	var image string
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			image, _, _ = unstructured.NestedString(cs[0].(map[string]any), "image")
		}
	}
	if image != "registry.local/regwire@sha256:"+strings.Repeat("a", 64) {
		t.Errorf("manager image %q", image)
	}
	for in, want := range map[string]string{"example.com:5000/team/regwire:v1": "example.com:5000/team/regwire:v1", "regwire": "regwire:latest"} {
		objs, err := config.Install(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				if got, _, _ := unstructured.NestedString(cs[0].(map[string]any), "image"); got != want {
					t.Errorf("Install(%q): image %q, want %q", in, got, want)
				}
			}
		}
	}
	if kinds["CustomResourceDefinition"] != 3 || kinds["Deployment"] != 1 || kinds["Namespace"] != 1 {
		t.Errorf("objects by kind: %v", kinds)
	}
	if len(objs) != len(build(t, "default").Resources()) {
		t.Errorf("the embedded tree builds %d objects, config/default on disk %d", len(objs), len(build(t, "default").Resources()))
	}
}

// TestMonitoringBuildsAndScrapesTheManager: config/monitoring builds, its ServiceMonitor
// selects the metrics Service of the default install by its labels and port, and the
// dashboard lands in a ConfigMap Grafana's sidecar picks up.
func TestMonitoringBuildsAndScrapesTheManager(t *testing.T) {
	t.Parallel()
	var svc, sm, dashboard *unstructured.Unstructured
	for _, r := range build(t, "default").Resources() {
		if r.GetKind() == "Service" && strings.HasSuffix(r.GetName(), "metrics") {
			svc = asUnstructured(t, r)
		}
	}
	kinds := map[string]bool{}
	for _, r := range build(t, "monitoring").Resources() {
		u := asUnstructured(t, r)
		kinds[u.GetKind()] = true
		if u.GetNamespace() != "regwire-system" {
			t.Errorf("%s/%s in namespace %q", u.GetKind(), u.GetName(), u.GetNamespace())
		}
		switch u.GetKind() {
		case "ServiceMonitor":
			sm = u
		case "ConfigMap":
			dashboard = u
		}
	}
	if !kinds["PrometheusRule"] || sm == nil || dashboard == nil || svc == nil {
		t.Fatalf("monitoring built %v; metrics Service found: %v", kinds, svc != nil)
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the metrics Service has labels %v", k, v, svc.GetLabels())
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(eps) != 1 || len(ports) != 1 || eps[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] {
		t.Errorf("ServiceMonitor endpoints %v, Service ports %v", eps, ports)
	}
	if dashboard.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v", dashboard.GetLabels())
	}
	if data, _, _ := unstructured.NestedString(dashboard.Object, "data", "dashboard.json"); !strings.Contains(data, `"uid": "regwire"`) {
		t.Error("the dashboard ConfigMap does not hold the dashboard")
	}
}

// asUnstructured reads a built resource as the API server would (numbers as JSON numbers).
func asUnstructured(t *testing.T, r *resource.Resource) *unstructured.Unstructured {
	t.Helper()
	b, err := r.AsYAML()
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}
