//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/scheme"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

const (
	operatorNS = "regwire-system"
	nodeName   = "e2e-node"
	helloLine  = "hello from the private registry"
)

// TestTheManualSetupOnRealParts is the manual setup as one test: a RegistryMirror provisions
// the docker (hosted) repository in "Nexus" (the Nexus emulator behind real nginx with the
// bootstrap's nginx.conf and SAN certificate), an ImageSync copies an image into it, the
// agent wires containerd (hosts.toml, CA, /etc/hosts), and containerd pulls the image
// through CRI with the pull secret's credentials, as kubelet would, and runs it with runc.
// It does so in both of Nexus's URL shapes (path-based routing, nexus.local/my-docker/hello;
// the repository base path, docker.nexus.local/hello) and with both of its ways to ask
// for credentials (Basic, bearer tokens). Then the registry's CA is rotated without
// restarting containerd, and deleting the RegistryMirror takes everything off the node again.
func TestTheManualSetupOnRealParts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test writes /etc/hosts and runs containerd: run it as root (CI does)")
	}
	ctx := context.Background()
	l := newLogs(t)
	work := t.TempDir()
	if err := os.Chmod(work, 0o755); err != nil { // nginx workers run as nobody
		t.Fatal(err)
	}
	regwire := buildRegwire(t, work)

	// 1. The real parts.
	_, kubeconfig, k8s := startControlPlane(t, work, controlplane.Options{})
	upstream := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry upstream", upstream.Log)
	const nexusUser, nexusPassword = "admin", "e2e-nexus-password"
	priv := startPrivateRegistry(t, l, work, nexusUser, nexusPassword, "docker.nexus.local")
	host, tlsDir, nginxConf := priv.host, priv.tlsDir, priv.nginxConf

	certsDir := filepath.Join(work, "certs.d") // containerd's config_path = the agent's root
	unrelated := filepath.Join(certsDir, "docker.io", "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(unrelated), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unrelated, []byte("server = \"https://registry-1.docker.io\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	certsBefore := testutil.Snapshot(t, certsDir)
	ctrd := startContainerd(t, l, filepath.Join(work, "containerd"), certsDir)

	hostsBefore, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restoreHosts(t, hostsBefore) })

	// 2. The upstream image: a static program for two platforms, and a signature.
	digest := helloImage(t, upstream.Host+"/library/hello:1.0", helloLine, "amd64", "arm64")
	t.Logf("upstream image %s/library/hello:1.0@%s", upstream.Host, digest)
	sig, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	sigTag := "sha256-" + digest.Hex + ".sig"
	if err := remote.Write(testutil.Ref(t, upstream.Host+"/library/hello:"+sigTag), sig); err != nil {
		t.Fatal(err)
	}

	// 3. regwire: the manager and one agent, as processes.
	env := []string{"KUBECONFIG=" + kubeconfig}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "nexus-credentials"}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": nexusUser, "password": nexusPassword}},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	start(t, l, "manager", env, regwire, "manager", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--namespace", operatorNS,
		"--allow-source-cidrs=127.0.0.1/32") // the upstream registry listens on loopback
	// The agent reads the real containerd's configuration (config_path = certsDir): a
	// ConfigPathNotSet there would keep the mirror from Ready. It also writes CRI-O's format
	// into a private /etc/containers, which podman reads.
	containersRoot := filepath.Join(work, "containers")
	writeFile(t, filepath.Join(containersRoot, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`+"\n")
	start(t, l, "agent", env, regwire, "agent", "--node-name", nodeName, "--namespace", operatorNS, "--root", certsDir, "--hosts-file", "/etc/hosts",
		"--containerd-config", filepath.Join(work, "containerd", "config.toml"), "--crio-root", containersRoot)

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "nexus-local"},
		Spec: v1alpha1.RegistryMirrorSpec{
			ImageSyncs:  appsMayPush("my-docker/**"),
			Host:        v1alpha1.RegistryHost(host),
			CABundle:    string(priv.ca),
			HostAliases: []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local"}}},
			PullSecrets: &v1alpha1.PullSecretsSpec{SecretName: "nexus-local-pull",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}},
			// The repository, with path-based routing and (by default) Basic authentication,
			// and (no credentialsSecretRef) its pull and push users: the admin only provisions.
			Provision: &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: priv.url, Repository: "my-docker",
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: operatorNS, Name: "nexus-credentials"}}},
		},
	}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, rm.Name)
	hostsFile := filepath.Join(certsDir, host, "hosts.toml")
	if b, err := os.ReadFile(hostsFile); err != nil {
		t.Fatalf("the agent did not write %s: %v", hostsFile, err)
	} else {
		t.Logf("%s:\n%s", hostsFile, b)
	}
	if b, _ := os.ReadFile("/etc/hosts"); !regexp.MustCompile(`(?m)^127\.0\.0\.1\s+nexus\.local\b`).Match(b) {
		t.Fatalf("/etc/hosts has no nexus.local entry:\n%s", b)
	}

	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hello"},
		Spec: v1alpha1.ImageSyncSpec{
			Source:    v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(upstream.Host + "/library/hello"), Tags: []string{"1.0"}},
			Target:    v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/hello"},
			Referrers: true,
		},
	}
	syncImage(t, k8s, is, 2*time.Minute, digest)
	nexusAuth := remote.WithAuth(&authn.Basic{Username: nexusUser, Password: nexusPassword})
	wantSig, _ := sig.Digest()
	// Nexus has no referrers API: the signature went by the sha256-<hex> tag.
	if got, err := remote.Head(testutil.Ref(t, strings.TrimPrefix(priv.url, "http://")+"/my-docker/hello:"+sigTag), nexusAuth); err != nil || got.Digest != wantSig {
		t.Errorf("the signature in the private registry: %v %v, want %s", got, err, wantSig)
	}

	if got := priv.nexus.Writers("my-docker"); !slices.Equal(got, []string{"regwire-nexus-local-push"}) {
		t.Errorf("my-docker was written by %v, want the provisioned push user only", got)
	}

	// 4. The pull, as kubelet does it: CRI PullImage with the pull secret's credentials,
	// those of the provisioned pull user, which may read the repository and not write it.
	user, pass := pullSecretCredentials(t, k8s, "nexus-local-pull", host)
	if user != "regwire-nexus-local-pull" {
		t.Errorf("the pull secret carries user %q, want the provisioned pull user", user)
	}
	intruder, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	var denied *transport.Error
	err = remote.Write(testutil.Ref(t, strings.TrimPrefix(priv.url, "http://")+"/my-docker/hello:1.0"), intruder,
		remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	if !errors.As(err, &denied) || denied.StatusCode != http.StatusForbidden {
		t.Errorf("a push as the pull user: %v, want 403", err)
	}
	image := host + "/my-docker/hello:1.0"
	ref, err := ctrd.pull(image, user, pass)
	if err != nil {
		t.Fatalf("CRI PullImage %s: %v", image, err)
	}
	t.Logf("containerd pulled %s as %s", image, ref)
	if got := ctrd.run(t, image, "e2e-hello-1"); got != helloLine {
		t.Fatalf("the container printed %q, want %q", got, helloLine)
	} else {
		t.Logf("runc ran it: %q", got)
	}
	if _, err := ctrd.pull(image, user, "wrong-password"); err == nil {
		t.Error("a pull with a wrong password succeeded: the registry does not check credentials")
	}
	// The same repository with bearer tokens: containerd follows Nexus's challenge to its
	// token endpoint.
	setDockerAuth(t, k8s, rm.Name, v1alpha1.NexusDockerAuthToken)
	pullThrough(t, priv, ctrd, image, user, pass, "GET /v2/token?", " /v2/my-docker/hello/manifests/1.0")
	t.Logf("containerd pulled %s with a bearer token from Nexus", image)

	// The other URL shape: the repository base path, images named without the repository.
	pullAtTheBasePath(t, k8s, priv, ctrd, upstream.Host+"/library/hello", digest)

	// Docker Hub through Nexus: a proxy repository, pulled without credentials.
	throughADockerHubProxy(t, l, k8s, priv, ctrd, rm.Name, image, upstream.Host+"/library/hello:1.0", work, certsDir)

	// 5. A new CA: nginx serves a certificate from it; pulls fail until the mirror carries
	// it, then succeed, containerd never restarted.
	pid := ctrd.cmd.Process.Pid
	for _, f := range []string{bootstrap.CACertFile, bootstrap.CAKeyFile} {
		if err := os.Remove(filepath.Join(tlsDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	rotated, err := bootstrap.EnsurePKI(tlsDir, bootstrap.PKIOptions{DNSNames: []string{"nexus.local"}})
	if err != nil || !rotated.CAIssued || bytes.Equal(rotated.CA, priv.ca) {
		t.Fatalf("rotating the CA: %v %+v", err, rotated)
	}
	reloadNginx(t, nginxConf)
	ctrd.remove(t, image)
	testutil.Eventually(t, 30*time.Second, "pulls failing with the old CA", func() error {
		if _, err := ctrd.pull(image, user, pass); err == nil {
			return fmt.Errorf("the pull still succeeds")
		} else if !strings.Contains(err.Error(), "x509") && !strings.Contains(err.Error(), "certificate") {
			return fmt.Errorf("the pull failed, but not on the certificate: %w", err)
		}
		return nil
	})
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
		t.Fatal(err)
	}
	rm.Spec.CABundle = string(rotated.CA)
	if err := k8s.Update(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, rm.Name)
	if _, err := ctrd.pull(image, user, pass); err != nil {
		t.Fatalf("pull after the CA rotation: %v", err)
	}
	t.Logf("after the CA rotation containerd (pid %d, not restarted) pulls %s again", pid, image)
	if got := ctrd.run(t, image, "e2e-hello-2"); got != helloLine {
		t.Fatalf("after the rotation the container printed %q", got)
	}
	if ctrd.cmd.Process.Pid != pid || ctrd.cmd.ProcessState != nil {
		t.Error("containerd was restarted")
	}

	// 6. A registry that requires a client certificate, pulled by containerd and podman.
	clientKey := pullWithAClientCertificate(t, l, k8s, priv, ctrd, certsDir, containersRoot, user, pass)

	// No secret in what regwire says: logs, Events, status, ConfigMaps.
	keyBody := strings.Split(strings.TrimSpace(string(clientKey)), "\n")[1]
	secretLeakCheck(t, l, k8s, nexusPassword, base64.StdEncoding.EncodeToString([]byte(nexusUser+":"+nexusPassword)),
		keyBody, base64.StdEncoding.EncodeToString(clientKey))

	// 7. Deleting the mirror takes its files and hosts entries off the node.
	if err := k8s.Delete(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorGone(t, k8s, rm.Name)
	after := testutil.Snapshot(t, certsDir)
	delete(after, ".regwire/owned.json")
	for k := range after {
		if strings.HasPrefix(k, ".regwire/") {
			delete(after, k)
		}
	}
	if fmt.Sprint(after) != fmt.Sprint(certsBefore) {
		t.Errorf("the agent's root after the delete:\n%v\nwant what was there before:\n%v", after, certsBefore)
	}
	if b, _ := os.ReadFile("/etc/hosts"); !bytes.Equal(b, hostsBefore) {
		t.Errorf("/etc/hosts after the delete:\n%s\nwant:\n%s", b, hostsBefore)
	}
	ctrd.remove(t, image)
	if _, err := ctrd.pull(image, user, pass); err == nil {
		t.Error("the pull still succeeds after the mirror was deleted")
	} else if !strings.Contains(err.Error(), "no such host") && !strings.Contains(err.Error(), "x509") && !strings.Contains(err.Error(), "lookup") {
		t.Errorf("the pull after the delete failed, but not on name resolution or TLS: %v", err)
	} else {
		t.Logf("after the delete the pull fails as it should: %v", err)
	}
}

// buildRegwire builds the regwire binary for the manager and agent processes.
func buildRegwire(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "regwire")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/regwire")
	cmd.Dir = testutil.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build regwire: %v\n%s", err, out)
	}
	return bin
}

func newClient(t *testing.T, cp *controlplane.ControlPlane) client.Client {
	t.Helper()
	s := scheme.New()
	// The CRDs too: the uninstall checks look for regwire's.
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// renderNginx writes the bootstrap's nginx.conf for a registry at upstream, serving
// nexus.local on httpsAddr with the certificate in tlsDir.
func renderNginx(t *testing.T, dir, tlsDir, upstream, httpsAddr string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(httpsAddr)
	p := 0
	_, _ = fmt.Sscan(port, &p)
	conf, err := bootstrap.RenderNginx(bootstrap.NginxOptions{
		ServerName: "nexus.local", Upstream: upstream,
		ListenHTTPS: []string{httpsAddr}, ListenHTTP: []string{testutil.FreeAddr(t)}, HTTPSPort: p,
		CertFile: filepath.Join(tlsDir, bootstrap.ServerCertFile), KeyFile: filepath.Join(tlsDir, bootstrap.ServerKeyFile),
		PidFile: filepath.Join(dir, "nginx.pid"), TempDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// reloadNginx makes nginx read its certificate again (SIGHUP to the master).
func reloadNginx(t *testing.T, conf string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(conf), "nginx.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		t.Fatalf("nginx.pid %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func mirrorReady(t *testing.T, k8s client.Client, name string) {
	t.Helper()
	testutil.Eventually(t, 2*time.Minute, "RegistryMirror "+name+" Ready", func() error {
		rm := &v1alpha1.RegistryMirror{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, rm); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != rm.Generation {
			return fmt.Errorf("Ready %+v (generation %d)", c, rm.Generation)
		}
		return nil
	})
}

// syncImage creates the ImageSync, waits until it is Ready, and checks that it copied one
// tag as digest (the zero hash: any).
func syncImage(t *testing.T, k8s client.Client, is *v1alpha1.ImageSync, timeout time.Duration, digest v1.Hash) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, is); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, timeout, "ImageSync "+is.Name+" Ready", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
			return err
		}
		if !apimeta.IsStatusConditionTrue(is.Status.Conditions, v1alpha1.ConditionReady) {
			return fmt.Errorf("conditions %+v images %+v", is.Status.Conditions, is.Status.Images)
		}
		return nil
	})
	if digest != (v1.Hash{}) && (len(is.Status.Images) != 1 || is.Status.Images[0].TargetDigest != digest.String()) {
		t.Fatalf("ImageSync copied %+v, want %s", is.Status.Images, digest)
	}
}

// mirrorGone waits until the RegistryMirror is deleted (its finalizer done).
func mirrorGone(t *testing.T, k8s client.Client, name string) {
	t.Helper()
	testutil.Eventually(t, time.Minute, "RegistryMirror "+name+" gone", func() error {
		err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, &v1alpha1.RegistryMirror{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %w", err)
	})
}

// pullSecretCredentials reads the user and password the pull secret name in namespace apps
// holds for host, as kubelet would.
func pullSecretCredentials(t *testing.T, k8s client.Client, name, host string) (string, string) {
	t.Helper()
	s := &corev1.Secret{}
	testutil.Eventually(t, time.Minute, "pull secret in apps", func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: "apps", Name: name}, s)
	})
	var cfg struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		t.Fatal(err)
	}
	a, ok := cfg.Auths[host]
	if !ok {
		t.Fatalf("the pull secret has no entry for %s", host)
	}
	return a.Username, a.Password
}

// restoreHosts writes /etc/hosts back as it was, in place (it may be a bind mount).
func restoreHosts(t *testing.T, want []byte) {
	if got, err := os.ReadFile("/etc/hosts"); err == nil && bytes.Equal(got, want) {
		return
	}
	if err := os.WriteFile("/etc/hosts", want, 0o644); err != nil {
		t.Errorf("restoring /etc/hosts: %v", err)
	}
}

// secretLeakCheck looks for secrets in everything regwire wrote where people and tools
// read: the manager's and the agent's logs, every Event, every ConfigMap, and the status
// of every RegistryMirror, RegistryNode and ImageSync.
func secretLeakCheck(t *testing.T, l *logs, k8s client.Client, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	var texts []string
	for _, name := range []string{"manager", "agent"} {
		texts = append(texts, name+" log\n"+l.buffer(name).String())
	}
	for _, list := range []client.ObjectList{&eventsv1.EventList{}, &corev1.EventList{}, &corev1.ConfigMapList{}, &v1alpha1.RegistryMirrorList{}, &v1alpha1.RegistryNodeList{}, &v1alpha1.ImageSyncList{}} {
		if err := k8s.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, fmt.Sprintf("%T\n%s", list, b))
	}
	checked := 0
	for _, text := range texts {
		checked += len(text)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("a secret appears in %s", strings.SplitN(text, "\n", 2)[0])
			}
		}
	}
	t.Logf("no secret in %d bytes of logs, Events, ConfigMaps and status", checked)
}

// pullWithAClientCertificate serves the private registry again on mtls.local, requiring
// a client certificate, and wires it with a RegistryMirror whose
// clientCertificateSecretRef names a kubernetes.io/tls Secret and whose runtimes are
// containerd and CRI-O's format. Containerd (CRI) and podman pull through it; a client
// without the certificate is refused; the key files are 0600. The mirror is deleted at the
// end. It returns the client key, for the leak check.
func pullWithAClientCertificate(t *testing.T, l *logs, k8s client.Client, priv *privateRegistry, ctrd *containerd, certsDir, containersRoot, user, pass string) []byte {
	t.Helper()
	ctx := context.Background()
	ca := testutil.NewCA(t, "mTLS registry CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: priv.nexus, ReadHeaderTimeout: 10 * time.Second},
		TLS: &tls.Config{Certificates: []tls.Certificate{ca.ServerTLS(t, "mtls.local")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	host := "mtls.local:" + port
	image := host + "/my-docker/hello:1.0"

	cert, key := ca.ClientPEM(t, "regwire e2e node")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "mtls-client"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "mtls"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: v1alpha1.RegistryHost(host), CABundle: ca.PEM,
			HostAliases:                []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"mtls.local"}}},
			ClientCertificateSecretRef: &v1alpha1.SecretReference{Namespace: operatorNS, Name: secret.Name},
			Runtimes:                   []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd, v1alpha1.RuntimeCRIO},
		},
	}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, rm.Name)

	// The registry does require the certificate: the mirror's CA alone is refused.
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if resp, err := bare.Get("https://" + host + "/v2/"); err == nil {
		_ = resp.Body.Close()
		t.Fatal("the mTLS registry answered a client without a certificate")
	}
	for _, keyFile := range []string{filepath.Join(certsDir, host, "client.key"), filepath.Join(containersRoot, "certs.d", host, "client.key")} {
		if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 600", keyFile, err, fi)
		}
	}
	if _, err := ctrd.pull(image, user, pass); err != nil {
		t.Fatalf("containerd could not pull %s with the client certificate: %v", image, err)
	}
	podman := newPodman(t, testutil.PrivateMounts(map[string]string{"/etc/containers": containersRoot}))
	if out, err := podman("pull", "--creds", user+":"+pass, image); err != nil {
		t.Fatalf("podman could not pull %s with the client certificate: %v\n%s", image, err, out)
	}
	t.Logf("containerd and podman pulled %s from a registry that requires a client certificate", image)
	// While the mirror is in use: the key is in no log, Event, status or ConfigMap.
	secretLeakCheck(t, l, k8s, strings.Split(strings.TrimSpace(string(key)), "\n")[1], base64.StdEncoding.EncodeToString(key))

	if err := k8s.Delete(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorGone(t, k8s, rm.Name)
	for _, keyFile := range []string{filepath.Join(certsDir, host, "client.key"), filepath.Join(containersRoot, "certs.d", host, "client.key")} {
		if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
			t.Errorf("%s is still there after the mirror was deleted: %v", keyFile, err)
		}
	}
	return key
}

// setDockerAuth switches how the mirror's Nexus repository asks for credentials, and waits
// until Nexus has it and the mirror is Ready again.
func setDockerAuth(t *testing.T, k8s client.Client, name string, auth v1alpha1.NexusDockerAuth) {
	t.Helper()
	ctx := context.Background()
	rm := &v1alpha1.RegistryMirror{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, rm); err != nil {
		t.Fatal(err)
	}
	rm.Spec.Provision.Nexus.DockerAuth = auth
	if err := k8s.Update(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, name)
}

// pullThrough removes image from containerd, pulls it again with the credentials, runs
// it, and checks that Nexus saw each of the requests named (part of "METHOD URI").
func pullThrough(t *testing.T, priv *privateRegistry, ctrd *containerd, image, user, pass string, want ...string) {
	t.Helper()
	ctrd.remove(t, image)
	seen := len(priv.nexus.Requests())
	if _, err := ctrd.pull(image, user, pass); err != nil {
		t.Fatalf("CRI PullImage %s: %v", image, err)
	}
	if got := ctrd.run(t, image, "e2e-hello-"+strconv.Itoa(seen)); got != helloLine {
		t.Fatalf("the container printed %q, want %q", got, helloLine)
	}
	reqs := priv.nexus.Requests()[seen:]
	for _, w := range want {
		if !slices.ContainsFunc(reqs, func(r string) bool { return strings.Contains(r, w) }) {
			t.Errorf("Nexus saw no %q during the pull of %s:\n%s", w, image, strings.Join(reqs, "\n"))
		}
	}
}

// pullAtTheBasePath wires a second host, docker.nexus.local, to a Nexus repository at its
// base path (https://docker.nexus.local:<port>/repository/apps-docker/v2, containerd's
// override_path): the ImageSync's repository and the pod's image name carry no repository
// name. Containerd pulls with bearer tokens, then with Basic authentication. The mirror is
// deleted again at the end.
func pullAtTheBasePath(t *testing.T, k8s client.Client, priv *privateRegistry, ctrd *containerd, source string, digest v1.Hash) {
	t.Helper()
	ctx := context.Background()
	host := "docker.nexus.local:" + priv.port
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "nexus-base-path"},
		Spec: v1alpha1.RegistryMirrorSpec{
			ImageSyncs:           appsMayPush("**"),
			Host:                 v1alpha1.RegistryHost(host),
			Endpoint:             "https://" + host + "/repository/apps-docker/v2",
			CABundle:             string(priv.ca),
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: operatorNS, Name: "nexus-credentials"},
			HostAliases:          []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"docker.nexus.local"}}},
			PullSecrets: &v1alpha1.PullSecretsSpec{SecretName: "nexus-base-path-pull",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}},
			Provision: &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: priv.url, Repository: "apps-docker",
				DockerAuth:                v1alpha1.NexusDockerAuthToken,
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: operatorNS, Name: "nexus-credentials"}}},
		},
	}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, rm.Name)
	if repo := priv.nexus.Repository("apps-docker"); repo == nil || repo["docker"].(map[string]any)["pathEnabled"] != nil {
		t.Errorf("apps-docker in Nexus: %v, want it without path-based routing", repo)
	}
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hello-base-path"},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source), Tags: []string{"1.0"}},
			Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "hello"},
		},
	}
	syncImage(t, k8s, is, 2*time.Minute, digest)
	user, pass := pullSecretCredentials(t, k8s, "nexus-base-path-pull", host)
	image := host + "/hello:1.0"
	pullThrough(t, priv, ctrd, image, user, pass, "GET /repository/apps-docker/v2/token?", " /repository/apps-docker/v2/hello/manifests/1.0")
	t.Logf("containerd pulled %s from the repository base path with a bearer token", image)
	setDockerAuth(t, k8s, rm.Name, v1alpha1.NexusDockerAuthBasic)
	pullThrough(t, priv, ctrd, image, user, pass, " /repository/apps-docker/v2/hello/manifests/1.0")
	t.Logf("containerd pulled %s from the repository base path with Basic authentication", image)
	ctrd.remove(t, image)

	for _, o := range []client.Object{is, rm} {
		if err := k8s.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mirrorGone(t, k8s, rm.Name)
}
