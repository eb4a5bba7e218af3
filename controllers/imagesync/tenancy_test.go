package imagesync_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAMirrorServesOnlyTheNamespacesAndRepositoriesItNames: a RegistryMirror lets
// namespaces labelled team=true write my-docker/{namespace}/**. An ImageSync from an
// unlabelled namespace, one from a labelled namespace writing another team's repository,
// and one targeting a mirror that allows no namespace are all refused (TargetNotAllowed,
// naming the field) without one request to either registry; an allowed one copies, and
// labelling the refused namespace lets its ImageSync copy without any change to it.
func TestAMirrorServesOnlyTheNamespacesAndRepositoriesItNames(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, src.Host+"/library/app:1", 1024, 1)
	var toSource, toTarget atomic.Int64
	source := testutil.StartHostile(t, src, func(*testutil.Hostile, http.ResponseWriter, *http.Request) bool { toSource.Add(1); return false })
	target := testutil.StartHostile(t, dst, func(*testutil.Hostile, http.ResponseWriter, *http.Request) bool { toTarget.Add(1); return false })

	env.NewMirror(t, "team-mirror", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(target.Host())
		rm.Spec.InsecureSkipVerify = true
		rm.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "true"}},
			Repositories:      []v1alpha1.RepositoryPattern{"my-docker/{namespace}/**"},
		}
	})
	env.NewMirror(t, "private-mirror", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(target.Host())
		rm.Spec.InsecureSkipVerify = true
	})
	env.CreateNamespace(t, "team-a", map[string]string{"team": "true"})
	env.CreateNamespace(t, "intruder", nil)

	sync := func(namespace, name, mirror, repository string) *v1alpha1.ImageSync {
		is := &v1alpha1.ImageSync{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec: v1alpha1.ImageSyncSpec{
				Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host() + "/library/app"), Tags: []string{"1"}},
				Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: mirror}, Repository: repository},
			},
		}
		if err := env.Create(ctx, is); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Delete(context.Background(), is) })
		return is
	}
	refused := []struct {
		is   *v1alpha1.ImageSync
		want string
	}{
		{sync("intruder", "app", "team-mirror", "my-docker/intruder/app"), "spec.imageSyncs.namespaceSelector (team=true) does not select namespace intruder"},
		{sync("team-a", "squatter", "team-mirror", "my-docker/team-b/app"), `spec.target.repository "my-docker/team-b/app" is not one RegistryMirror team-mirror lets namespace team-a write (spec.imageSyncs.repositories: [my-docker/team-a/**])`},
		{sync("team-a", "private", "private-mirror", "my-docker/team-a/app"), "takes ImageSyncs from namespace " + envtest.Namespace + " only (its spec.imageSyncs is unset)"},
	}
	for _, r := range refused {
		c := settledReady(t, r.is)
		if c.Status != metav1.ConditionFalse || c.Reason != string(v1alpha1.ReasonTargetNotAllowed) || !strings.Contains(c.Message, r.want) {
			t.Errorf("%s/%s: Ready = %s/%s %q, want False/TargetNotAllowed saying %q", r.is.Namespace, r.is.Name, c.Status, c.Reason, c.Message, r.want)
		}
	}
	if s, d := toSource.Load(), toTarget.Load(); s != 0 || d != 0 {
		t.Errorf("refused ImageSyncs sent %d requests to the source and %d to the target, want 0", s, d)
	}

	// The allowed one copies: the refusals above were not for want of a working path.
	allowed := sync("team-a", "app", "team-mirror", "my-docker/team-a/app")
	if c := settledReady(t, allowed); c.Status != metav1.ConditionTrue {
		t.Fatalf("the allowed ImageSync: Ready = %s/%s %q", c.Status, c.Reason, c.Message)
	}
	if toSource.Load() == 0 || toTarget.Load() == 0 {
		t.Error("the allowed copy reached neither registry")
	}

	// Labelling the namespace brings its ImageSync back, unchanged, and it copies.
	ns := &corev1.Namespace{}
	if err := env.Get(ctx, client.ObjectKey{Name: "intruder"}, ns); err != nil {
		t.Fatal(err)
	}
	env.Mutate(t, ns, func() { ns.Labels = map[string]string{"team": "true"} })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c := settledReady(t, refused[0].is); c.Status == metav1.ConditionTrue {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after labelling its namespace: Ready = %s/%s %q", c.Status, c.Reason, c.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSourceCredentialsGoOnlyToTheirHost: a user who may create ImageSyncs but not read
// Secrets names a basic-auth Secret of their namespace and points the source at a registry
// they run. Unless the Secret's regwire.dev/registry-host annotation names that registry,
// the ImageSync is CredentialsInvalid, naming the annotation, and their registry receives
// no request at all (so no password); with the annotation naming it, the copy runs.
func TestSourceCredentialsGoOnlyToTheirHost(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, src.Host+"/library/app:1", 1024, 1)
	var requests atomic.Int64
	theirs := testutil.StartHostile(t, src, func(*testutil.Hostile, http.ResponseWriter, *http.Request) bool { requests.Add(1); return false })

	secret := func(name string, annotations map[string]string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: name, Annotations: annotations},
			Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"username": "ci", "password": "the-registry-password"}}
		if err := env.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Delete(context.Background(), s) })
	}
	secret("unbound", nil)
	secret("for-ghcr", map[string]string{v1alpha1.RegistryHostAnnotation: "ghcr.io"})
	secret("for-theirs", map[string]string{v1alpha1.RegistryHostAnnotation: "ghcr.io, " + theirs.Host()})
	from := func(name, secretName string) {
		newSync(t, name, func(is *v1alpha1.ImageSync) {
			is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(theirs.Host() + "/library/app"), Tags: []string{"1"},
				CredentialsSecretRef: &v1alpha1.LocalSecretReference{Name: secretName}}
			is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/" + name + "/app")}
		})
	}
	from("with-unbound", "unbound")
	from("with-another-hosts", "for-ghcr")
	for name, want := range map[string]string{
		"with-unbound":       "names no registry host; annotate it regwire.dev/registry-host=" + theirs.Host(),
		"with-another-hosts": "its credentials are for ghcr.io (annotation regwire.dev/registry-host), not for " + theirs.Host(),
	} {
		_, c := syncCondition(t, name, v1alpha1.ConditionReady, v1alpha1.ReasonCredentialsInvalid)
		if !strings.Contains(c.Message, want) || strings.Contains(c.Message, "the-registry-password") {
			t.Errorf("%s: %q, want it to say %q (and never the password)", name, c.Message, want)
		}
	}
	if got := requests.Load(); got != 0 {
		t.Errorf("the user's registry received %d requests for credentials not bound to it, want 0", got)
	}
	from("with-bound", "for-theirs")
	syncReady(t, "with-bound")
	if requests.Load() == 0 {
		t.Error("the copy with credentials bound to the source never reached it")
	}
}

// countingListener listens on addr and counts the connections it accepts (it answers
// nothing); the test ends it.
func countingListener(t *testing.T, addr string) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is not usable here: %v", addr, err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String(), &n
}

// TestTheManagerDoesNotGoWhereATenantPointsIt: the manager allows its test registries on
// 127.0.0.1 and no other loopback address. A source on 127.0.0.2, and a source on 127.0.0.1
// whose token realm is on 127.0.0.2 (where a cloud's metadata service or the manager's own
// pod would be), are refused before a connection: the listeners see none, and the status
// says why and which flag would allow it.
func TestTheManagerDoesNotGoWhereATenantPointsIt(t *testing.T) {
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	guarded, direct := countingListener(t, "127.0.0.2:0")
	realm, viaRealm := countingListener(t, "127.0.0.2:0")
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	withRealm := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="registry"`, realm))
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	newSync(t, "source-on-loopback", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(guarded + "/library/app"), Tags: []string{"1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/guarded/app")}
	})
	realmSync := newSync(t, "realm-on-loopback", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(withRealm.Host() + "/library/app"), Tags: []string{"1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/realm/app")}
	})
	_, c := syncCondition(t, "source-on-loopback", v1alpha1.ConditionReady, v1alpha1.ReasonSourceUnreachable)
	if want := "refused to connect to " + guarded + ", a loopback address"; !strings.Contains(c.Message, want) || !strings.Contains(c.Message, "--allow-source-cidrs") {
		t.Errorf("source-on-loopback: %q, want it to say %q and name --allow-source-cidrs", c.Message, want)
	}
	// A realm written as an IP address go-containerregistry refuses itself; one whose name
	// resolves to such an address meets the guard, which judges the address dialled.
	c = settledReady(t, realmSync)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "realm") && !strings.Contains(c.Message, "refused to connect to "+realm) {
		t.Errorf("realm-on-loopback: %s/%s %q, want the realm refused", c.Status, c.Reason, c.Message)
	}
	if withRealm.Requests.Load() == 0 {
		t.Fatal("the source with the loopback realm was never asked: the test proves nothing")
	}
	if d, r := direct.Load(), viaRealm.Load(); d != 0 || r != 0 {
		t.Errorf("guarded listeners accepted %d (source) and %d (token realm) connections, want 0", d, r)
	}
}

// settledReady waits until is has a Ready condition for its generation and no copy is
// under way, and returns it.
func settledReady(t *testing.T, is *v1alpha1.ImageSync) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	envtest.Eventually(t, func() error {
		cur := &v1alpha1.ImageSync{}
		if err := env.Get(context.Background(), client.ObjectKeyFromObject(is), cur); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || cur.Status.ObservedGeneration != cur.Generation || c.Reason == string(v1alpha1.ReasonSyncing) {
			return fmt.Errorf("Ready = %+v", c)
		}
		got = *c
		return nil
	})
	return got
}
