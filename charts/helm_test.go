// Package charts_test checks the Helm chart charts/regwire with Helm's own Go SDK: lint,
// what it renders against dist/install.yaml, and install, upgrade and uninstall on a real
// API server.
package charts_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

const chartDir = "regwire"

// helmLabels and helmAnnotations are what the chart adds to what dist/install.yaml has
// (README, "Helm").
var (
	helmLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmAnnotations = []string{"helm.sh/resource-policy"}
)

func load(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// TestHelmLintFindsNothing: helm lint, with the default values and with every optional
// part on.
func TestHelmLintFindsNothing(t *testing.T) {
	t.Parallel()
	for name, vals := range map[string]map[string]any{
		"default values": nil,
		"every option on": {
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}, "dashboard": map[string]any{"enabled": true}},
			"agent":   map[string]any{"runtimes": []any{"containerd", "crio"}, "nodeSelector": map[string]any{"kubernetes.io/os": "linux"}, "tolerations": []any{map[string]any{"operator": "Exists"}}},
			"manager": map[string]any{"replicas": 2, "nodeSelector": map[string]any{"kubernetes.io/os": "linux"}, "priorityClassName": "system-cluster-critical"},
			"crds":    map[string]any{"keep": false},
			"image":   map[string]any{"digest": "sha256:" + strings.Repeat("a", 64)},
		},
	} {
		lint := action.NewLint()
		lint.Strict = true
		res := lint.Run([]string{chartDir}, vals)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
		for _, err := range res.Errors {
			t.Errorf("%s: helm lint: %v", name, err)
		}
	}
}

// templating is `helm template regwire charts/regwire -n regwire-system`: an install that
// only renders.
func templating() *action.Install {
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "regwire", "regwire-system"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
	return inst
}

// render is what `helm template regwire charts/regwire -n regwire-system` prints.
func render(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	rel, err := templating().Run(load(t), vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return decode(t, []byte(rel.Manifest))
}

func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := config.Decode(b)
	if err != nil {
		t.Fatalf("%v in\n%s", err, b)
	}
	return objs
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// TestTheDefaultValuesRenderDistInstall: with the default values the chart renders
// dist/install.yaml object for object, apart from Helm's labels, the CRDs' keep
// annotation and the Namespace (Helm installs into the release's namespace).
func TestTheDefaultValuesRenderDistInstall(t *testing.T) {
	t.Parallel()
	distYAML, err := os.ReadFile(filepath.Join("..", "dist", "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*unstructured.Unstructured{}
	for _, u := range decode(t, distYAML) {
		if u.GetKind() != "Namespace" {
			want[key(u)] = u
		}
	}
	got := map[string]*unstructured.Unstructured{}
	for _, u := range render(t, nil) {
		labels := u.GetLabels()
		for _, l := range helmLabels {
			if _, ok := labels[l]; !ok {
				t.Errorf("%s lacks Helm's label %s", key(u), l)
			}
			delete(labels, l)
		}
		u.SetLabels(labels)
		if ann := u.GetAnnotations(); ann != nil {
			for _, a := range helmAnnotations {
				delete(ann, a)
			}
			u.SetAnnotations(ann)
			if len(ann) == 0 {
				u.SetAnnotations(nil)
			}
		}
		got[key(u)] = u
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		if !equalObjects(w, g) {
			wb, _ := yaml.Marshal(w.Object)
			gb, _ := yaml.Marshal(g.Object)
			t.Errorf("%s differs:\ndist/install.yaml:\n%s\nchart:\n%s", k, wb, gb)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which dist/install.yaml lacks", k)
		}
	}
}

func equalObjects(a, b *unstructured.Unstructured) bool {
	ab, _ := yaml.Marshal(a.Object)
	bb, _ := yaml.Marshal(b.Object)
	return bytes.Equal(ab, bb)
}

// TestValuesReachTheManager: values end up where they act.
func TestValuesReachTheManager(t *testing.T) {
	t.Parallel()
	objs := render(t, map[string]any{
		"image":   map[string]any{"repository": "registry.example/regwire", "tag": "v9.9.9"},
		"manager": map[string]any{"replicas": 2, "leaderElection": false, "priorityClassName": "system-cluster-critical", "extraArgs": []any{"--stall-timeout=5m"}},
		"agent": map[string]any{
			"containerd":  map[string]any{"certsDir": "/var/lib/rancher/k3s/agent/etc/containerd/certs.d", "config": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"},
			"tolerations": []any{map[string]any{"key": "gpu", "operator": "Exists"}}, "nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
			"priorityClassName": "high", "runtimes": []any{"containerd", "crio"},
		},
		"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}, "dashboard": map[string]any{"enabled": true}},
	})
	var dep appsv1.Deployment
	kinds := map[string]bool{}
	for _, u := range objs {
		kinds[u.GetKind()] = true
		if u.GetKind() == "Deployment" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"} {
		if !kinds[k] {
			t.Errorf("no %s rendered", k)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if *dep.Spec.Replicas != 2 || c.Image != "registry.example/regwire:v9.9.9" || dep.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" {
		t.Errorf("replicas %d, image %s, priorityClassName %q", *dep.Spec.Replicas, c.Image, dep.Spec.Template.Spec.PriorityClassName)
	}
	for _, want := range []string{
		"--agent-image=registry.example/regwire:v9.9.9",
		"--agent-containerd-certs-dir=/var/lib/rancher/k3s/agent/etc/containerd/certs.d",
		"--agent-containerd-config=/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
		`--agent-tolerations=[{"key":"gpu","operator":"Exists"}]`,
		"--agent-node-selector=kubernetes.io/os=linux", "--agent-priority-class=high", "--agent-runtimes=containerd,crio",
		"--stall-timeout=5m",
	} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("manager args %q lack %s", c.Args, want)
		}
	}
	if slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("leaderElection false, args %q", c.Args)
	}
}

// TestInstallUpgradeUninstallOnARealAPIServer drives Helm's SDK against kube-apiserver and
// etcd: install creates everything, an upgrade changes the manager and adds the
// dashboard, uninstall removes the release and keeps the CRDs (crds.keep).
func TestInstallUpgradeUninstallOnARealAPIServer(t *testing.T) {
	t.Parallel()
	cp, err := controlplane.Start(controlplane.Options{NoCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	const ns = "regwire-system"
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, ptr(ns)
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, ns, "secret", func(format string, v ...any) { t.Logf(format, v...) }); err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	k8s, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch := load(t)

	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace, inst.Timeout = "regwire", ns, true, time.Minute
	rel, err := inst.Run(ch, nil)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("installed %s revision %d", rel.Name, rel.Version)
	dep := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regwire-manager"}, dep); err != nil {
		t.Fatalf("the manager Deployment after install: %v", err)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--leader-elect") || *dep.Spec.Replicas != 1 {
		t.Errorf("installed manager: replicas %d, args %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}
	for _, crd := range []string{"registrymirrors.regwire.dev", "imagesyncs.regwire.dev", "registrynodes.regwire.dev"} {
		if err := k8s.Get(ctx, client.ObjectKey{Name: crd}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s after install: %v", crd, err)
		}
	}

	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout = ns, time.Minute
	if rel, err = up.Run("regwire", ch, map[string]any{
		"manager": map[string]any{"replicas": 2},
		"agent":   map[string]any{"containerd": map[string]any{"certsDir": "/var/lib/rancher/rke2/agent/etc/containerd/certs.d"}},
		"metrics": map[string]any{"dashboard": map[string]any{"enabled": true}},
	}); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if rel.Version != 2 {
		t.Errorf("upgraded to revision %d", rel.Version)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 || !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--agent-containerd-certs-dir=/var/lib/rancher/rke2/agent/etc/containerd/certs.d") {
		t.Errorf("upgraded manager: replicas %d, args %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regwire-grafana-dashboard"}, &corev1.ConfigMap{}); err != nil {
		t.Errorf("the dashboard after the upgrade: %v", err)
	}

	un := action.NewUninstall(cfg)
	un.Timeout = time.Minute
	if _, err := un.Run("regwire"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	err = testutil.Poll(30*time.Second, 100*time.Millisecond, func() error {
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: dep.ObjectMeta},
			&rbacv1.ClusterRole{ObjectMeta: metaName("regwire-manager-role")},
		} {
			switch err := k8s.Get(ctx, client.ObjectKeyFromObject(o), o); {
			case err == nil:
				return fmt.Errorf("%T %s still there after uninstall", o, o.GetName())
			case !apierrors.IsNotFound(err):
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, crd := range []string{"registrymirrors.regwire.dev", "imagesyncs.regwire.dev"} {
		if err := k8s.Get(ctx, client.ObjectKey{Name: crd}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s after uninstall (crds.keep): %v", crd, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// TestValuesTheChartDoesNotKnowAreRefused: values.schema.json turns a misspelt key or a
// wrong type into an error naming it, instead of a value silently ignored.
func TestValuesTheChartDoesNotKnowAreRefused(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		vals map[string]any
		want string
	}{
		"a misspelt key":          {map[string]any{"manager": map[string]any{"replica": 2}}, "replica"},
		"a runtime regwire lacks": {map[string]any{"agent": map[string]any{"runtimes": []any{"rkt"}}}, "runtimes"},
		"a number as a string":    {map[string]any{"manager": map[string]any{"replicas": "two"}}, "replicas"},
	} {
		_, err := templating().Run(load(t), tc.vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
