package bootstrap

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kube applies objects to the cluster and says whether one is ready.
type Kube interface {
	Apply(ctx context.Context, objs []*unstructured.Unstructured) error
	// Ready reports whether obj is ready: a CRD Established, a Deployment Available, a Pod
	// Succeeded or Running, anything else with a Ready condition True; and a word on why
	// not.
	Ready(ctx context.Context, obj *unstructured.Unstructured) (bool, string, error)
}

// FieldManager is the server-side apply field manager of what bootstrap applies.
const FieldManager = "regwire-bootstrap"

// KubeClient is Kube on controller-runtime's client.
type KubeClient struct{ c client.Client }

// NewKubeClient connects with a kubeconfig file.
func NewKubeClient(kubeconfig string) (*KubeClient, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	return &KubeClient{c: c}, nil
}

// Apply server-side applies objs in order.
func (k *KubeClient) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := k.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// Ready reads obj and judges it.
func (k *KubeClient) Ready(ctx context.Context, obj *unstructured.Unstructured) (bool, string, error) {
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(obj.GroupVersionKind())
	if err := k.c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		return false, "", client.IgnoreNotFound(err)
	}
	ok, why := judge(got)
	return ok, why, nil
}

// judge says whether an object is ready, by its kind.
func judge(u *unstructured.Unstructured) (bool, string) {
	if u.GetKind() == "Pod" {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == "Succeeded" || phase == "Running", "phase " + phase
	}
	want := "Ready"
	switch u.GetKind() {
	case "CustomResourceDefinition":
		want = "Established"
	case "Deployment":
		want = "Available"
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == want {
			return m["status"] == "True", fmt.Sprintf("%s=%v %v: %v", want, m["status"], m["reason"], m["message"])
		}
	}
	return false, "no " + want + " condition yet"
}
