package bootstrap_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/test/controlplane"
)

// TestKubeClientAppliesTheInstallToARealAPIServer applies what up installs to a real
// kube-apiserver with server-side apply and judges readiness: CRDs become Established; the
// Deployment is not Available (no controllers run here) and says why.
func TestKubeClientAppliesTheInstallToARealAPIServer(t *testing.T) {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := bootstrap.NewKubeClient(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := config.Install("regwire:dev")
	if err != nil {
		t.Fatal(err)
	}
	var first, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			first = append(first, o)
		} else {
			rest = append(rest, o)
		}
	}
	ctx := context.Background()
	if err := k.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(ctx, rest); err != nil {
		t.Fatal(err)
	}
	for _, o := range first {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, why, err := k.Ready(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not established: %s", o.GetName(), why)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, o := range rest {
		if o.GetKind() == "Deployment" {
			if ok, why, err := k.Ready(ctx, o); err != nil || ok || why == "" {
				t.Errorf("Deployment without controllers: ready=%v why=%q err=%v", ok, why, err)
			}
		}
	}
	// Applying again is a no-op, not a conflict.
	if err := k.Apply(ctx, rest); err != nil {
		t.Errorf("second apply: %v", err)
	}
}
