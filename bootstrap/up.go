package bootstrap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/nexus"
)

// Stack stands up and tears down the Docker path: Nexus + nginx with Docker Compose, a
// kind cluster wired to them by regwire. Every outside effect goes through Docker, Kind,
// Kube and the Nexus HTTP client, so a dry run (DryRun) prints them instead.
type Stack struct {
	// StateDir holds the rendered files, the kubeconfig and the Nexus admin password.
	StateDir string
	// Render configures the generated files; up adds 127.0.0.1 to the certificate so that
	// Nexus's REST API is reachable through the proxy's published port.
	Render RenderOptions
	// Image is the regwire image loaded into the cluster (it must exist in the Docker
	// engine: docker pull, or `make docker-image`).
	Image string
	// SyncImage and SyncTags are copied into the Nexus repository by the ImageSync the stack
	// applies (default docker.io/library/busybox, 1.36).
	SyncImage string
	SyncTags  []string
	// SyncInsecure reads SyncImage over plain HTTP (a local registry without TLS).
	SyncInsecure bool
	// Repository is the Nexus docker (hosted) repository (default my-docker).
	Repository string
	// Out receives one line per step.
	Out io.Writer
	// Docker, Kind and Kube do the work; NewKube connects to the cluster once it exists.
	Docker  Docker
	Kind    Kind
	NewKube func(kubeconfig string) (Kube, error)
	// NexusURL and NexusHTTP reach Nexus's REST API; by default https://127.0.0.1:<https
	// port> through the proxy, trusting the rendered CA.
	NexusURL  string
	NexusHTTP *http.Client
	// Timeout bounds each wait (Nexus healthy, CRDs, Ready objects, the test pod).
	Timeout time.Duration
	// Poll is the interval of those waits.
	Poll time.Duration
	// RegistryOnly stops once Nexus and nginx are up and the repository is provisioned: no
	// kind cluster (for a cluster of one's own, or pushing from a laptop).
	RegistryOnly bool
	// DryRun writes nothing into StateDir (files are rendered into a temporary directory);
	// combine it with the dry-run Docker, Kind, Kube and HTTP client of NewDryRun.
	DryRun bool
}

// Files in the state directory that up writes besides the rendered ones.
const (
	KubeconfigFile    = "kubeconfig"
	NexusPasswordFile = "nexus-admin-password"
)

func (s *Stack) defaults() {
	if s.SyncImage == "" {
		s.SyncImage = "docker.io/library/busybox"
	}
	if len(s.SyncTags) == 0 {
		s.SyncTags = []string{"1.36"}
	}
	if s.Repository == "" {
		s.Repository = "my-docker"
	}
	if s.Image == "" {
		s.Image = config.DefaultImage
	}
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Minute
	}
	if s.Poll == 0 {
		s.Poll = 2 * time.Second
	}
	if s.Out == nil {
		s.Out = io.Discard
	}
	if len(s.Render.PKI.DNSNames) == 0 {
		s.Render.PKI.DNSNames = []string{"nexus.local"}
	}
	if !slices.ContainsFunc(s.Render.PKI.IPs, func(ip net.IP) bool { return ip.IsLoopback() }) {
		s.Render.PKI.IPs = append(s.Render.PKI.IPs, net.IPv4(127, 0, 0, 1))
	}
	if s.Render.Compose.Project == "" {
		s.Render.Compose.Project = "regwire"
	}
	if s.Render.Compose.HTTPSPort == 0 {
		s.Render.Compose.HTTPSPort = 443
	}
	if s.Render.Kind.Name == "" {
		s.Render.Kind.Name = "regwire"
	}
}

func (s *Stack) step(format string, args ...any) {
	_, _ = fmt.Fprintf(s.Out, "==> "+format+"\n", args...)
}

func (s *Stack) compose(args ...string) []string {
	return append([]string{"compose", "--project-name", s.Render.Compose.Project, "--file", filepath.Join(s.StateDir, ComposeFile)}, args...)
}

// host is the registry's host name, as image references carry it.
func (s *Stack) host() string {
	h := s.Render.PKI.DNSNames[0]
	if p := s.Render.Compose.HTTPSPort; p != 443 {
		h = fmt.Sprintf("%s:%d", h, p)
	}
	return h
}

// Up brings everything up; it is safe to run again (what exists is kept).
func (s *Stack) Up(ctx context.Context) error {
	s.defaults()
	s.step("render certificates, nginx.conf, docker-compose.yaml and kind.yaml into %s", s.StateDir)
	renderDir := s.StateDir
	if s.DryRun {
		tmp, err := os.MkdirTemp("", "regwire-dry-run-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		renderDir = tmp
	}
	r, err := Render(renderDir, s.Render)
	if err != nil {
		return err
	}
	s.step("start Nexus and nginx (docker compose up), wait until Nexus is healthy")
	if _, err := s.Docker.Run(ctx, nil, s.compose("up", "--detach", "--wait", "--wait-timeout", fmt.Sprint(int(s.Timeout.Seconds())))...); err != nil {
		return err
	}
	password, err := s.nexusAdmin(ctx, r.PKI.CA)
	if err != nil {
		return err
	}
	if s.RegistryOnly {
		s.step("done: push to %s/%s/<image> as admin (password in %s), trusting %s",
			s.host(), s.Repository, filepath.Join(s.StateDir, NexusPasswordFile), filepath.Join(s.StateDir, TLSDir, CACertFile))
		return nil
	}
	kubeconfig := filepath.Join(s.StateDir, KubeconfigFile)
	proxyIP, err := s.cluster(ctx, kubeconfig)
	if err != nil {
		return err
	}
	if err := s.loadImage(ctx); err != nil {
		return err
	}
	kube, err := s.NewKube(kubeconfig)
	if err != nil {
		return err
	}
	if err := s.install(ctx, kube); err != nil {
		return err
	}
	objs := s.wiring(r.PKI.CA, password, proxyIP)
	hosting, err := s.localRegistryHosting()
	if err != nil {
		return err
	}
	s.step("apply the RegistryMirror for %s (hostAlias %s), the ImageSync of %s and kube-public/%s", s.host(), proxyIP, s.SyncImage, LocalRegistryHostingName)
	if err := s.applyAndWait(ctx, kube, append(objs, hosting), "RegistryMirror", "ImageSync"); err != nil {
		return err
	}
	pod := s.testPod()
	s.step("run a pod from %s", podImage(pod))
	if err := s.applyAndWait(ctx, kube, []*unstructured.Unstructured{pod}, "Pod"); err != nil {
		return err
	}
	s.step("done: the cluster pulls from %s; KUBECONFIG=%s", s.host(), kubeconfig)
	return nil
}

// cluster creates the kind cluster unless it exists, and connects the proxy to the kind
// network. It returns the proxy's address there: what the nodes' host alias points at.
func (s *Stack) cluster(ctx context.Context, kubeconfig string) (string, error) {
	clusters, err := s.Kind.Clusters()
	if err != nil {
		return "", err
	}
	if slices.Contains(clusters, s.Render.Kind.Name) {
		s.step("kind cluster %s exists", s.Render.Kind.Name)
	} else {
		s.step("create kind cluster %s (containerd config_path %s)", s.Render.Kind.Name, NodeCertsDir)
		if err := s.Kind.Create(s.Render.Kind.Name, filepath.Join(s.StateDir, KindConfigFile), kubeconfig); err != nil {
			return "", fmt.Errorf("creating the kind cluster: %w", err)
		}
	}
	proxy := s.Render.Compose.Project + "-" + ProxyService + "-1"
	s.step("connect %s to the kind network, so nodes reach the registry", proxy)
	if _, err := s.Docker.Run(ctx, nil, "network", "connect", "kind", proxy); err != nil && !strings.Contains(err.Error(), "already exists") {
		return "", err
	}
	proxyIP, err := s.Docker.Run(ctx, nil, "inspect", "--format", `{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}`, proxy)
	if err != nil {
		return "", err
	}
	if net.ParseIP(proxyIP) == nil {
		return "", fmt.Errorf("the proxy has no address on the kind network (docker inspect said %q)", proxyIP)
	}
	return proxyIP, nil
}

// install applies regwire's install manifests with the image loaded into the nodes, and
// waits for the CRDs and the manager.
func (s *Stack) install(ctx context.Context, kube Kube) error {
	install, err := config.Install(s.Image)
	if err != nil {
		return err
	}
	for _, o := range install {
		if o.GetKind() == "Deployment" {
			ifNotPresent(o) // the image was loaded into the nodes, not pushed anywhere
		}
	}
	s.step("install regwire (%d objects, image %s)", len(install), s.Image)
	return s.applyAndWait(ctx, kube, install, "CustomResourceDefinition", "Deployment")
}

// nexusAdmin makes sure Nexus's admin password is the one kept in the state directory
// (changing the initial one, read with docker compose exec, on the first run), activates
// the Docker Bearer Token realm and creates the repository. It returns the password.
func (s *Stack) nexusAdmin(ctx context.Context, ca []byte) (string, error) {
	url := s.NexusURL
	if url == "" {
		url = fmt.Sprintf("https://127.0.0.1:%d", s.Render.Compose.HTTPSPort)
	}
	hc := s.NexusHTTP
	if hc == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	password, err := s.adminPassword(ctx, url, hc)
	if err != nil {
		return "", err
	}
	c, err := nexus.New(url, "admin", password, hc)
	if err != nil {
		return "", err
	}
	// Basic authentication (forceBasicAuth): containerd and docker send the credentials
	// they are given with each request, and no security realm has to be activated.
	s.step("create the docker (hosted) repository %s (path-based routing, Basic authentication)", s.Repository)
	action, err := c.EnsureDockerHosted(ctx, &nexus.DockerHostedRepository{
		Name: s.Repository, Online: true,
		Storage: nexus.HostedStorage{BlobStoreName: "default", StrictContentTypeValidation: true, WritePolicy: nexus.WritePolicyAllow},
		Docker:  nexus.Docker{ForceBasicAuth: true, PathEnabled: new(true)},
	})
	if err != nil {
		return "", err
	}
	if !s.DryRun {
		_, _ = fmt.Fprintf(s.Out, "    repository %s %s\n", s.Repository, action)
	}
	return password, nil
}

// adminPassword returns admin's password as kept in the state directory, setting a
// generated one on the first run. Nexus deletes /nexus-data/admin.password once admin's
// password changes, so the new password is written down (0600, synced) BEFORE it is set,
// as pending, and made the kept one after: a run that stops anywhere in between is
// finished by the next, whichever password Nexus has by then.
func (s *Stack) adminPassword(ctx context.Context, url string, hc *http.Client) (string, error) {
	pwFile := filepath.Join(s.StateDir, NexusPasswordFile)
	pending := pwFile + ".pending"
	if b, err := os.ReadFile(pwFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	password := ""
	if b, err := os.ReadFile(pending); err == nil {
		password = strings.TrimSpace(string(b))
		c, err := nexus.New(url, "admin", password, hc)
		if err != nil {
			return "", err
		}
		switch _, err := c.ActiveRealms(ctx); {
		case err == nil: // the change went through last time; only the rename is left
			s.step("Nexus already has the pending admin password of %s", pending)
			return password, os.Rename(pending, pwFile)
		case !nexus.IsUnauthorized(err):
			return "", err
		}
	}
	if password == "" {
		buf := make([]byte, 18)
		_, _ = rand.Read(buf)
		password = hex.EncodeToString(buf)
	}
	s.step("read Nexus's initial admin password (docker compose exec) and set a generated one, kept in %s", pwFile)
	initial, err := s.Docker.Run(ctx, nil, s.compose("exec", "-T", NexusService, "cat", "/nexus-data/admin.password")...)
	if err != nil {
		return "", fmt.Errorf("reading Nexus's initial admin password: %w", err)
	}
	c, err := nexus.New(url, "admin", initial, hc)
	if err != nil {
		return "", err
	}
	if s.DryRun {
		return password, c.ChangePassword(ctx, "admin", password)
	}
	if err := writeFile(pending, []byte(password+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := c.ChangePassword(ctx, "admin", password); err != nil {
		return "", err
	}
	return password, os.Rename(pending, pwFile)
}

// loadImage copies the regwire image from the Docker engine into every node's containerd.
func (s *Stack) loadImage(ctx context.Context) error {
	s.step("load %s into the kind nodes", s.Image)
	if _, err := s.Docker.Run(ctx, nil, "image", "inspect", "--format", "{{.Id}}", s.Image); err != nil {
		return fmt.Errorf("the image %s is not in the Docker engine: `docker pull %s`, or from a checkout `make docker-image IMAGE=%s` builds and loads it: %w", s.Image, s.Image, s.Image, err)
	}
	archive := filepath.Join(s.StateDir, "regwire-image.tar")
	defer os.Remove(archive) // only needed while loading
	if _, err := s.Docker.Run(ctx, nil, "save", "--output", archive, s.Image); err != nil {
		return err
	}
	nodes, err := s.Kind.Nodes(s.Render.Kind.Name)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		f, err := os.Open(archive)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		var in io.Reader
		if f != nil {
			in = f
		}
		_, err = s.Docker.Run(ctx, in, "exec", "--privileged", "--interactive", n, "ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// wiring is what ties the cluster to the registry: the Nexus admin's Secret, the
// RegistryMirror (CA, host alias to the proxy, provisioning with its pull and push users,
// pull secrets in default) and
// the ImageSync.
func (s *Stack) wiring(ca []byte, password, proxyIP string) []*unstructured.Unstructured {
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": "nexus-admin", "namespace": "regwire-system"},
		"type":       "kubernetes.io/basic-auth",
		"stringData": map[string]any{"username": "admin", "password": password},
	}}
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": "default", "labels": map[string]any{"regwire.dev/pull-from-nexus": "true"}},
	}}
	tags := make([]any, 0, len(s.SyncTags))
	for _, t := range s.SyncTags {
		tags = append(tags, t)
	}
	rm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "regwire.dev/v1alpha1", "kind": "RegistryMirror",
		"metadata": map[string]any{"name": "nexus"},
		"spec": map[string]any{
			"host":        s.host(),
			"caBundle":    string(ca),
			"hostAliases": []any{map[string]any{"ip": proxyIP, "hostnames": []any{s.Render.PKI.DNSNames[0]}}},
			// The ImageSync below lives in default: the mirror lets that namespace push into
			// the repository, and no other.
			"imageSyncs": map[string]any{
				"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "default"}},
				"repositories":      []any{s.Repository + "/**"},
			},
			// The repository bootstrap made, kept as specified, and its pull and push users:
			// the nodes' pull secrets and the ImageSync never carry the admin's password.
			"provision": map[string]any{"nexus": map[string]any{
				"url": "https://" + s.host(), "repository": s.Repository,
				"adminCredentialsSecretRef": map[string]any{"namespace": "regwire-system", "name": "nexus-admin"},
			}},
			"pullSecrets": map[string]any{
				"secretName":        "nexus-pull",
				"namespaceSelector": map[string]any{"matchLabels": map[string]any{"regwire.dev/pull-from-nexus": "true"}},
				"serviceAccounts":   []any{"default"},
			},
		},
	}}
	is := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "regwire.dev/v1alpha1", "kind": "ImageSync",
		"metadata": map[string]any{"name": lastPathPart(s.SyncImage), "namespace": "default"},
		"spec": map[string]any{
			"source": map[string]any{"image": s.SyncImage, "tags": tags, "insecure": s.SyncInsecure},
			"target": map[string]any{"registryMirrorRef": map[string]any{"name": "nexus"}, "repository": s.Repository + "/" + lastPathPart(s.SyncImage)},
		},
	}}
	return []*unstructured.Unstructured{secret, ns, rm, is}
}

// LocalRegistryHostingName is the ConfigMap in kube-public through which tools that
// build and push images for a local cluster (Tilt, Skaffold, ctlptl…) find its registry:
// KEP-1755, "Communicating a local registry", the convention kind documents.
const LocalRegistryHostingName = "local-registry-hosting"

// LocalRegistryHostingV1 is KEP-1755's localRegistryHosting.v1 document.
type LocalRegistryHostingV1 struct {
	// Host is where developers on this machine push images (host[:port]).
	Host string `json:"host,omitempty"`
	// HostFromClusterNetwork is the registry as pods reach it; unset means pods cannot.
	HostFromClusterNetwork string `json:"hostFromClusterNetwork,omitempty"`
	// HostFromContainerRuntime is the registry as the nodes' runtime pulls from it: what
	// image fields of objects applied to the cluster name.
	HostFromContainerRuntime string `json:"hostFromContainerRuntime,omitempty"`
	// Help is a URL telling users how the registry is set up and how to diagnose it.
	Help string `json:"help,omitempty"`
}

// localRegistryHostingHelp is the README section on the laptop stack.
const localRegistryHostingHelp = "https://github.com/regwire/regwire#bootstrap-the-laptop-stack-in-one-command"

// localRegistryHosting is the KEP-1755 ConfigMap for the cluster up creates: developers
// push to the registry's host name (the laptop resolves it as the manual setup does), and
// the nodes pull by the same name through the RegistryMirror's host alias and CA. Pods do
// not resolve it (the alias is in the nodes' /etc/hosts, not in cluster DNS) and the
// certificate names no address, so hostFromClusterNetwork stays unset: per the KEP, the
// registry is not available from inside pods.
func (s *Stack) localRegistryHosting() (*unstructured.Unstructured, error) {
	doc, err := yaml.Marshal(LocalRegistryHostingV1{Host: s.host(), HostFromContainerRuntime: s.host(), Help: localRegistryHostingHelp})
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": LocalRegistryHostingName, "namespace": "kube-public",
			"labels": map[string]any{"app.kubernetes.io/managed-by": "regwire"}},
		"data": map[string]any{"localRegistryHosting.v1": string(doc)},
	}}, nil
}

// testPod runs the synced image once, with the pull secret, the way the manual setup checks it.
func (s *Stack) testPod() *unstructured.Unstructured {
	image := fmt.Sprintf("%s/%s/%s:%s", s.host(), s.Repository, lastPathPart(s.SyncImage), s.SyncTags[0])
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "regwire-pull-check", "namespace": "default"},
		"spec": map[string]any{
			"restartPolicy":    "Never", // it prints its line and stays Running until down
			"imagePullSecrets": []any{map[string]any{"name": "nexus-pull"}},
			"containers": []any{map[string]any{
				"name": "check", "image": image, "command": []any{"sh", "-c", "echo pulled from the private registry; exec sleep 3600"},
			}},
		},
	}}
}

func podImage(pod *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers")
	img, _, _ := unstructured.NestedString(cs[0].(map[string]any), "image")
	return img
}

func lastPathPart(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// applyAndWait applies objs and waits until those of the given kinds are ready.
func (s *Stack) applyAndWait(ctx context.Context, kube Kube, objs []*unstructured.Unstructured, kinds ...string) error {
	// Namespaces and CRDs first: what lives in them cannot be applied before.
	var crds, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
			crds = append(crds, o)
		} else {
			rest = append(rest, o)
		}
	}
	for _, batch := range [][]*unstructured.Unstructured{crds, rest} {
		if len(batch) == 0 {
			continue
		}
		if err := kube.Apply(ctx, batch); err != nil {
			return err
		}
		for _, o := range batch {
			if !slices.Contains(kinds, o.GetKind()) {
				continue
			}
			if err := s.waitReady(ctx, kube, o); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Stack) waitReady(ctx context.Context, kube Kube, o *unstructured.Unstructured) error {
	deadline := time.Now().Add(s.Timeout)
	for {
		ok, why, err := kube.Ready(ctx, o)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not ready after %s: %s", o.GetKind(), o.GetName(), s.Timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.Poll):
		}
	}
}

// Down removes what Up created: the kind cluster, the compose containers, network and the
// Nexus volume, and the kubeconfig and Nexus password (they belong to what is gone). The
// rendered files and the CA stay, so a new up trusts the same CA.
func (s *Stack) Down(ctx context.Context) error {
	s.defaults()
	kubeconfig := filepath.Join(s.StateDir, KubeconfigFile)
	clusters, err := s.Kind.Clusters()
	if err != nil {
		return err
	}
	if slices.Contains(clusters, s.Render.Kind.Name) {
		s.step("delete kind cluster %s", s.Render.Kind.Name)
		if err := s.Kind.Delete(s.Render.Kind.Name, kubeconfig); err != nil {
			return err
		}
	}
	s.step("remove the Nexus and nginx containers, their network and the Nexus volume")
	if _, err := s.Docker.Run(ctx, nil, s.compose("down", "--volumes", "--remove-orphans")...); err != nil {
		return err
	}
	// kind leaves its network behind; it goes too once nothing is attached to it (another
	// kind cluster keeps it).
	if attached, err := s.Docker.Run(ctx, nil, "network", "inspect", "kind", "--format", "{{len .Containers}}"); err == nil && strings.TrimSpace(attached) == "0" {
		s.step("remove the kind network (nothing is attached to it)")
		if _, err := s.Docker.Run(ctx, nil, "network", "rm", "kind"); err != nil {
			return err
		}
	}
	for _, f := range []string{KubeconfigFile, NexusPasswordFile} {
		if err := os.Remove(filepath.Join(s.StateDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Status prints the state of the stack: the compose services, Nexus, the cluster and
// regwire's objects in it.
func (s *Stack) Status(ctx context.Context) error {
	s.defaults()
	out, err := s.Docker.Run(ctx, nil, s.compose("ps", "--all", "--format", "{{.Service}}\t{{.State}}\t{{.Health}}")...)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(s.Out, "compose services:\n%s\n", indent(out))
	clusters, err := s.Kind.Clusters()
	if err != nil {
		return err
	}
	if !slices.Contains(clusters, s.Render.Kind.Name) {
		_, _ = fmt.Fprintf(s.Out, "kind cluster %s: absent\n", s.Render.Kind.Name)
		return nil
	}
	_, _ = fmt.Fprintf(s.Out, "kind cluster %s: present\n", s.Render.Kind.Name)
	kube, err := s.NewKube(filepath.Join(s.StateDir, KubeconfigFile))
	if err != nil {
		return err
	}
	for _, o := range s.wiring(nil, "", "127.0.0.1")[2:] {
		ok, why, err := kube.Ready(ctx, o)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(s.Out, "%s %s: ready=%v (%s)\n", o.GetKind(), o.GetName(), ok, why)
	}
	return nil
}

func indent(s string) string {
	if s == "" {
		return "  (none)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// ifNotPresent makes a Deployment use images already on the nodes.
func ifNotPresent(deploy *unstructured.Unstructured) {
	cs, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	for i := range cs {
		c, _ := cs[i].(map[string]any)
		c["imagePullPolicy"] = "IfNotPresent"
		cs[i] = c
	}
	_ = unstructured.SetNestedSlice(deploy.Object, cs, "spec", "template", "spec", "containers")
}
