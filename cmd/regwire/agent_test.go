package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/scheme"
)

// TestAgentProcessAppliesAPublishedMirror runs the real `regwire agent` binary against a
// real API server: a mirror published for its node ends up as a file in its root and a
// RegistryNode report.
func TestAgentProcessAppliesAPublishedMirror(t *testing.T) {
	t.Parallel()
	cp, kubeconfig := startControlPlane(t)
	c, err := client.New(cp.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "regwire-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus", Generation: 1}, Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local"}}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "regwire-system", Name: nodeconfig.PublishedName("nexus"), Labels: map[string]string{nodeconfig.PublishedLabel: "true"}},
		Data:       map[string]string{nodeconfig.PublishedKey: nodeconfig.Publish(rm, nil, "").Encode()},
	}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}

	root := filepath.Join(t.TempDir(), "certs.d")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(buildBinary(t), "agent", "--root", root, "--hosts-file", "", "--namespace", "regwire-system")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "NODE_NAME=worker-1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(root, "nexus.local", "hosts.toml"))
		rn := &v1alpha1.RegistryNode{}
		err := c.Get(ctx, client.ObjectKey{Name: "worker-1"}, rn)
		if strings.Contains(string(b), "server = 'https://nexus.local'") && err == nil && len(rn.Status.Mirrors) == 1 && rn.Status.Mirrors[0].ObservedGeneration == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not apply and report within 30s (hosts.toml %q, RegistryNode %+v, %v)\n%s", b, rn.Status, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
