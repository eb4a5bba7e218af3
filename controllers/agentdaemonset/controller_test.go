package agentdaemonset_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/internal/test/envtest"
)

// TestTheFirstMirrorBringsTheAgentsWhichComeBackWhenDeleted: no agent runs before there is
// a RegistryMirror; the first one brings the DaemonSet (mounting nothing but the host
// paths the agent writes); deleted by hand, it is put back.
func TestTheFirstMirrorBringsTheAgentsWhichComeBackWhenDeleted(t *testing.T) {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: envtest.Namespace, Name: agentdaemonset.Name}
	// Before any RegistryMirror (this test runs first in its suite), a reconcile creates
	// nothing.
	idle := &agentdaemonset.Reconciler{Client: env.Client, APIReader: env.Client, Namespace: envtest.Namespace,
		Options: agentdaemonset.DefaultOptions("regwire:test")}
	if _, err := idle.Reconcile(ctx, ctrl.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Get(ctx, key, &appsv1.DaemonSet{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the agent DaemonSet before any RegistryMirror: %v, want not found", err)
	}

	env.NewMirror(t, "first", nil)
	ds := &appsv1.DaemonSet{}
	envtest.Eventually(t, func() error { return env.Get(ctx, key, ds) })
	var paths []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("agent volume %s is not a hostPath: the agent needs nothing writable of its own", v.Name)
			continue
		}
		paths = append(paths, v.HostPath.Path)
	}
	if want := []string{"/etc/hosts", "/etc/containerd/certs.d", "/etc/containerd"}; !slices.Equal(paths, want) {
		t.Errorf("agent DaemonSet mounts %v, want exactly %v (the hosts file, certs.d, and containerd's configuration read-only)", paths, want)
	}
	if len(ds.OwnerReferences) != 0 {
		t.Errorf("owner references %v: a manager outside a Pod gives the DaemonSet no owner", ds.OwnerReferences)
	}

	if err := env.Delete(ctx, ds); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, func() error {
		again := &appsv1.DaemonSet{}
		if err := env.Get(ctx, key, again); err != nil {
			return err
		}
		if again.UID == ds.UID {
			return fmt.Errorf("the deleted DaemonSet is still there")
		}
		return nil
	})
}

// TestTheManagersDeploymentOwnsTheAgentDaemonSet runs a reconciler as a manager Pod would:
// the Deployment that runs the Pod (through its ReplicaSet) owns the DaemonSet, so that
// deleting the Deployment — helm uninstall — lets the garbage collector remove the agents.
// A Pod that no Deployment runs gives the DaemonSet no owner rather than its own name: the
// agents would go with every restart of the Pod.
func TestTheManagersDeploymentOwnsTheAgentDaemonSet(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		deployment bool
	}{
		{name: "a Pod of a Deployment makes the Deployment the owner", deployment: true},
		{name: "a bare Pod leaves the DaemonSet without an owner", deployment: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("owner-%t", tc.deployment)
			env.CreateNamespace(t, ns, nil)
			env.NewMirror(t, ns, nil) // a mirror exists: the DaemonSet is wanted
			labels := map[string]string{"app": "regwire-manager"}
			template := corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "regwire:test"}}},
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager-abc12", Labels: labels}, Spec: template.Spec}
			var dep *appsv1.Deployment
			if tc.deployment {
				dep = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "regwire-manager"},
					Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}
				create(t, dep)
				rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "regwire-manager-abc",
					OwnerReferences: []metav1.OwnerReference{controllerRef(dep, "Deployment")}},
					Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}
				create(t, rs)
				pod.OwnerReferences = []metav1.OwnerReference{controllerRef(rs, "ReplicaSet")}
			}
			create(t, pod)

			r := &agentdaemonset.Reconciler{Client: env.Client, APIReader: env.Client, Namespace: ns,
				Options: agentdaemonset.DefaultOptions("regwire:test"), ManagerPod: pod.Name}
			if _, err := r.Reconcile(ctx, ctrl.Request{}); err != nil {
				t.Fatal(err)
			}
			ds := &appsv1.DaemonSet{}
			if err := env.Get(ctx, client.ObjectKey{Namespace: ns, Name: agentdaemonset.Name}, ds); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.deployment && (len(ds.OwnerReferences) != 1 || ds.OwnerReferences[0].UID != dep.UID || ds.OwnerReferences[0].Kind != "Deployment"):
				t.Errorf("owner references %+v, want the Deployment %s (%s)", ds.OwnerReferences, dep.Name, dep.UID)
			case !tc.deployment && len(ds.OwnerReferences) != 0:
				t.Errorf("owner references %+v, want none", ds.OwnerReferences)
			}
			// Reconciling again finds it as wanted and writes nothing.
			rv := ds.ResourceVersion
			if _, err := r.Reconcile(ctx, ctrl.Request{}); err != nil {
				t.Fatal(err)
			}
			if err := env.Get(ctx, client.ObjectKeyFromObject(ds), ds); err != nil || ds.ResourceVersion != rv {
				t.Errorf("a second reconcile wrote the DaemonSet (resource version %s, was %s): %v", ds.ResourceVersion, rv, err)
			}
		})
	}
}

func create(t *testing.T, o client.Object) {
	t.Helper()
	if err := env.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

func controllerRef(owner client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true)}
}

// staleCache answers as a cache that has not seen the DaemonSet yet.
type staleCache struct{ client.Client }

func (c staleCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*appsv1.DaemonSet); ok {
		return apierrors.NewNotFound(appsv1.Resource("daemonsets"), key.Name)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestACacheBehindItsOwnWriteIsNoError: when the first mirrors and the DaemonSet's own
// events come together, a reconcile may not see the DaemonSet it has just created; it
// looks again shortly instead of reporting an error (the churn test found this).
func TestACacheBehindItsOwnWriteIsNoError(t *testing.T) {
	ctx := context.Background()
	const ns = "stale-cache"
	env.CreateNamespace(t, ns, nil)
	env.NewMirror(t, ns, nil)
	fresh := &agentdaemonset.Reconciler{Client: env.Client, APIReader: env.Client, Namespace: ns, Options: agentdaemonset.DefaultOptions("regwire:test")}
	if _, err := fresh.Reconcile(ctx, ctrl.Request{}); err != nil {
		t.Fatal(err)
	}
	stale := &agentdaemonset.Reconciler{Client: staleCache{env.Client}, APIReader: env.Client, Namespace: ns, Options: agentdaemonset.DefaultOptions("regwire:test")}
	res, err := stale.Reconcile(ctx, ctrl.Request{})
	if err != nil || res.RequeueAfter == 0 {
		t.Fatalf("a reconcile whose cache is behind: %+v, %v; want a requeue and no error", res, err)
	}
}
