package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/config/samples"
	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/version"
)

// NodeName is the one node of the local stack.
const NodeName = "local-node"

// adapt points the objects at the embedded registries and says what it changed:
// RegistryMirrors get the demo registry as their endpoint (their host, the name images
// carry, stays), its CA, and its REST API for provisioning; ImageSyncs from Docker Hub read
// from the embedded upstream instead.
func adapt(objs []samples.Object, r *registries, say func(string, ...any)) []samples.Object {
	out := make([]samples.Object, 0, len(objs))
	for _, o := range objs {
		u := o.Object.DeepCopy()
		switch u.GetKind() {
		case "RegistryMirror":
			_ = unstructured.SetNestedField(u.Object, "https://"+r.nexusAddr, "spec", "endpoint")
			_ = unstructured.SetNestedField(u.Object, string(r.ca), "spec", "caBundle")
			unstructured.RemoveNestedField(u.Object, "spec", "caFrom")
			if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "provision", "nexus"); ok {
				_ = unstructured.SetNestedField(u.Object, "https://"+r.nexusAddr, "spec", "provision", "nexus", "url")
			}
			say("demo: RegistryMirror %s: endpoint and provisioning URL https://%s (the embedded stand-in for Nexus), caBundle its CA", u.GetName(), r.nexusAddr)
		case "ImageSync":
			img, _, _ := unstructured.NestedString(u.Object, "spec", "source", "image")
			if rest, ok := dockerHubPath(img); ok {
				_ = unstructured.SetNestedField(u.Object, r.upstreamAddr+"/"+rest, "spec", "source", "image")
				say("demo: ImageSync %s: source %s is read from the embedded upstream registry http://%s", displayName(u), img, r.upstreamAddr)
			}
		}
		out = append(out, samples.Object{File: o.File, Object: u})
	}
	return out
}

// dockerHubPath returns the repository path of a Docker Hub image reference.
func dockerHubPath(img string) (string, bool) {
	for _, p := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		if rest, ok := strings.CutPrefix(img, p); ok {
			return rest, true
		}
	}
	return "", false
}

// prepare creates what the adapted objects refer to and the demo provides: the credentials
// Secrets (the demo Nexus's admin), labels on the default namespace that pull-secret
// selectors want, and the node.
func prepare(ctx context.Context, c client.Client, objs []samples.Object, r *registries, say func(string, ...any)) error {
	secrets := map[client.ObjectKey]bool{}
	labels := map[string]string{}
	for _, o := range objs {
		if o.Object.GetKind() != "RegistryMirror" {
			continue
		}
		for _, path := range [][]string{{"spec", "credentialsSecretRef"}, {"spec", "provision", "nexus", "adminCredentialsSecretRef"}} {
			if ref, ok, _ := unstructured.NestedStringMap(o.Object.Object, path...); ok && ref["name"] != "" {
				secrets[client.ObjectKey{Namespace: ref["namespace"], Name: ref["name"]}] = true
			}
		}
		if l, ok, _ := unstructured.NestedStringMap(o.Object.Object, "spec", "pullSecrets", "namespaceSelector", "matchLabels"); ok {
			for k, v := range l {
				labels[k] = v
			}
		}
	}
	for key := range secrets {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Type:       corev1.SecretTypeBasicAuth,
			StringData: map[string]string{corev1.BasicAuthUsernameKey: r.user, corev1.BasicAuthPasswordKey: r.password},
		}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Secret %s: %w", key, err)
		}
		say("demo: Secret %s holds the demo Nexus's credentials", key)
	}
	if len(labels) > 0 {
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: metav1.NamespaceDefault}, ns); err != nil {
			return err
		}
		before := ns.DeepCopy()
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		for k, v := range labels {
			ns.Labels[k] = v
		}
		if err := c.Patch(ctx, ns, client.MergeFrom(before)); err != nil {
			return err
		}
		say("demo: namespace default labelled %v, so it gets the pull secret", labels)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName, Labels: map[string]string{"kubernetes.io/hostname": NodeName}}}
	if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Node %s: %w", NodeName, err)
	}
	return nil
}

// newAgent assembles the node agent for NodeName, writing containerd's registry
// configuration under root and host aliases into hostsFile.
func newAgent(cfg *rest.Config, root, hostsFile string, logTo io.Writer) (runner, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(hostsFile); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Dir(hostsFile), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(hostsFile, []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return nodeagent.New(cfg, nodeagent.Options{
		NodeName: NodeName, Namespace: Namespace, Root: root, HostsFile: hostsFile, Version: version.Get().Version,
		Manager: ctrl.Options{
			Logger:                 logr.FromSlogHandler(newTextHandler(logTo)).WithName("agent"),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		},
	})
}
