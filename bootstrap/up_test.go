package bootstrap_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/test/nexusemulator"
)

// recorder stands in for Docker, kind and the cluster, recording every call.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	clusters []string
	applied  map[string]*unstructured.Unstructured
	stdin    map[string]int // bytes piped into a command
	// kindAttached is what docker network inspect kind says of its containers.
	kindAttached string
}

func newRecorder() *recorder {
	return &recorder{applied: map[string]*unstructured.Unstructured{}, stdin: map[string]int{}}
}

func (r *recorder) Run(_ context.Context, in io.Reader, args ...string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := "docker " + strings.Join(args, " ")
	r.calls = append(r.calls, cmd)
	if in != nil {
		b, _ := io.ReadAll(in)
		r.stdin[cmd] = len(b)
	}
	switch {
	case strings.Contains(cmd, "cat /nexus-data/admin.password"):
		return "initial-from-volume", nil
	case args[0] == "inspect":
		return "172.18.0.7", nil
	case args[0] == "network" && args[1] == "inspect":
		return r.kindAttached, nil
	case args[0] == "save":
		for i, a := range args {
			if a == "--output" {
				_ = os.WriteFile(args[i+1], []byte("image archive"), 0o600)
			}
		}
	}
	return "", nil
}

func (r *recorder) Create(name, configPath, kubeconfigPath string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "kind create "+name+" "+filepath.Base(configPath))
	r.clusters = append(r.clusters, name)
	return os.WriteFile(kubeconfigPath, []byte("kubeconfig"), 0o600)
}

func (r *recorder) Delete(name, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "kind delete "+name)
	r.clusters = slices.DeleteFunc(r.clusters, func(c string) bool { return c == name })
	return nil
}

func (r *recorder) Clusters() ([]string, error) { return slices.Clone(r.clusters), nil }
func (r *recorder) Nodes(name string) ([]string, error) {
	return []string{name + "-control-plane", name + "-worker"}, nil
}

func (r *recorder) Apply(_ context.Context, objs []*unstructured.Unstructured) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range objs {
		r.applied[o.GetKind()+"/"+o.GetName()] = o
	}
	return nil
}

func (r *recorder) Ready(context.Context, *unstructured.Unstructured) (bool, string, error) {
	return true, "", nil
}

func (r *recorder) docker() []string {
	var out []string
	for _, c := range r.calls {
		if strings.HasPrefix(c, "docker ") || strings.HasPrefix(c, "kind ") {
			out = append(out, c)
		}
	}
	return out
}

func stackFor(t *testing.T, dir string, rec *recorder, nexusURL string) *bootstrap.Stack {
	t.Helper()
	return &bootstrap.Stack{
		StateDir: dir, Image: "regwire:dev", Docker: rec, Kind: rec,
		NewKube:  func(string) (bootstrap.Kube, error) { return rec, nil },
		NexusURL: nexusURL, Timeout: time.Second, Poll: time.Millisecond,
	}
}

// TestUpDoesEveryStepOnceAndAgainIdempotently runs up against recording stand-ins for
// Docker, kind and the cluster and the contract fake of Nexus's REST API, checks each
// step's inputs and outputs, then runs it again: nothing is created twice and the
// generated password is kept.
func TestUpDoesEveryStepOnceAndAgainIdempotently(t *testing.T) {
	t.Parallel()
	fake := nexusemulator.New("initial-from-volume")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	rec := newRecorder()
	var out bytes.Buffer
	s := stackFor(t, dir, rec, srv.URL)
	s.Out = &out
	if err := s.Up(context.Background()); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	compose := "docker compose --project-name regwire --file " + filepath.Join(dir, "docker-compose.yaml")
	want := []string{
		compose + " up --detach --wait --wait-timeout 1",
		compose + " exec -T nexus cat /nexus-data/admin.password",
		"kind create regwire kind.yaml",
		"docker network connect kind regwire-proxy-1",
		`docker inspect --format {{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}} regwire-proxy-1`,
		"docker image inspect --format {{.Id}} regwire:dev",
		"docker save --output " + filepath.Join(dir, "regwire-image.tar") + " regwire:dev",
		"docker exec --privileged --interactive regwire-control-plane ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -",
		"docker exec --privileged --interactive regwire-worker ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -",
	}
	if got := rec.docker(); !slices.Equal(got, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := rec.stdin[want[7]]; n != len("image archive") {
		t.Errorf("the image archive was not piped into the node (%d bytes)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "regwire-image.tar")); !os.IsNotExist(err) {
		t.Errorf("the image archive was left in the state dir: %v", err)
	}

	// Nexus: a generated password, kept 0600; the realm; the repository with path routing.
	pw, err := os.ReadFile(filepath.Join(dir, bootstrap.NexusPasswordFile))
	if err != nil || strings.TrimSpace(string(pw)) != fake.Password("admin") || fake.Password("admin") == "initial-from-volume" {
		t.Fatalf("admin password: file %q (%v), Nexus %q", pw, err, fake.Password("admin"))
	}
	if fi, _ := os.Stat(filepath.Join(dir, bootstrap.NexusPasswordFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v", fi.Mode().Perm())
	}
	if repo := fake.Repository("my-docker"); repo == nil || repo["docker"].(map[string]any)["pathEnabled"] != true || repo["docker"].(map[string]any)["forceBasicAuth"] != true {
		t.Errorf("Nexus repository %v, want path-based routing and Basic authentication", repo)
	}

	// The cluster: regwire installed with the loaded image (manager and agent), the mirror
	// aliased to the proxy's kind address with the rendered CA, the ImageSync, the pod.
	dep := rec.applied["Deployment/regwire-manager"]
	if dep == nil {
		t.Fatalf("no manager Deployment among %v", keys(rec.applied))
	}
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if c["image"] != "regwire:dev" || !slices.Contains(args, "--agent-image=regwire:dev") {
		t.Errorf("manager image %v args %v", c["image"], args)
	}
	rm := rec.applied["RegistryMirror/nexus"]
	ca, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
	aliases, _, _ := unstructured.NestedSlice(rm.Object, "spec", "hostAliases")
	caBundle, _, _ := unstructured.NestedString(rm.Object, "spec", "caBundle")
	if caBundle != string(ca) || aliases[0].(map[string]any)["ip"] != "172.18.0.7" {
		t.Errorf("RegistryMirror spec %v", rm.Object["spec"])
	}
	// kind's local-registry convention (KEP-1755): tools find where to push and how the
	// nodes pull.
	hosting := rec.applied["ConfigMap/"+bootstrap.LocalRegistryHostingName]
	if hosting == nil || hosting.GetNamespace() != "kube-public" {
		t.Fatalf("no ConfigMap kube-public/local-registry-hosting among %v", keys(rec.applied))
	}
	doc, _, _ := unstructured.NestedString(hosting.Object, "data", "localRegistryHosting.v1")
	var lrh bootstrap.LocalRegistryHostingV1
	if err := yaml.UnmarshalStrict([]byte(doc), &lrh); err != nil {
		t.Fatalf("localRegistryHosting.v1 %q: %v", doc, err)
	}
	if lrh.Host != "nexus.local" || lrh.HostFromContainerRuntime != "nexus.local" || lrh.HostFromClusterNetwork != "" || !strings.HasPrefix(lrh.Help, "https://") {
		t.Errorf("localRegistryHosting.v1 %+v", lrh)
	}
	secret := rec.applied["Secret/nexus-admin"]
	if p, _, _ := unstructured.NestedString(secret.Object, "stringData", "password"); p != fake.Password("admin") {
		t.Error("the admin Secret does not hold Nexus's password")
	}
	if _, found, _ := unstructured.NestedMap(rm.Object, "spec", "credentialsSecretRef"); found {
		t.Error("the RegistryMirror hands the admin's credentials to pulls and pushes")
	}
	if ref, _, _ := unstructured.NestedString(rm.Object, "spec", "provision", "nexus", "adminCredentialsSecretRef", "name"); ref != "nexus-admin" {
		t.Errorf("the RegistryMirror does not provision with the admin's Secret: %v", rm.Object["spec"])
	}
	pod := rec.applied["Pod/regwire-pull-check"]
	if pod == nil || !strings.Contains(pod.Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"].(string), "nexus.local/my-docker/busybox:1.36") {
		t.Errorf("test pod %v", pod)
	}
	if strings.Contains(out.String(), fake.Password("admin")) {
		t.Error("the output shows the admin password")
	}

	// Again: the cluster exists, the password is known, the repository is as specified.
	rec.calls = nil
	sent := len(fake.Requests())
	if err := s.Up(context.Background()); err != nil {
		t.Fatalf("second up: %v", err)
	}
	for _, c := range rec.docker() {
		if strings.Contains(c, "kind create") || strings.Contains(c, "admin.password") {
			t.Errorf("second up ran %q", c)
		}
	}
	for _, r := range fake.Requests()[sent:] {
		if strings.Contains(r, "change-password") || strings.HasPrefix(r, "POST") {
			t.Errorf("second up sent Nexus %q", r)
		}
	}
}

func TestDownRemovesWhatUpCreated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := newRecorder()
	rec.clusters = []string{"regwire", "someone-elses"}
	for _, f := range []string{bootstrap.KubeconfigFile, bootstrap.NexusPasswordFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rec.kindAttached = "0"
	if err := stackFor(t, dir, rec, "").Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"kind delete regwire", "docker compose --project-name regwire --file " + filepath.Join(dir, "docker-compose.yaml") + " down --volumes --remove-orphans",
		"docker network inspect kind --format {{len .Containers}}", "docker network rm kind"}
	if got := rec.docker(); !slices.Equal(got, want) {
		t.Errorf("down ran %v, want %v", got, want)
	}
	// A kind network something is still attached to (another cluster's nodes) stays.
	rec.calls, rec.kindAttached = nil, "2"
	if err := stackFor(t, dir, rec, "").Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.docker(); slices.Contains(got, "docker network rm kind") {
		t.Errorf("down removed a kind network in use: %v", got)
	}
	if !slices.Equal(rec.clusters, []string{"someone-elses"}) {
		t.Errorf("clusters left %v", rec.clusters)
	}
	for _, f := range []string{bootstrap.KubeconfigFile, bootstrap.NexusPasswordFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there", f)
		}
	}
}

// TestDryRunPrintsEveryCommandAndAPICallAndWritesNothing walks up with the dry-run
// stand-ins.
func TestDryRunPrintsEveryCommandAndAPICallAndWritesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	var out bytes.Buffer
	s := &bootstrap.Stack{StateDir: dir, Out: &out, Timeout: time.Second, Poll: time.Millisecond}
	bootstrap.DryRun{Out: &out}.Apply(s)
	if err := s.Up(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"+ docker compose --project-name regwire --file " + filepath.Join(dir, "docker-compose.yaml") + " up --detach --wait",
		"+ docker compose --project-name regwire --file " + filepath.Join(dir, "docker-compose.yaml") + " exec -T nexus cat /nexus-data/admin.password",
		"+ PUT https://127.0.0.1:443/service/rest/v1/security/users/admin/change-password",
		"+ POST https://127.0.0.1:443/service/rest/v1/repositories/docker/hosted",
		"+ kind create cluster --name regwire --config " + filepath.Join(dir, "kind.yaml"),
		"+ docker network connect kind regwire-proxy-1",
		"+ kubectl apply --server-side --field-manager=regwire-bootstrap: Deployment regwire-system/regwire-manager",
		"+ kubectl apply --server-side --field-manager=regwire-bootstrap: RegistryMirror nexus",
		"+ kubectl apply --server-side --field-manager=regwire-bootstrap: Pod default/regwire-pull-check",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("dry run lacks %q:\n%s", want, got)
		}
	}
	if ns, dep := strings.Index(got, "Namespace regwire-system"), strings.Index(got, "Deployment regwire-system"); ns < 0 || ns > dep {
		t.Error("the operator namespace is applied after what lives in it")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the dry run wrote the state dir: %v", err)
	}
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestUpRecoversFromARunThatStoppedAroundThePasswordChange: Nexus deletes its initial
// admin.password once the password changes, so up writes the new one down first (pending)
// and keeps it after. Whichever side of the change a run stopped on, the next one finishes.
func TestUpRecoversFromARunThatStoppedAroundThePasswordChange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// prepare leaves the state dir as a stopped run would, given the fake.
		prepare func(t *testing.T, dir string, fake *nexusemulator.Server, url string)
		// readsInitial says whether the rerun must read admin.password again.
		readsInitial bool
		want         string
	}{
		{"stopped after the change, before keeping the password", func(t *testing.T, dir string, fake *nexusemulator.Server, url string) {
			s := stackFor(t, dir, newRecorder(), url)
			if err := s.Up(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, bootstrap.NexusPasswordFile), filepath.Join(dir, bootstrap.NexusPasswordFile+".pending")); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
		{"stopped after writing the pending password, before the change", func(t *testing.T, dir string, _ *nexusemulator.Server, _ string) {
			if err := os.WriteFile(filepath.Join(dir, bootstrap.NexusPasswordFile+".pending"), []byte("planned-password\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, "planned-password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := nexusemulator.New("initial-from-volume")
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			dir := t.TempDir()
			tc.prepare(t, dir, fake, srv.URL)
			rec := newRecorder()
			if err := stackFor(t, dir, rec, srv.URL).Up(context.Background()); err != nil {
				t.Fatalf("the rerun: %v", err)
			}
			pw, err := os.ReadFile(filepath.Join(dir, bootstrap.NexusPasswordFile))
			if err != nil || strings.TrimSpace(string(pw)) != fake.Password("admin") {
				t.Fatalf("kept password %q (%v), Nexus has %q", pw, err, fake.Password("admin"))
			}
			if tc.want != "" && fake.Password("admin") != tc.want {
				t.Errorf("Nexus has %q, want the pending %q", fake.Password("admin"), tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, bootstrap.NexusPasswordFile+".pending")); !os.IsNotExist(err) {
				t.Errorf("the pending password is left behind: %v", err)
			}
			read := slices.ContainsFunc(rec.docker(), func(c string) bool { return strings.Contains(c, "admin.password") })
			if read != tc.readsInitial {
				t.Errorf("read admin.password: %v, want %v", read, tc.readsInitial)
			}
		})
	}
}

func TestRegistryOnlyStopsBeforeTheCluster(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	var out bytes.Buffer
	s := &bootstrap.Stack{StateDir: dir, Out: &out, Timeout: time.Second, Poll: time.Millisecond, RegistryOnly: true}
	bootstrap.DryRun{Out: &out}.Apply(s)
	if err := s.Up(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "POST https://127.0.0.1:443/service/rest/v1/repositories/docker/hosted") {
		t.Errorf("the repository was not provisioned:\n%s", got)
	}
	for _, not := range []string{"kind create cluster", "kubectl apply", "docker network connect"} {
		if strings.Contains(got, not) {
			t.Errorf("--registry-only went on to %q:\n%s", not, got)
		}
	}
	if !strings.Contains(got, "done: push to nexus.local/my-docker/<image> as admin") {
		t.Errorf("no closing line saying how to push:\n%s", got)
	}
}
