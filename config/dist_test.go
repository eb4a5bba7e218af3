package config_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/test/controlplane"
)

// distObjects reads dist/install.yaml.
func distObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile("../dist/install.yaml")
	if err != nil {
		t.Fatalf("dist/install.yaml: %v (make dist writes it)", err)
	}
	objs, err := config.Decode(b)
	if err != nil {
		t.Fatalf("dist/install.yaml: %v", err)
	}
	return objs
}

// TestTheManagerMeetsTheRestrictedPodSecurityStandard evaluates the manager Deployment's
// pod template of dist/install.yaml with pod-security-admission's own policy checks.
func TestTheManagerMeetsTheRestrictedPodSecurityStandard(t *testing.T) {
	t.Parallel()
	var dep *appsv1.Deployment
	for _, u := range distObjects(t) {
		if u.GetKind() == "Deployment" {
			dep = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dep == nil {
		t.Fatal("no Deployment in dist/install.yaml")
	}
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &dep.Spec.Template.ObjectMeta, &dep.Spec.Template.Spec))
	if !res.Allowed {
		t.Errorf("the manager's pod template fails the restricted standard: %s: %s", res.ForbiddenReason(), res.ForbiddenDetail())
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.Resources.Requests.Memory().IsZero() || c.LivenessProbe == nil || c.ReadinessProbe == nil || !strings.Contains(strings.Join(c.Args, " "), "--leader-elect") {
		t.Errorf("manager container: %+v", c)
	}
	// The check can fail: a privileged container does.
	bad := dep.Spec.Template.Spec.DeepCopy()
	bad.Containers[0].SecurityContext.Capabilities.Add = append(bad.Containers[0].SecurityContext.Capabilities.Add, "NET_ADMIN")
	if policy.AggregateCheckResults(eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &dep.Spec.Template.ObjectMeta, bad)).Allowed {
		t.Error("the restricted check accepted an added capability")
	}
}

// TestDistInstallAppliesToARealAPIServer server-side applies dist/install.yaml to a real
// kube-apiserver, twice.
func TestDistInstallAppliesToARealAPIServer(t *testing.T) {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	c, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs := distObjects(t)
	ctx := context.Background()
	apply := func(kinds func(string) bool) {
		for _, o := range objs {
			if !kinds(o.GetKind()) {
				continue
			}
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
				t.Errorf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	first := func(k string) bool { return k == "Namespace" || k == "CustomResourceDefinition" }
	for range 2 { // an upgrade is the same apply again
		apply(first)
		apply(func(k string) bool { return !first(k) })
	}
	if t.Failed() {
		return
	}
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "regwire-system", Name: "regwire-manager"}, dep); err != nil {
		t.Fatal(err)
	}
}

// TestEveryInstallNamesTheSameRelease: dist/install.yaml, `kubectl apply -k config/default`
// and the chart install the image of the release the Makefile names (RELEASE), so that the
// two ways of the README install the same thing.
func TestEveryInstallNamesTheSameRelease(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RELEASE\s*\?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile names no RELEASE")
	}
	release := string(m[1])
	chart, err := os.ReadFile("../charts/regwire/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kustomization, err := os.ReadFile("manager/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for what, ok := range map[string]bool{
		"config.DefaultImage":                      config.DefaultImage[strings.LastIndex(config.DefaultImage, ":")+1:] == release,
		"config/manager/kustomization.yaml newTag": strings.Contains(string(kustomization), "newTag: "+release+"\n"),
		"charts/regwire/Chart.yaml appVersion":     strings.Contains(string(chart), `appVersion: "`+release+`"`),
		"dist/install.yaml": slices.ContainsFunc(distObjects(t), func(u *unstructured.Unstructured) bool {
			return strings.Contains(fmt.Sprint(u.Object), "regwire:"+release)
		}),
	} {
		if !ok {
			t.Errorf("%s does not name release %s (make dist chart, and config/manager's newTag, follow RELEASE)", what, release)
		}
	}
}
