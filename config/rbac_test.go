package config_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// designed is every permission regwire's install grants, by role: what
// docs/architecture.md ("Who reads and writes what") justifies. A role
// that gains a permission fails this test until the design (and this table) says why.
var designed = map[string][]string{
	// Cluster-wide: the manager watches and writes pull secrets in every selected
	// namespace, reads credentials Secrets where RegistryMirrors and ImageSyncs name them,
	// and keeps only Secret metadata in its cache; it lists and watches Pods (their images
	// alone are cached) once a RegistryMirror keeps images in use.
	"ClusterRole/regwire-manager-role": {
		"/configmaps:get",
		"/namespaces:get,list,watch", "/nodes:get,list,watch", "/pods:list,watch",
		"/secrets:create,delete,get,list,patch,update,watch",
		"/serviceaccounts:get,list,patch,watch",
		"events.k8s.io/events:create,patch",
		"regwire.dev/imagesyncs:get,list,patch,update,watch", "regwire.dev/registrymirrors:get,list,patch,update,watch",
		"regwire.dev/imagesyncs/status:get,patch,update", "regwire.dev/registrymirrors/status:get,patch,update",
		"regwire.dev/registrymirrors/finalizers:update",
		"regwire.dev/registrynodes:get,list,watch",
	},
	// In the operator namespace only: published mirrors and the agent DaemonSet; the
	// manager's own Pod, ReplicaSet and Deployment, read once to make the Deployment the
	// DaemonSet's owner (so that uninstalling removes the agents).
	"Role/regwire-manager-role": {
		"/configmaps:create,delete,get,list,patch,update,watch",
		"/pods:get",
		"apps/daemonsets:create,get,list,patch,update,watch",
		"apps/deployments:get", "apps/replicasets:get",
	},
	"Role/regwire-leader-election-role": {
		"coordination.k8s.io/leases:create,delete,get,list,patch,update,watch",
		"events.k8s.io/events:create,patch",
	},
	// The agent: published mirrors in the operator namespace, the Secrets of client
	// certificates there (get, by name: every one nodeconfig may put a pair in), Nodes
	// (list/watch cannot be narrowed to its own name), and its RegistryNode report. No
	// other Secret, no RegistryMirrors.
	"Role/regwire-agent-role":        {"/configmaps:get,list,watch", "/secrets[" + strings.Join(slices.Sorted(slices.Values(nodeconfig.ClientCertificatesSecrets())), ",") + "]:get"},
	"ClusterRole/regwire-agent-role": {"/nodes:get,list,watch", "regwire.dev/registrynodes:create,get,list,patch,update,watch"},
}

// permissions flattens a role's rules into "group/resource:verbs" (with [names] for rules
// narrowed by resourceNames), and reports wildcards and non-resource URLs.
func permissions(role *unstructured.Unstructured) ([]string, []string) {
	var out, problems []string
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rules {
		m, _ := r.(map[string]any)
		strs := func(k string) []string {
			s, _, _ := unstructured.NestedStringSlice(m, k)
			return s
		}
		groups, resources, verbs := strs("apiGroups"), strs("resources"), slices.Clone(strs("verbs"))
		slices.Sort(verbs)
		for _, list := range [][]string{groups, resources, verbs, strs("resourceNames"), strs("nonResourceURLs")} {
			if slices.Contains(list, "*") {
				problems = append(problems, fmt.Sprintf("wildcard in %v", m))
			}
		}
		if len(strs("nonResourceURLs")) > 0 {
			problems = append(problems, fmt.Sprintf("rule by URL, not modelled here: %v", m))
		}
		names := ""
		if n := strs("resourceNames"); len(n) > 0 {
			names = "[" + strings.Join(slices.Sorted(slices.Values(n)), ",") + "]"
		}
		for _, g := range groups {
			for _, res := range resources {
				out = append(out, g+"/"+res+names+":"+strings.Join(verbs, ","))
			}
		}
	}
	slices.Sort(out)
	return out, problems
}

// TestRBACGrantsExactlyTheDesignedPermissions reads the RBAC of the install and fails on
// wildcards, on Secret access anywhere but the manager's documented ClusterRole, and on any
// permission the design does not list.
func TestRBACGrantsExactlyTheDesignedPermissions(t *testing.T) {
	t.Parallel()
	objs, err := config.Install("")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		key := o.GetKind() + "/" + o.GetName()
		seen[key] = true
		got, problems := permissions(o)
		for _, p := range problems {
			t.Errorf("%s: %s", key, p)
		}
		want, ok := designed[key]
		if !ok {
			t.Errorf("%s is not in the design: %v", key, got)
			continue
		}
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s grants\n  %v\nthe design says\n  %v", key, got, want)
		}
		for _, p := range got {
			agentsOwn := key == "Role/regwire-agent-role" && strings.HasPrefix(p, "/secrets[regwire-node-client-certificates-0,")
			if strings.HasPrefix(p, "/secrets") && key != "ClusterRole/regwire-manager-role" && !agentsOwn {
				t.Errorf("%s may touch Secrets (%s); only the manager's ClusterRole may, and the agents their client certificates' Secrets by name", key, p)
			}
		}
	}
	for key := range designed {
		if !seen[key] {
			t.Errorf("the install has no %s", key)
		}
	}
}

func TestThePermissionCheckCatchesWildcardsAndExtras(t *testing.T) {
	t.Parallel()
	role := &unstructured.Unstructured{Object: map[string]any{"kind": "Role", "rules": []any{
		map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"*"}},
	}}}
	got, problems := permissions(role)
	if len(problems) == 0 || !slices.Equal(got, []string{"/secrets:*"}) {
		t.Errorf("permissions = %v, problems %v; want the wildcard reported", got, problems)
	}
}
