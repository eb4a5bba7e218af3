//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/test/testutil"
)

const installNamespace = "regwire-system"

// uninstallDist deletes dist/install.yaml's objects, as `kubectl delete -f
// dist/install.yaml` does (the namespace with them), and waits until nothing of regwire
// is left: not the manager, not the agent DaemonSet it created, not an agent pod.
func uninstallDist(t *testing.T, k8s client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, o := range slices.Backward(objs) {
		if err := k8s.Delete(ctx, o.DeepCopy()); client.IgnoreNotFound(err) != nil {
			t.Fatalf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	testutil.Eventually(t, 3*time.Minute, "nothing of regwire left after deleting dist/install.yaml", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Name: installNamespace}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s: %v", installNamespace, orStill(err))
		}
		return leftovers(ctx, k8s)
	})
}

// helmInstallAndUninstall installs charts/regwire (with the CRDs not kept, so that
// uninstalling may remove everything), with overlay applied to the manager Deployment as
// a post-renderer; a mirror brings the agents up and, deleted, has them clean the node
// (nodeDir goes); then `helm uninstall`, which keeps the namespace, must still take the
// agent DaemonSet and its pods with the manager's Deployment that owns them.
func helmInstallAndUninstall(t *testing.T, k8s client.Client, kubeconfig, repository, tag string,
	overlay func(*unstructured.Unstructured), mirror *v1alpha1.RegistryMirror, nodeDir string) {
	t.Helper()
	ctx := context.Background()
	ch, err := loader.Load(testutil.RepoRoot(t) + "/charts/regwire")
	if err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	ns := installNamespace
	flags.KubeConfig, flags.Namespace = &kubeconfig, &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace, inst.Timeout = "regwire", ns, true, 2*time.Minute
	inst.PostRenderer = postRenderer(func(o *unstructured.Unstructured) {
		if o.GetKind() == "Deployment" {
			overlay(o)
		}
	})
	values := map[string]any{
		"image": map[string]any{"repository": repository, "tag": tag},
		"crds":  map[string]any{"keep": false},
	}
	if _, err := inst.Run(ch, values); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if err := k8s.Create(ctx, mirror); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Minute, "the agent pod of the Helm install wiring the node", func() error {
		if _, err := os.Stat(nodeDir); err != nil {
			return fmt.Errorf("%w; %s", err, podsSummary(ctx, k8s, ns))
		}
		return nil
	})
	ds := &appsv1.DaemonSet{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regwire-agent"}, ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.OwnerReferences) != 1 || ds.OwnerReferences[0].Kind != "Deployment" || ds.OwnerReferences[0].Name != "regwire-manager" {
		t.Fatalf("the agent DaemonSet's owners %+v, want the manager Deployment", ds.OwnerReferences)
	}
	if err := k8s.Delete(ctx, mirror); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, "the agent cleaning the node", func() error {
		if _, err := os.Stat(nodeDir); !os.IsNotExist(err) {
			return fmt.Errorf("%s: %v", nodeDir, orStill(err))
		}
		return nil
	})
	// As the README's uninstall says: the mirror gone, its finalizer let go by the manager
	// (once the agents' reports say the node is clean), before the manager goes.
	testutil.Eventually(t, 2*time.Minute, "the RegistryMirror gone after its cleanup", func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(mirror), &v1alpha1.RegistryMirror{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New(orStill(err))
	})

	un := action.NewUninstall(cfg)
	un.Timeout = 2 * time.Minute
	if _, err := un.Run("regwire"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	testutil.Eventually(t, 3*time.Minute, "nothing of regwire left after helm uninstall", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); err != nil {
			return fmt.Errorf("helm uninstall keeps the namespace it did not create itself, yet: %w", err)
		}
		return leftovers(ctx, k8s)
	})
}

// leftovers names what of regwire is still in the cluster: its workloads and pods
// anywhere, its cluster roles and bindings, its CRDs. The agent DaemonSet is regwire's
// own creation, not an object of the install: it is what this looks for first.
func leftovers(ctx context.Context, k8s client.Client) error {
	var left []string
	collect := func(l client.ObjectList, keep func(client.Object) bool, opts ...client.ListOption) error {
		if err := k8s.List(ctx, l, opts...); err != nil {
			return err
		}
		return apimeta.EachListItem(l, func(o runtime.Object) error {
			if co := o.(client.Object); keep(co) {
				left = append(left, fmt.Sprintf("%T %s", co, client.ObjectKeyFromObject(co)))
			}
			return nil
		})
	}
	all := func(client.Object) bool { return true }
	named := func(o client.Object) bool { return strings.Contains(o.GetName(), "regwire") }
	for _, l := range []client.ObjectList{&appsv1.DaemonSetList{}, &appsv1.DeploymentList{}, &corev1.PodList{}} {
		if err := collect(l, all, client.MatchingLabels{"app.kubernetes.io/name": "regwire"}); err != nil {
			return err
		}
	}
	for _, l := range []client.ObjectList{&rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}, &apiextensionsv1.CustomResourceDefinitionList{}} {
		if err := collect(l, named); err != nil {
			return err
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("still there: %s", strings.Join(left, ", "))
	}
	return nil
}

func orStill(err error) string {
	if err == nil {
		return "still there"
	}
	return err.Error()
}

// postRenderer changes each object Helm renders, as `helm install --post-renderer` does.
type postRenderer func(*unstructured.Unstructured)

func (f postRenderer) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	objs, err := config.Decode(rendered.Bytes())
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, o := range objs {
		f(o)
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return &out, nil
}
