//go:build !lean

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/scheme"
)

func newNodeCommand() *cobra.Command {
	node := &cobra.Command{
		Use:   "node",
		Short: "Configure a plain host (no Kubernetes) for private registries",
	}
	var file, root, hostsFile, runtime, clientCerts string
	var probe bool
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Write a container runtime's registry configuration and /etc/hosts entries from RegistryMirrors in FILE",
		Long: `Applies the RegistryMirrors in FILE (YAML, several documents allowed; "-" reads
standard input) to this host exactly as the node agent would, in --runtime's format:

  containerd  hosts.toml and ca.crt per host under --root (config_path,
              default /etc/containerd/certs.d)
  crio        a registries.conf.d/regwire-<mirror>.conf drop-in and certs.d/<host>/ca.crt
              under --root (default /etc/containers), read by CRI-O, podman, skopeo and
              buildah; with /etc/containers, a CRI-O running here gets SIGHUP to
              reload them
  docker      <host>/ca.crt under --root (default /etc/docker/certs.d), read by Docker
              Engine on each connection

and regwire's block in --hosts-file. Files regwire wrote before and FILE no longer asks
for are removed, and foreign files it replaced are restored; an empty FILE releases
everything. Other files under --root are never changed. caFrom needs a cluster: give
caBundle; so does clientCertificateSecretRef: give --client-certificates DIR holding
<mirror>.crt and <mirror>.key (client.key is written with mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt := v1alpha1.ContainerRuntime(runtime)
			if _, ok := defaultRoots[rt]; !ok {
				return fmt.Errorf("--runtime %q: want containerd, crio or docker", runtime)
			}
			if !cmd.Flags().Changed("root") {
				root = defaultRoots[rt]
			}
			mirrors, err := readMirrors(file, cmd.InOrStdin(), clientCerts)
			if err != nil {
				return err
			}
			return nodeApply(cmd.Context(), cmd.OutOrStdout(), mirrors, rt, root, hostsFile, probe)
		},
	}
	f := apply.Flags()
	f.StringVarP(&file, "filename", "f", "", `file of RegistryMirrors ("-" for standard input)`)
	f.StringVar(&runtime, "runtime", string(v1alpha1.RuntimeContainerd), "the container runtime whose format to write: containerd, crio or docker")
	f.StringVar(&root, "root", defaultRoots[v1alpha1.RuntimeContainerd], "the runtime's registry configuration root (default per --runtime: /etc/containerd/certs.d, /etc/containers, /etc/docker/certs.d)")
	f.StringVar(&hostsFile, "hosts-file", "/etc/hosts", `hosts file for hostAliases; "" leaves it alone`)
	f.BoolVar(&probe, "probe", false, "probe each registry after applying")
	f.StringVar(&clientCerts, "client-certificates", "", "directory holding <mirror>.crt and <mirror>.key for mirrors with spec.clientCertificateSecretRef (the layout of the agents' Secret)")
	_ = apply.MarkFlagRequired("filename")
	node.AddCommand(apply)
	return node
}

// defaultRoots are each runtime's registry configuration root on a standard host.
var defaultRoots = map[v1alpha1.ContainerRuntime]string{
	v1alpha1.RuntimeContainerd: "/etc/containerd/certs.d",
	v1alpha1.RuntimeCRIO:       "/etc/containers",
	v1alpha1.RuntimeDocker:     "/etc/docker/certs.d",
}

// strictYAML decodes regwire objects from YAML, refusing unknown and duplicate fields
// (made on first use: building the scheme costs every command a few milliseconds).
var strictYAML = sync.OnceValue(func() *kjson.Serializer {
	s := scheme.New()
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
})

// readMirrors decodes every RegistryMirror in file, refusing unknown fields and kinds.
func readMirrors(file string, stdin io.Reader, clientCerts string) ([]nodeconfig.Mirror, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	var out []nodeconfig.Mirror
	dec := utilyaml.NewDocumentDecoder(io.NopCloser(bytes.NewReader(data)))
	buf := make([]byte, len(data)+1)
	for doc := 1; ; doc++ {
		n, err := dec.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, doc, err)
		}
		raw := bytes.TrimSpace(buf[:n])
		if len(raw) == 0 || string(raw) == "---" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, doc, err)
		}
		if tm.APIVersion != v1alpha1.GroupVersion.String() || tm.Kind != "RegistryMirror" {
			return nil, fmt.Errorf("%s: document %d is %s %s, want %s RegistryMirror", file, doc, tm.APIVersion, tm.Kind, v1alpha1.GroupVersion)
		}
		rm := &v1alpha1.RegistryMirror{}
		// Kubernetes' strict decoder names unknown fields by path (spec.hots), like kubectl.
		if _, _, err := strictYAML().Decode(raw, nil, rm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, doc, err)
		}
		if rm.Spec.CAFrom != nil {
			return nil, fmt.Errorf("%s: RegistryMirror %s: spec.caFrom reads a Secret or ConfigMap from a cluster; on a plain host put the PEM in spec.caBundle", file, rm.Name)
		}
		m := nodeconfig.Mirror{Name: rm.Name, Created: rm.CreationTimestamp.Time, Spec: rm.Spec, CA: []byte(rm.Spec.CABundle)}
		if rm.Spec.ClientCertificateSecretRef != nil {
			if clientCerts == "" {
				return nil, fmt.Errorf("%s: RegistryMirror %s: spec.clientCertificateSecretRef reads a Secret from a cluster; on a plain host give --client-certificates DIR holding %s.crt and %s.key", file, rm.Name, rm.Name, rm.Name)
			}
			certName, keyName := nodeconfig.ClientCertificateKeys(rm.Name)
			if m.ClientCert, err = os.ReadFile(filepath.Join(clientCerts, certName)); err == nil {
				m.ClientKey, err = os.ReadFile(filepath.Join(clientCerts, keyName))
			}
			if err != nil {
				return nil, fmt.Errorf("RegistryMirror %s: --client-certificates: %w", rm.Name, err)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// nodeApply renders and applies mirrors to this host, printing what changed.
func nodeApply(ctx context.Context, out io.Writer, mirrors []nodeconfig.Mirror, rt v1alpha1.ContainerRuntime, root, hostsFile string, probeAfter bool) error {
	cfg := nodeconfig.RenderFor(rt, mirrors)
	var problems []error
	for _, e := range cfg.Errors {
		problems = append(problems, e)
	}
	for _, c := range cfg.Conflicts {
		problems = append(problems, fmt.Errorf("RegistryMirror %s: %s", c.Mirror, c))
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	files, err := nodefiles.OpenFor(rt, root)
	if err != nil {
		return err
	}
	defer files.Close()
	changes, err := files.ApplyOwned(nodefiles.Desired{Files: cfg.Files, Owners: cfg.FileOwners()})
	for _, c := range changes {
		fmt.Fprintf(out, "%-9s %s\n", c.Action, c.Path)
	}
	if err != nil {
		return err
	}
	if len(changes) > 0 && filepath.Clean(root) == defaultRoots[v1alpha1.RuntimeCRIO] {
		// The host's own /etc/containers: a CRI-O running here reloads its registries on
		// SIGHUP, as the agent makes it.
		if err := nodeagent.ReloadCRIO("/proc")(ctx, rt); err != nil {
			problems = append(problems, err)
		}
	}
	if hostsFile != "" {
		entries := make([]hostsfile.Entry, 0, len(cfg.HostsEntries))
		for _, e := range cfg.HostsEntries {
			entries = append(entries, hostsfile.Entry{IP: e.IP, Hostnames: e.Hostnames, Owner: e.Mirror})
		}
		changed, err := nodefiles.ApplyHostsFile(hostsFile, entries)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(out, "%-9s %s (%d entries)\n", nodefiles.Written, hostsFile, len(entries))
		}
	}
	if len(changes) == 0 {
		fmt.Fprintln(out, "registry configuration is up to date")
	}
	if probeAfter {
		for _, m := range mirrors {
			res := probe.Prober{HostsFile: hostsFile}.Probe(ctx, m)
			if res.Reachable {
				fmt.Fprintf(out, "probe     %s: reachable (HTTP %d)\n", m.Spec.Host, res.StatusCode)
			} else {
				problems = append(problems, fmt.Errorf("probe %s: %s", m.Spec.Host, res.Err))
			}
		}
	}
	return errors.Join(problems...)
}
