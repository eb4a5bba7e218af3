package bootstrap_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestRenderWritesFilesTheirConsumersAccept renders a state directory and hands each file
// to its real consumer: docker-compose.yaml to compose-go's loader (what `docker compose`
// runs, schema included), nginx.conf to `nginx -t`, and reruns change nothing.
func TestRenderWritesFilesTheirConsumersAccept(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	r, err := bootstrap.Render(dir, bootstrap.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.PKI.CAIssued {
		t.Error("the first render issued no CA")
	}
	for _, f := range r.Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, bootstrap.ComposeFile)}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("regwire", true) })
	if err != nil {
		t.Fatalf("compose loader: %v", err)
	}
	nexus, err := p.GetService(bootstrap.NexusService)
	if err != nil || nexus.HealthCheck == nil || len(nexus.Volumes) != 1 || nexus.Volumes[0].Source != bootstrap.NexusVolume {
		t.Errorf("nexus service: %+v %v", nexus, err)
	}
	proxy, err := p.GetService(bootstrap.ProxyService)
	if err != nil || proxy.DependsOn[bootstrap.NexusService].Condition != types.ServiceConditionHealthy || len(proxy.Ports) != 2 {
		t.Errorf("proxy service: %+v %v", proxy, err)
	}
	for _, v := range proxy.Volumes {
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("proxy mounts %s, which render did not write: %v", v.Source, err)
		}
	}

	// nginx -t with the paths it will see in the container mapped onto the state dir.
	conf, err := os.ReadFile(filepath.Join(dir, bootstrap.NginxConfFile))
	if err != nil {
		t.Fatal(err)
	}
	local := strings.ReplaceAll(string(conf), "/etc/nginx/ssl/", filepath.Join(dir, bootstrap.TLSDir)+"/")
	local = strings.Replace(local, "server nexus:8081;", "server 127.0.0.1:8081;", 1)
	local = strings.Replace(local, "worker_processes auto;", "worker_processes auto;\npid "+filepath.Join(dir, "nginx.pid")+";", 1)
	localPath := filepath.Join(dir, "nginx-local.conf")
	if err := os.WriteFile(localPath, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := testutil.CheckNginx(t, localPath); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}

	before := testutil.Snapshot(t, dir)
	if _, err := bootstrap.Render(dir, bootstrap.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if after := testutil.Snapshot(t, dir); len(after) != len(before) {
		t.Errorf("a rerun changed the file set: %v -> %v", before, after)
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Errorf("a rerun changed %s", k)
			}
		}
	}
}

// TestKindAcceptsTheClusterConfig feeds the kind config to kind's own library: its loader
// (strict decoding) and its validation, which run before any container is made. A fake
// docker on PATH answers kind's provider checks and stops kind at the first command that
// would create something, so reaching it proves the config was accepted.
func TestKindAcceptsTheClusterConfig(t *testing.T) {
	bin := t.TempDir()
	refused := filepath.Join(bin, "refused")
	fake := `#!/bin/sh
case "$1" in
  info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true}' ;;
  ps) ;;
  inspect) echo '[]' ;;
  *) echo "$*" >> "` + refused + `"; echo "regwire-fake-docker: stopping at: $*" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if p, _ := exec.LookPath("docker"); p != filepath.Join(bin, "docker") {
		t.Fatalf("docker resolves to %s", p)
	}
	dir := t.TempDir()
	if _, err := bootstrap.Render(dir, bootstrap.RenderOptions{Kind: bootstrap.KindOptions{Name: "regwire-test", Workers: 1}}); err != nil {
		t.Fatal(err)
	}
	create := func(path string) error {
		return cluster.NewProvider(cluster.ProviderWithDocker()).Create("", cluster.CreateWithConfigFile(path), cluster.CreateWithKubeconfigPath(filepath.Join(dir, "kubeconfig")))
	}
	stoppedAt := func() string {
		b, _ := os.ReadFile(refused)
		_ = os.Remove(refused)
		return string(b)
	}
	err := create(filepath.Join(dir, bootstrap.KindConfigFile))
	if at := stoppedAt(); err == nil || at == "" {
		t.Fatalf("kind did not accept the config: %v", err)
	} else {
		t.Logf("kind accepted the config and went on to create the cluster: docker %s", strings.SplitN(at, "\n", 2)[0])
	}
	// The check can fail: kind refuses a config with an unknown field before any docker
	// command that creates something.
	raw, _ := os.ReadFile(filepath.Join(dir, bootstrap.KindConfigFile))
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, append(raw, []byte("notAField: true\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := create(bad); err == nil || stoppedAt() != "" {
		t.Errorf("kind accepted an unknown field: %v", err)
	} else {
		t.Logf("kind refused a broken config: %v", err)
	}
}

func TestAKindConfigOfOnesOwnIsKeptAndWiredForTheAgent(t *testing.T) {
	t.Parallel()
	own := []byte(`kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: ignored
nodes:
- role: control-plane
  extraMounts:
  - hostPath: /opt/runc-hostcaps
    containerPath: /usr/local/bin/runc-hostcaps
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  failCgroupV1: false
`)
	out, err := bootstrap.RenderKind(bootstrap.KindOptions{Name: "regwire", Workers: 3, NodeImage: "example/node:v1", Config: own})
	if err != nil {
		t.Fatal(err)
	}
	var c v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "regwire" || len(c.Nodes) != 1 || c.Nodes[0].Image != "example/node:v1" || len(c.Nodes[0].ExtraMounts) != 1 {
		t.Errorf("name %q nodes %+v: want regwire's name, the config's one node with its mount and the node image", c.Name, c.Nodes)
	}
	if len(c.ContainerdConfigPatches) != 2 || !strings.Contains(c.ContainerdConfigPatches[0], "restrict_oom_score_adj") ||
		!strings.Contains(c.ContainerdConfigPatches[1], `config_path = "/etc/containerd/certs.d"`) || len(c.KubeadmConfigPatches) != 1 {
		t.Errorf("patches %q %q: want the config's, then regwire's config_path", c.ContainerdConfigPatches, c.KubeadmConfigPatches)
	}
	for _, bad := range []string{"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnotAField: 1\n", "kind: Pod\napiVersion: v1\n"} {
		if _, err := bootstrap.RenderKind(bootstrap.KindOptions{Config: []byte(bad)}); err == nil || !strings.Contains(err.Error(), "kind config") {
			t.Errorf("config %q: %v, want an error naming the kind config", bad, err)
		}
	}
}
