//go:build !lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/manifest"
	"github.com/regwire/regwire/internal/nodeapply"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/runtimeconfig"
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
				return usage(fmt.Errorf("--runtime %q: want containerd, crio or docker", runtime))
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

// readMirrors decodes every RegistryMirror in file ("-": stdin), refusing unknown fields
// and other kinds, for this host (nodeapply.PlainHostMirror).
func readMirrors(file string, stdin io.Reader, clientCerts string) ([]nodeconfig.Mirror, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usage(err)
	}
	docs, err := manifest.Split(data)
	if err != nil {
		return nil, usage(fmt.Errorf("%s: %w", file, err))
	}
	var out []nodeconfig.Mirror
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc.Raw, &tm); err != nil {
			return nil, usage(fmt.Errorf("%s: document %d: %w", file, doc.Index, err))
		}
		if tm.APIVersion != v1alpha1.GroupVersion.String() || tm.Kind != "RegistryMirror" {
			return nil, usage(fmt.Errorf("%s: document %d is %s %s, want %s RegistryMirror", file, doc.Index, tm.APIVersion, tm.Kind, v1alpha1.GroupVersion))
		}
		rm := &v1alpha1.RegistryMirror{}
		// Kubernetes' strict decoder names unknown fields by path (spec.hots), like kubectl.
		if _, _, err := strictYAML().Decode(doc.Raw, nil, rm); err != nil {
			return nil, usage(fmt.Errorf("%s: document %d: %w", file, doc.Index, err))
		}
		m, err := nodeapply.PlainHostMirror(rm, clientCerts)
		if err != nil {
			return nil, usage(fmt.Errorf("%s: %w", file, err))
		}
		out = append(out, m)
	}
	return out, nil
}

// nodeApply writes mirrors to this host in rt's format through the node pipeline the agent
// uses, printing what changed.
func nodeApply(ctx context.Context, out io.Writer, mirrors []nodeconfig.Mirror, rt v1alpha1.ContainerRuntime, root, hostsFile string, probeAfter bool) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	files, err := nodefiles.OpenFor(rt, root)
	if err != nil {
		return err
	}
	defer files.Close()
	node := &nodeapply.Node{Roots: map[v1alpha1.ContainerRuntime]*nodefiles.Files{rt: files}, HostsFile: hostsFile}
	if rt == v1alpha1.RuntimeCRIO && filepath.Clean(root) == defaultRoots[v1alpha1.RuntimeCRIO] {
		// The host's own /etc/containers: a CRI-O running here reloads its registries on
		// SIGHUP, as the agent makes it, and its other drop-ins are checked.
		node.Reload, node.CRIORoot = nodeapply.ReloadCRIO("/proc"), root
	}
	// Every mirror in --runtime's format, whatever its spec.runtimes: the user chose it.
	for i := range mirrors {
		mirrors[i].Spec.Runtimes = nil
	}
	plan := node.Plan(runtimeconfig.Runtime{Name: rt}, mirrors)
	res, applyErr := node.Apply(ctx, plan)
	for _, c := range res.Changes {
		fmt.Fprintf(out, "%-9s %s\n", c.Action, c.Path)
	}
	if res.HostsChanged {
		fmt.Fprintf(out, "%-9s %s (%d entries)\n", nodefiles.Written, hostsFile, res.HostsEntries)
	}
	if applyErr != nil {
		return applyErr
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(out, "registry configuration is up to date")
	}
	notes := plan.Notes()
	for _, name := range slices.Sorted(maps.Keys(notes)) {
		for _, n := range notes[name] {
			fmt.Fprintf(out, "note      RegistryMirror %s: %s\n", name, n)
		}
	}
	var problems []error
	byMirror := plan.Problems()
	for _, name := range slices.Sorted(maps.Keys(byMirror)) {
		problems = append(problems, fmt.Errorf("RegistryMirror %s: %s", name, byMirror[name].Message))
	}
	if probeAfter {
		for _, m := range mirrors {
			results, chosen := nodeapply.ProbeEndpoints(ctx, m, probe.Prober{HostsFile: hostsFile}.Probe)
			if res := results[chosen]; res.Reachable {
				fmt.Fprintf(out, "probe     %s: reachable (HTTP %d)\n", m.Spec.Host, res.StatusCode)
			} else {
				problems = append(problems, fmt.Errorf("probe %s: %s", m.Spec.Host, res.Err))
			}
		}
	}
	return errors.Join(problems...)
}
