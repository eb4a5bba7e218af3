// Package load holds the churn test: many namespaces, pull secrets and ImageSyncs created,
// changed and deleted at once against one manager and three node agents.
package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

const (
	operatorNS  = "regwire-system"
	namespaces  = 100
	imageSyncs  = 200
	pullLabel   = "regwire.test/pull"
	churnFor    = 30 * time.Second
	baseHosts   = "127.0.0.1\tlocalhost\n"
	settleAfter = 2 * time.Minute
)

// TestChurnLeavesNothingBehind creates 100 namespaces, two RegistryMirrors with pull
// secrets (and ServiceAccount references) in the labelled ones, three node agents and 200
// ImageSyncs, then for 30 s creates, changes and deletes ImageSyncs, relabels namespaces
// and changes and recreates mirrors from four goroutines at once. Throughout, no condition
// may report an error that is not real (the registries and credentials are fine all along),
// the manager may log no reconcile error and record no Warning event. Afterwards everything
// must settle to exactly what the final objects ask for, and once they are deleted no pull
// secret, ServiceAccount reference, node file or hosts line may be left.
func TestChurnLeavesNothingBehind(t *testing.T) {
	ctx := context.Background()
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	k8s, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	errorLog := startManager(t, cp.Config)

	// The registries: a source and target for the ImageSyncs, and two TLS endpoints the
	// mirrors name (the agents probe them).
	source := testutil.StartRegistry(t, testutil.RegistryOptions{})
	target := testutil.StartRegistry(t, testutil.RegistryOptions{})
	repos := []string{"lib/a", "lib/b", "lib/c", "lib/d"}
	for _, repo := range repos {
		for _, tag := range []string{"1.0", "1.1", "2.0"} {
			img, _ := random.Image(1024, 1)
			if err := remote.Write(testutil.Ref(t, source.Host+"/"+repo+":"+tag), img); err != nil {
				t.Fatal(err)
			}
		}
	}
	ca := testutil.NewCA(t, "churn CA", time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0))
	hosts := []string{testutil.ChallengeServer(t, ca).Listener.Addr().String(), testutil.ChallengeServer(t, ca).Listener.Addr().String()}

	must(t, k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}))
	must(t, k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "creds"},
		Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"username": "u", "password": "churn-password"}}))
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = startNode(t, k8s, cp.Config, fmt.Sprintf("node-%d", i))
	}
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%d", i)}}
		if i%2 == 0 {
			ns.Labels = map[string]string{pullLabel: "yes"}
		}
		must(t, k8s.Create(ctx, ns))
		// envtest runs no ServiceAccount controller: make the "default" ServiceAccount.
		must(t, k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}))
	}
	mirror := func(i, gen int) *v1alpha1.RegistryMirror {
		return &v1alpha1.RegistryMirror{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mirror-%d", i)},
			Spec: v1alpha1.RegistryMirrorSpec{
				Host:                 v1alpha1.RegistryHost(hosts[i]),
				CABundle:             ca.PEM,
				CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: operatorNS, Name: "creds"},
				HostAliases:          []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{v1alpha1.Hostname(fmt.Sprintf("m%d-g%d.example", i, gen))}}},
				PullSecrets: &v1alpha1.PullSecretsSpec{SecretName: fmt.Sprintf("pull-%d", i), ServiceAccounts: []string{"default"},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{pullLabel: "yes"}}},
			},
		}
	}
	for i := range hosts {
		must(t, k8s.Create(ctx, mirror(i, 0)))
	}
	syncSpec := func(rng *rand.Rand, ns, name string) v1alpha1.ImageSyncSpec {
		spec := v1alpha1.ImageSyncSpec{
			Source:   v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/" + repos[rng.IntN(len(repos))])},
			Target:   v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(target.Host + "/" + ns + "/" + name)},
			Interval: &metav1.Duration{Duration: time.Duration(1+rng.IntN(10)) * time.Minute},
		}
		switch rng.IntN(3) {
		case 0:
			spec.Source.Tags = []string{"1.0"}
		case 1:
			spec.Source.Tags = []string{"1.0", "1.1"}
		default:
			spec.Source.Semver = ">=1.0.0"
		}
		return spec
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range imageSyncs {
		ns := fmt.Sprintf("load-%d", i%namespaces)
		name := fmt.Sprintf("sync-%d", i)
		must(t, k8s.Create(ctx, &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: syncSpec(rng, ns, name)}))
	}

	// Watch every condition while the churn runs.
	var watch sync.WaitGroup
	stopWatch := make(chan struct{})
	spurious := &findings{}
	watch.Go(func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(250 * time.Millisecond):
			}
			checkConditions(ctx, k8s, spurious)
		}
	})

	// The churn.
	var ops [6]atomic.Int64
	deadline := time.Now().Add(churnFor)
	var churn sync.WaitGroup
	mirrorGen := [2]atomic.Int64{}
	for w := range 4 {
		churn.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for time.Now().Before(deadline) {
				op := rng.IntN(10)
				i := rng.IntN(imageSyncs)
				ns, name := fmt.Sprintf("load-%d", i%namespaces), fmt.Sprintf("sync-%d", i)
				key := client.ObjectKey{Namespace: ns, Name: name}
				var err error
				switch {
				case op < 3: // change an ImageSync (or create it again)
					err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
						is := &v1alpha1.ImageSync{}
						if err := k8s.Get(ctx, key, is); apierrors.IsNotFound(err) {
							return k8s.Create(ctx, &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: syncSpec(rng, ns, name)})
						} else if err != nil {
							return err
						}
						is.Spec = syncSpec(rng, ns, name)
						is.Spec.Suspend = rng.IntN(8) == 0
						return k8s.Update(ctx, is)
					})
					ops[0].Add(1)
				case op < 5: // delete an ImageSync
					err = client.IgnoreNotFound(k8s.Delete(ctx, &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}))
					ops[1].Add(1)
				case op < 6: // create one
					err = k8s.Create(ctx, &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: syncSpec(rng, ns, name)})
					if apierrors.IsAlreadyExists(err) {
						err = nil
					}
					ops[2].Add(1)
				case op < 8: // label or unlabel a namespace
					err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
						n := &corev1.Namespace{}
						if err := k8s.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("load-%d", rng.IntN(namespaces))}, n); err != nil {
							return err
						}
						if n.Labels[pullLabel] == "yes" {
							delete(n.Labels, pullLabel)
						} else {
							n.Labels = map[string]string{pullLabel: "yes"}
						}
						return k8s.Update(ctx, n)
					})
					ops[3].Add(1)
				case op < 9: // change a mirror's host aliases
					m := rng.IntN(len(hosts))
					gen := mirrorGen[m].Add(1)
					err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
						rm := &v1alpha1.RegistryMirror{}
						if err := k8s.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("mirror-%d", m)}, rm); err != nil {
							return client.IgnoreNotFound(err)
						}
						rm.Spec.HostAliases = mirror(m, int(gen)).Spec.HostAliases
						return k8s.Update(ctx, rm)
					})
					ops[4].Add(1)
				default: // delete a mirror and make it again
					m := rng.IntN(len(hosts))
					rm := mirror(m, int(mirrorGen[m].Add(1)))
					if rng.IntN(4) == 0 {
						err = client.IgnoreNotFound(k8s.Delete(ctx, rm))
						ops[5].Add(1)
						break
					}
					if err = k8s.Create(ctx, rm); apierrors.IsAlreadyExists(err) {
						err = nil
					}
				}
				// Conflicts, and objects another goroutine deleted or created meanwhile, are the
				// churn itself.
				if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) {
					t.Errorf("churn: %v", err)
				}
			}
		})
	}
	churn.Wait()
	t.Logf("churn for %s: %d ImageSync changes, %d deletions, %d creations, %d namespace relabels, %d mirror changes, %d mirror deletions",
		churnFor, ops[0].Load(), ops[1].Load(), ops[2].Load(), ops[3].Load(), ops[4].Load(), ops[5].Load())

	// Settle: both mirrors exist again (a deleted one is recreated once its deletion has
	// finished), everything reaches what the objects ask for; then 20 namespaces change
	// their label, so that both mirrors, whatever their age, have to follow a selection
	// change, and everything must settle again.
	for i := range hosts {
		err := eventually(func() error {
			err := k8s.Create(ctx, mirror(i, int(mirrorGen[i].Add(1))))
			if apierrors.IsAlreadyExists(err) {
				rm := &v1alpha1.RegistryMirror{}
				if err := k8s.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("mirror-%d", i)}, rm); err != nil {
					return err
				}
				if rm.DeletionTimestamp != nil {
					return fmt.Errorf("mirror-%d is still being deleted", i)
				}
				return nil
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	settled := eventually(func() error { return converged(ctx, k8s, nodes) })
	if settled == nil {
		for i := range 20 {
			n := &corev1.Namespace{}
			must(t, k8s.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("load-%d", i*5)}, n))
			if n.Labels[pullLabel] == "yes" {
				delete(n.Labels, pullLabel)
			} else {
				n.Labels = map[string]string{pullLabel: "yes"}
			}
			must(t, k8s.Update(ctx, n))
		}
		settled = eventually(func() error { return converged(ctx, k8s, nodes) })
	}
	close(stopWatch)
	watch.Wait()
	if settled != nil {
		t.Fatalf("after the churn: %v", settled)
	}
	checkConditions(ctx, k8s, spurious)
	for _, f := range spurious.list() {
		t.Errorf("condition reported an error that is not real: %s", f)
	}
	t.Logf("%d condition snapshots checked while churning", spurious.checks.Load())
	warnings := &eventsv1.EventList{}
	must(t, k8s.List(ctx, warnings))
	for _, e := range warnings.Items {
		if e.Type == corev1.EventTypeWarning {
			t.Errorf("Warning event %s on %s/%s: %s", e.Reason, e.Regarding.Namespace, e.Regarding.Name, e.Note)
		}
	}
	if lines := errorLog.String(); lines != "" {
		t.Errorf("the manager logged errors:\n%s", firstLines(lines, 20))
	}

	// Delete everything: nothing may be left.
	must(t, k8s.DeleteAllOf(ctx, &v1alpha1.RegistryMirror{}))
	for i := range namespaces {
		must(t, k8s.DeleteAllOf(ctx, &v1alpha1.ImageSync{}, client.InNamespace(fmt.Sprintf("load-%d", i))))
	}
	if err := eventually(func() error { return nothingLeft(ctx, k8s, nodes) }); err != nil {
		t.Fatalf("after deleting every mirror and ImageSync: %v", err)
	}
}

// converged says why the cluster and nodes do not yet match the objects, or nil.
func converged(ctx context.Context, k8s client.Client, nodes []*node) error {
	syncs := &v1alpha1.ImageSyncList{}
	if err := k8s.List(ctx, syncs); err != nil {
		return err
	}
	for _, is := range syncs.Items {
		want := v1alpha1.ReasonSyncSucceeded
		if is.Spec.Suspend {
			want = v1alpha1.ReasonSuspended
		}
		c := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady)
		if is.Status.ObservedGeneration != is.Generation || c == nil || c.Reason != string(want) {
			return fmt.Errorf("ImageSync %s/%s: generation %d observed %d, Ready %+v", is.Namespace, is.Name, is.Generation, is.Status.ObservedGeneration, c)
		}
	}
	mirrors := &v1alpha1.RegistryMirrorList{}
	if err := k8s.List(ctx, mirrors); err != nil {
		return err
	}
	wantFiles := map[string]bool{}
	var wantAliases []string
	for _, rm := range mirrors.Items {
		if !apimeta.IsStatusConditionTrue(rm.Status.Conditions, v1alpha1.ConditionReady) || rm.Status.ObservedGeneration != rm.Generation {
			return fmt.Errorf("RegistryMirror %s not Ready: %+v", rm.Name, rm.Status.Conditions)
		}
		wantFiles[string(rm.Spec.Host)] = true
		for _, a := range rm.Spec.HostAliases {
			for _, h := range a.Hostnames {
				wantAliases = append(wantAliases, string(h))
			}
		}
		if err := pullSecretsMatch(ctx, k8s, &rm); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := n.holds(wantFiles, wantAliases); err != nil {
			return err
		}
	}
	return nil
}

// pullSecretsMatch checks that rm's pull secret is in exactly the labelled namespaces and
// that their default ServiceAccount references it, and no other.
func pullSecretsMatch(ctx context.Context, k8s client.Client, rm *v1alpha1.RegistryMirror) error {
	nsList := &corev1.NamespaceList{}
	if err := k8s.List(ctx, nsList, client.MatchingLabels{pullLabel: "yes"}); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, ns := range nsList.Items {
		want[ns.Name] = true
	}
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.MatchingLabels{registrymirror.PullSecretMirrorLabel: string(rm.UID)}); err != nil {
		return err
	}
	got := map[string]bool{}
	for _, s := range secrets.Items {
		got[s.Namespace] = true
		if !want[s.Namespace] {
			return fmt.Errorf("pull secret %s/%s of %s in a namespace not selected", s.Namespace, s.Name, rm.Name)
		}
	}
	for ns := range want {
		if !got[ns] {
			return fmt.Errorf("pull secret of %s missing in %s", rm.Name, ns)
		}
	}
	sas := &corev1.ServiceAccountList{}
	if err := k8s.List(ctx, sas); err != nil {
		return err
	}
	for _, sa := range sas.Items {
		refs := slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == rm.Spec.PullSecrets.SecretName })
		if refs != want[sa.Namespace] {
			return fmt.Errorf("ServiceAccount %s/%s references %s: %v, want %v", sa.Namespace, sa.Name, rm.Spec.PullSecrets.SecretName, refs, want[sa.Namespace])
		}
	}
	return nil
}

// nothingLeft says what regwire left behind once every mirror and ImageSync is gone.
func nothingLeft(ctx context.Context, k8s client.Client, nodes []*node) error {
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.HasLabels{registrymirror.PullSecretMirrorLabel}); err != nil {
		return err
	}
	if len(secrets.Items) > 0 {
		return fmt.Errorf("%d pull secrets left, e.g. %s/%s", len(secrets.Items), secrets.Items[0].Namespace, secrets.Items[0].Name)
	}
	sas := &corev1.ServiceAccountList{}
	if err := k8s.List(ctx, sas); err != nil {
		return err
	}
	for _, sa := range sas.Items {
		if len(sa.ImagePullSecrets) > 0 {
			return fmt.Errorf("ServiceAccount %s/%s still references %v", sa.Namespace, sa.Name, sa.ImagePullSecrets)
		}
	}
	for _, kind := range []client.ObjectList{&v1alpha1.RegistryMirrorList{}, &v1alpha1.ImageSyncList{}} {
		if err := k8s.List(ctx, kind); err != nil {
			return err
		}
		if n := apimeta.LenList(kind); n > 0 {
			return fmt.Errorf("%d %T left", n, kind)
		}
	}
	for _, n := range nodes {
		if err := n.holds(nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// findings collects distinct spurious condition reports.
type findings struct {
	mu     sync.Mutex
	seen   map[string]bool
	order  []string
	checks atomic.Int64
}

func (f *findings) add(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	if !f.seen[s] && len(f.order) < 50 {
		f.seen[s] = true
		f.order = append(f.order, s)
	}
}

func (f *findings) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.order)
}

// transient are the reasons a condition may be False or Unknown for while things move.
var transient = map[string]bool{
	string(v1alpha1.ReasonSyncing): true, string(v1alpha1.ReasonSuspended): true,
	string(v1alpha1.ReasonApplying): true, string(v1alpha1.ReasonNodesNotReady): true,
	string(v1alpha1.ReasonWaitingForNodes): true, // a deleted mirror waits for the agents
}

// checkConditions records every condition of every mirror and ImageSync that is not True
// for a reason other than a transient one, and every per-tag error.
func checkConditions(ctx context.Context, k8s client.Client, f *findings) {
	f.checks.Add(1)
	syncs := &v1alpha1.ImageSyncList{}
	if err := k8s.List(ctx, syncs); err == nil {
		for _, is := range syncs.Items {
			for _, c := range is.Status.Conditions {
				if c.Status != metav1.ConditionTrue && !transient[c.Reason] {
					f.add(fmt.Sprintf("ImageSync %s/%s %s=%s %s: %s", is.Namespace, is.Name, c.Type, c.Status, c.Reason, c.Message))
				}
			}
			for _, im := range is.Status.Images {
				if im.Error != "" {
					f.add(fmt.Sprintf("ImageSync %s/%s tag %s: %s", is.Namespace, is.Name, im.Tag, im.Error))
				}
			}
		}
	}
	mirrors := &v1alpha1.RegistryMirrorList{}
	if err := k8s.List(ctx, mirrors); err == nil {
		for _, rm := range mirrors.Items {
			for _, c := range rm.Status.Conditions {
				if c.Status != metav1.ConditionTrue && !transient[c.Reason] {
					f.add(fmt.Sprintf("RegistryMirror %s %s=%s %s: %s", rm.Name, c.Type, c.Status, c.Reason, c.Message))
				}
			}
		}
	}
	reports := &v1alpha1.RegistryNodeList{}
	if err := k8s.List(ctx, reports); err == nil {
		for _, r := range reports.Items {
			for _, m := range r.Status.Mirrors {
				if m.Error != "" || (m.Probe != nil && !m.Probe.Reachable) {
					f.add(fmt.Sprintf("RegistryNode %s mirror %s: %s %+v", r.Name, m.Name, m.Error, m.Probe))
				}
			}
		}
	}
}

// startManager runs the regwire controllers in-process until the test ends and returns
// what they log at error level.
func startManager(t *testing.T, cfg *rest.Config) fmt.Stringer {
	t.Helper()
	errs := &testutil.SyncBuffer{}
	log := zap.New(zap.WriteTo(errs), zap.Level(zapcore.ErrorLevel))
	ctrl.SetLogger(log)
	mgr, err := controllers.NewManager(cfg, controllers.Options{
		Namespace: operatorNS, Agent: agentdaemonset.DefaultOptions("regwire:test"),
		Manager: ctrl.Options{Logger: log, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return errs
}

// node is a node with an in-process agent.
type node struct{ *agenttest.Node }

func startNode(t *testing.T, k8s client.Client, cfg *rest.Config, name string) *node {
	t.Helper()
	return &node{agenttest.Start(t, cfg, k8s, name, agenttest.Options{Namespace: operatorNS, HostsContent: baseHosts, Resync: time.Second})}
}

// holds says how the node differs from: a hosts.toml and ca.crt for each host in hosts
// and nothing else under its root (but the agent's state), and a hosts file with exactly
// aliases in regwire's block.
func (n *node) holds(hosts map[string]bool, aliases []string) error {
	var want []string
	for h := range hosts {
		want = append(want, h+"/ca.crt", h+"/hosts.toml")
	}
	slices.Sort(want)
	var got []string
	err := filepath.WalkDir(n.Root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.Root, p)
		if d.IsDir() {
			if rel == nodefiles.StateDir {
				return filepath.SkipDir
			}
			return nil
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("node %s holds %v, want %v", n.Name, got, want)
	}
	b, err := os.ReadFile(n.HostsFile)
	if err != nil {
		return err
	}
	text := string(b)
	if !strings.HasPrefix(text, baseHosts) {
		return fmt.Errorf("node %s: the hosts file lost its own lines:\n%s", n.Name, text)
	}
	gotAliases := aliasRE.FindAllString(text, -1)
	slices.Sort(gotAliases)
	aliases = slices.Clone(aliases)
	slices.Sort(aliases)
	if !slices.Equal(gotAliases, aliases) {
		return fmt.Errorf("node %s: hosts file names %v, want %v:\n%s", n.Name, gotAliases, aliases, text)
	}
	if len(aliases) == 0 && text != baseHosts {
		return fmt.Errorf("node %s: hosts file is not back to its own lines:\n%s", n.Name, text)
	}
	return nil
}

// aliasRE matches the host names the test's mirrors give as aliases.
var aliasRE = regexp.MustCompile(`m[0-9]+-g[0-9]+\.example`)

// eventually retries f until it succeeds or settleAfter passes.
func eventually(f func() error) error { return testutil.Poll(settleAfter, 250*time.Millisecond, f) }

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
