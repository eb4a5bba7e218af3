package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/config"
)

// TestOnlyUsersMayUseAMirrorTheyAreGranted installs config/admission on a real API server
// with RBAC. A user who may create ImageSyncs in team-a, and nothing else, is refused one
// naming a RegistryMirror (the message says which verb to ask for), may create one with
// an explicit target, and may name the mirror once a RoleBinding in team-a grants them use
// on it; another mirror stays refused.
func TestOnlyUsersMayUseAMirrorTheyAreGranted(t *testing.T) {
	ctx := context.Background()
	objs, err := config.MirrorUsePolicy()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	create := func(o client.Object) {
		t.Helper()
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
	for _, name := range []string{"shared", "other"} {
		m := validMirror()
		m.GenerateName, m.Name = "", name
		create(m)
	}
	create(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "imagesync-editor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"regwire.dev"}, Resources: []string{"imagesyncs"}, Verbs: []string{"create", "get", "update"}}}})
	create(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "alice-edits-imagesyncs"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "imagesync-editor"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}})
	cfg, err := cp.UserConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	syncTo := func(mirror string) *v1alpha1.ImageSync {
		is := validSync()
		is.Namespace = "team-a"
		is.Spec.Target.RegistryMirrorRef.Name = mirror
		return is
	}

	// The policy takes effect once the API server has loaded it.
	var refusal error
	deadline := time.Now().Add(30 * time.Second)
	for {
		refusal = alice.Create(ctx, syncTo("shared"), client.DryRunAll)
		if refusal != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !apierrors.IsForbidden(refusal) && !apierrors.IsInvalid(refusal) || !strings.Contains(refusal.Error(), "alice may not use RegistryMirror shared in namespace team-a; ask for the verb use on registrymirrors/shared") {
		t.Fatalf("an ImageSync naming a mirror alice may not use: %v", refusal)
	}
	explicit := validSync()
	explicit.Namespace = "team-a"
	explicit.Spec.Target = v1alpha1.ImageTarget{Image: "registry.example/team-a/busybox"}
	if err := alice.Create(ctx, explicit, client.DryRunAll); err != nil {
		t.Errorf("an ImageSync with an explicit target was refused: %v", err)
	}

	create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "use-shared-mirror"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"regwire.dev"}, Resources: []string{"registrymirrors"}, ResourceNames: []string{"shared"}, Verbs: []string{"use"}}}})
	create(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "alice-uses-shared"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "use-shared-mirror"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}})
	deadline = time.Now().Add(30 * time.Second)
	for {
		err = alice.Create(ctx, syncTo("shared"), client.DryRunAll)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("with use on registrymirrors/shared bound in team-a: %v", err)
	}
	if err := alice.Create(ctx, syncTo("other"), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "may not use RegistryMirror other") {
		t.Errorf("use on one mirror let alice name another: %v", err)
	}
}

// TestAnAgentWritesOnlyItsOwnNodesRegistryNode installs the policy dist and the chart
// carry, and writes RegistryNodes as the agent's ServiceAccount would from a pod on node-a
// (its token names the node: authentication.kubernetes.io/node-name), with RBAC that lets
// it write every RegistryNode. node-a's own is written; node-b's is refused, and so is any
// write with a token bound to no node.
func TestAnAgentWritesOnlyItsOwnNodesRegistryNode(t *testing.T) {
	ctx := context.Background()
	objs, err := config.Install("")
	if err != nil {
		t.Fatal(err)
	}
	create := func(o client.Object) {
		t.Helper()
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	policies := 0
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") && strings.Contains(o.GetName(), "registrynode") {
			create(o)
			policies++
		}
	}
	if policies != 2 {
		t.Fatalf("the install carries %d of the agent's policy objects, want the policy and its binding", policies)
	}
	const agent = "system:serviceaccount:regwire-system:regwire-agent"
	create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-agent-writes-registrynodes"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"regwire.dev"}, Resources: []string{"registrynodes"}, Verbs: []string{"get", "create", "update", "patch"}}}})
	create(&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-agent-writes-registrynodes"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-agent-writes-registrynodes"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "regwire-system", Name: "regwire-agent"}}})
	for _, n := range []string{"node-a", "node-b"} {
		create(&v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	as := func(extra map[string][]string) client.Client {
		cfg := rest.CopyConfig(cp.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: agent, Groups: []string{"system:serviceaccounts", "system:authenticated"}, Extra: extra}
		c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	onNodeA := as(map[string][]string{"authentication.kubernetes.io/node-name": {"node-a"}})
	label := func(c client.Client, node string) error {
		rn := &v1alpha1.RegistryNode{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: node}, rn); err != nil {
			return err
		}
		rn.Labels = map[string]string{"written": fmt.Sprint(time.Now().UnixNano())}
		return c.Update(ctx, rn)
	}
	// The policy takes effect once the API server has loaded it.
	var refusal error
	deadline := time.Now().Add(30 * time.Second)
	for refusal = label(onNodeA, "node-b"); refusal == nil && time.Now().Before(deadline); refusal = label(onNodeA, "node-b") {
		time.Sleep(100 * time.Millisecond)
	}
	if refusal == nil || !strings.Contains(refusal.Error(), "the node agent may write only its own node's RegistryNode: "+agent+" on node node-a wrote RegistryNode node-b") {
		t.Fatalf("the agent on node-a updating node-b's RegistryNode: %v", refusal)
	}
	if err := label(onNodeA, "node-a"); err != nil {
		t.Errorf("the agent on node-a updating its own RegistryNode: %v", err)
	}
	if err := onNodeA.Create(ctx, &v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}, client.DryRunAll); err == nil {
		t.Error("the agent on node-a created node-c's RegistryNode")
	}
	if err := label(as(nil), "node-a"); err == nil || !strings.Contains(err.Error(), "the token is not bound to a pod on a node") {
		t.Errorf("an agent token bound to no node: %v", err)
	}
}
