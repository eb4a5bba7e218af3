// Package nodeagent is the node agent's controller (`regwire agent`, one per node): it
// applies the mirrors the manager publishes for its node through the node pipeline
// (internal/nodeapply: each runtime's registry configuration and the hosts file), probes
// the registries, and reports in the node's RegistryNode.
package nodeagent

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/nodeapply"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/runtimeconfig"
)

// Reconciler is the node agent: it applies the mirrors published for its node to the
// node's containerd configuration root and hosts file, probes the registries, and reports
// in the node's RegistryNode.
type Reconciler struct {
	// Client reads through a cache limited by CacheByObject.
	Client client.Client
	// APIReader reads the client certificates' Secrets (get by name: the agents' Role
	// allows no list or watch of Secrets).
	APIReader client.Reader
	// NodeName is the node the agent runs on.
	NodeName string
	// Namespace is the operator namespace holding the published mirrors.
	Namespace string
	// Node is the pipeline that writes the node's files: the runtimes' roots, the hosts
	// file, the runtimes' reload.
	Node *nodeapply.Node
	// Probe checks a registry from the node; probe.Prober unless a test sets it.
	Probe func(context.Context, nodeconfig.Mirror) probe.Result
	// AnonymousPull says why a mirror refuses an upstream's pulls without credentials ("" when
	// it does not); probe.Prober unless a test sets it.
	AnonymousPull func(context.Context, nodeconfig.Mirror, v1alpha1.UpstreamMirror) string
	// Resync is how often the agent re-applies (repairing drift) and re-probes.
	Resync time.Duration
	// ReportSpread delays a changed report to the node's turn (NextReport) in windows of
	// ReportSpread, or of the longer window a selecting mirror publishes
	// (nodeconfig.ReportWindow).
	ReportSpread time.Duration
	// Version is reported in status.agentVersion.
	Version string
	// Clock tells the time; tests set a fake one.
	Clock clock.PassiveClock

	// probes asks the registries apart from the reconcile; a changed answer comes back
	// through probed.
	probes *prober
	probed chan event.GenericEvent
	// pairs are the client certificates read, by mirror; certPending says the last
	// reconcile waited for one (one reconcile at a time touches them).
	pairs       map[string]clientPair
	certPending bool
	// reportDue is when the changed report waiting for its turn (ReportSpread) is written.
	reportDue time.Time
}

// ReportDelay is node's phase in a report window of spread: a hash of its name, so that
// the phases of thousands of nodes spread evenly over the window.
func ReportDelay(node string, spread time.Duration) time.Duration {
	if spread <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	return time.Duration(h.Sum64() % uint64(spread))
}

// NextReport is when the agent of node, with a changed report at now, writes it: the next
// moment at its phase (ReportDelay) of the windows of spread that follow each other on
// the clock. Slots on the clock rather than delays after each change: however many
// changes come, each node writes at most once a window, and the cluster's reports reach
// the API server at no more than nodes/spread a second.
func NextReport(node string, spread time.Duration, now time.Time) time.Time {
	if spread <= 0 {
		return now
	}
	phase, step := int64(ReportDelay(node, spread)), int64(spread)
	t := now.UnixNano()
	next := t - t%step + phase
	if next < t {
		next += step
	}
	return time.Unix(0, next)
}

// CacheByObject limits the agent's cache to its own Node and RegistryNode, and the
// published mirrors and CA bundles.
func CacheByObject(namespace, node string) map[client.Object]cache.ByObject {
	own := fields.OneTermEqualSelector("metadata.name", node)
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      nodeconfig.PublishedSelector(),
		},
		&corev1.Node{}:           {Field: own},
		&v1alpha1.RegistryNode{}: {Field: own},
	}
}

// SetupWithManager registers the agent with mgr: any change to a published mirror or to
// the node brings one reconcile of the whole node.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Probe == nil {
		// Kept-alive connections: every node asks every registry each resync.
		r.Probe = probe.Prober{HostsFile: r.Node.HostsFile, Transports: &probe.Transports{}}.Probe
	}
	if r.AnonymousPull == nil {
		r.AnonymousPull = probe.Prober{HostsFile: r.Node.HostsFile}.AnonymousPullRefused
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Resync == 0 {
		r.Resync = time.Minute
	}
	toNode := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: r.NodeName}}}
	})
	// A change of containerd's configuration file (config_path added or taken out) is no
	// API event: the agent looks at the file's size and time every few seconds.
	fileChanged := make(chan event.GenericEvent, 1)
	if r.Node != nil && r.Node.ContainerdConfig != "" {
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			watchFile(ctx, r.Node.ContainerdConfig, configPoll, func() {
				select {
				case fileChanged <- event.GenericEvent{Object: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: r.NodeName}}}:
				default: // one is already on its way
				}
			})
			return nil
		})); err != nil {
			return err
		}
	}
	nodeEvent := event.GenericEvent{Object: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: r.NodeName}}}
	r.probed = make(chan event.GenericEvent, 1)
	r.probes = newProber(r, func() {
		select {
		case r.probed <- nodeEvent:
		default: // one is already on its way
		}
	})
	if err := mgr.Add(r.probes); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodeagent").
		WatchesRawSource(source.Channel(fileChanged, toNode)).
		// A registry's answer changed: report it.
		WatchesRawSource(source.Channel(r.probed, toNode)).
		Watches(&corev1.ConfigMap{}, toNode).
		// Of the Node, only what decides which mirrors select it and in which format: not
		// the status heartbeats that make up most of its updates.
		Watches(&corev1.Node{}, toNode, builder.WithPredicates(nodeChangedForAgent())).
		// The agent's own report changes with each of its writes; a report deleted by hand
		// is written again.
		Watches(&v1alpha1.RegistryNode{}, toNode, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		Complete(r)
}

// configPoll is how often the agent looks whether containerd's configuration file changed.
const configPoll = 5 * time.Second

// watchFile calls changed whenever path's size or modification time differs from what it
// was at the last look, every poll, until ctx ends.
func watchFile(ctx context.Context, path string, poll time.Duration, changed func()) {
	stamp := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
	}
	last := stamp()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if now := stamp(); now != last {
			last = now
			changed()
		}
	}
}

// nodeChangedForAgent passes Node events that can change what the agent writes: creation,
// deletion, and changes of labels, taints or the container runtime.
func nodeChangedForAgent() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
		return !maps.Equal(o.Labels, n.Labels) || !equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) ||
			o.Status.NodeInfo.ContainerRuntimeVersion != n.Status.NodeInfo.ContainerRuntimeVersion
	}}
}

// Reconcile applies everything that selects the node and reports.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: r.NodeName}, node); err != nil {
		return ctrl.Result{}, fmt.Errorf("reading Node %s: %w", r.NodeName, err)
	}
	published, mirrors, decodeErrs, err := r.published(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var selected []nodeconfig.Mirror
	gens := map[string]int64{}
	spread := r.ReportSpread
	for _, p := range published {
		if nodeconfig.Selects(p.Spec, node) {
			selected = append(selected, mirrors[p.Name])
			gens[p.Name] = p.Generation
			spread = max(spread, p.ReportWindow()) // a large fleet's longer window
		}
	}
	plan := r.Node.Plan(runtimeconfig.FromNodeInfo(node.Status.NodeInfo.ContainerRuntimeVersion), selected)
	_, applyErr := r.Node.Apply(ctx, plan, slices.Collect(maps.Keys(decodeErrs))...)
	existing := &v1alpha1.RegistryNode{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: r.NodeName}, existing); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	status, probing := r.report(selected, gens, plan, applyErr, decodeErrs, existing.Status)
	if probing {
		// The files are in place; the report waits for the registries' answers, which
		// bring the agent back.
		return ctrl.Result{RequeueAfter: r.next()}, nil
	}
	if existing.Name != "" && equality.Semantic.DeepEqual(existing.Status, status) {
		r.reportDue = time.Time{}
		return ctrl.Result{RequeueAfter: r.next()}, nil
	}
	if spread > 0 {
		// The files are in place; the report waits for the node's turn.
		now := r.Clock.Now()
		if r.reportDue.IsZero() {
			r.reportDue = NextReport(r.NodeName, spread, now)
		}
		if now.Before(r.reportDue) {
			return ctrl.Result{RequeueAfter: r.reportDue.Sub(now)}, nil
		}
	}
	r.reportDue = time.Time{}
	if err := r.writeReport(ctx, node, existing, status); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// The cache has not seen the agent's previous write yet: report again from the
			// fresh object shortly (the write's own event usually comes first).
			logf.FromContext(ctx).V(1).Info("RegistryNode changed meanwhile; reporting again", "error", err.Error())
			return ctrl.Result{RequeueAfter: reportRetry}, nil
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.next()}, nil
}

// capNotes keeps notes within what a RegistryNode takes: 8 of at most 1024 characters.
func capNotes(notes []string) []string {
	notes = notes[:min(len(notes), 8)]
	for i, n := range notes {
		if len(n) > 1024 {
			notes[i] = n[:1021] + "..."
		}
	}
	return notes
}

// next is when to reconcile again without an event: at the node's resync phase, or soon
// while a client certificate is awaited (Secrets are not watched).
func (r *Reconciler) next() time.Duration {
	d := untilPhase(r.NodeName, r.Resync, r.Clock.Now())
	if r.certPending {
		d = min(d, certRetry)
	}
	return d
}

// untilPhase is how long until the node's next resync: once per resync period, at a phase
// of the period its name fixes (a hash), so that the agents of a cluster, started together
// by their DaemonSet, spread their probes of the registries over the period instead of
// asking all at once. The next resync is never sooner than half a period.
func untilPhase(node string, period time.Duration, now time.Time) time.Duration {
	if period <= 0 {
		return period
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	phase, step := int64(h.Sum64()%uint64(period)), int64(period)
	earliest := now.Add(period / 2).UnixNano()
	k := (earliest - phase) / step
	next := k*step + phase
	for next < earliest {
		next += step
	}
	return time.Duration(next - now.UnixNano())
}

// probeRetry is how soon a probe that has just started failing is tried again.
const probeRetry = 5 * time.Second

// published reads the mirrors published for nodes, with their client certificates;
// undecodable ones, and those whose client certificate has not arrived, are reported by
// name (and keep their last good files).
func (r *Reconciler) published(ctx context.Context) ([]nodeconfig.Published, map[string]nodeconfig.Mirror, map[string]string, error) {
	list := &corev1.ConfigMapList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Namespace), client.MatchingLabels{nodeconfig.PublishedLabel: "true"}); err != nil {
		return nil, nil, nil, fmt.Errorf("listing published mirrors: %w", err)
	}
	bundleList := &corev1.ConfigMapList{}
	if err := r.Client.List(ctx, bundleList, client.InNamespace(r.Namespace), client.MatchingLabels{nodeconfig.PublishedLabel: nodeconfig.CABundleLabelValue}); err != nil {
		return nil, nil, nil, fmt.Errorf("listing CA bundles: %w", err)
	}
	bundles := nodeconfig.CABundles(bundleList.Items)
	var out []nodeconfig.Published
	r.certPending = false
	mirrors := map[string]nodeconfig.Mirror{}
	errs := map[string]string{}
	for i := range list.Items {
		p, name, err := nodeconfig.FromConfigMap(&list.Items[i])
		if err != nil {
			errs[name] = err.Error()
			continue
		}
		if err := p.ResolveCA(bundles); err != nil {
			errs[name] = err.Error()
			continue
		}
		m := p.Mirror()
		if p.ClientCertificate != "" {
			pair, err := r.clientPair(ctx, p)
			if err != nil {
				return nil, nil, nil, err
			}
			if pair == nil {
				r.certPending = true
				errs[name] = fmt.Sprintf("waiting for the client certificate in Secret %s/%s", r.Namespace, nodeconfig.ClientCertificatesSecretFor(p.Name))
				continue
			}
			m.ClientCert, m.ClientKey = pair.cert, pair.key
		}
		out = append(out, p)
		mirrors[p.Name] = m
	}
	for name := range r.pairs {
		if _, ok := mirrors[name]; !ok {
			delete(r.pairs, name)
		}
	}
	return out, mirrors, errs, nil
}

// clientPair is a client certificate and key read for a mirror.
type clientPair struct{ digest, cert, key []byte }

// certRetry is how soon a client certificate not in its Secret yet is read again: the
// agent does not watch Secrets.
const certRetry = 5 * time.Second

// clientPair returns the client certificate and key p names (by digest), read from its
// Secret once per pair; nil when the Secret does not hold it (yet).
func (r *Reconciler) clientPair(ctx context.Context, p nodeconfig.Published) (*clientPair, error) {
	if have, ok := r.pairs[p.Name]; ok && string(have.digest) == p.ClientCertificate {
		return &have, nil
	}
	name := nodeconfig.ClientCertificatesSecretFor(p.Name)
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, s); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the client certificates (Secret %s/%s): %w", r.Namespace, name, err)
	}
	certKey, keyKey := nodeconfig.ClientCertificateKeys(p.Name)
	cert, key := s.Data[certKey], s.Data[keyKey]
	if nodeconfig.ClientCertificateDigest(cert, key) != p.ClientCertificate {
		return nil, nil
	}
	if r.pairs == nil {
		r.pairs = map[string]clientPair{}
	}
	r.pairs[p.Name] = clientPair{digest: []byte(p.ClientCertificate), cert: cert, key: key}
	pair := r.pairs[p.Name]
	return &pair, nil
}

// report builds the node's status with the prober's answers for each mirror that applied
// cleanly, and says whether one has no answer yet (the prober is asked for it). Probe
// times only move when a result changes, so a steady node writes nothing.
func (r *Reconciler) report(selected []nodeconfig.Mirror, gens map[string]int64,
	p *nodeapply.Plan, applyErr error, decodeErrs map[string]string, old v1alpha1.RegistryNodeStatus) (_ v1alpha1.RegistryNodeStatus, probing bool) {
	problems, notes := p.Problems(), p.Notes()
	var clean []nodeconfig.Mirror
	for _, m := range selected {
		if _, hasProblem := problems[m.Name]; applyErr == nil && !hasProblem {
			clean = append(clean, m)
		}
	}
	answers := r.probes.want(clean)
	st := v1alpha1.RegistryNodeStatus{AgentVersion: r.Version, Runtime: p.Runtime.Name, ConfigHash: p.Hash(), Conditions: old.Conditions}
	ready, firstProblem := true, ""
	probeReason := v1alpha1.ReasonProbeFailed
	for _, m := range selected {
		ms := v1alpha1.NodeMirrorStatus{Name: m.Name, ObservedGeneration: gens[m.Name]}
		problem, hasProblem := problems[m.Name]
		switch {
		case applyErr != nil:
			// A failed step of the node concerns every mirror.
			ms.Reason, ms.Error = v1alpha1.ReasonApplyFailed, applyErr.Error()
			if hasProblem {
				ms.Error += "; " + problem.Message
			}
		case hasProblem:
			ms.Reason, ms.Error = problem.Reason, problem.Message
		default:
			ms.AppliedHash = p.MirrorHash(m.Name)
			ms.Runtimes = p.Runtimes(m.Name)
			ms.Notes = capNotes(notes[m.Name])
		}
		if ms.Error == "" {
			a, ok := answers[m.Name]
			if !ok {
				probing = true
				continue
			}
			res := r.probeEndpoints(m, a, old, &ms)
			if !res.Reachable && firstProblem == "" {
				firstProblem = fmt.Sprintf("%s: registry not reachable: %s", m.Name, res.Err)
			}
			// Docker Engine sends no upstream's pulls to the mirror: its nodes need no
			// anonymous read there.
			sendsUpstreams := slices.ContainsFunc(ms.Runtimes, func(rt v1alpha1.ContainerRuntime) bool { return rt != v1alpha1.RuntimeDocker })
			if msg := a.anonymous; msg != "" && sendsUpstreams {
				ms.Reason, ms.Error = v1alpha1.ReasonMirrorRefusesAnonymousPulls, msg
				probeReason = v1alpha1.ReasonMirrorRefusesAnonymousPulls
				if firstProblem == "" {
					firstProblem = m.Name + ": " + msg
				}
			}
		} else if firstProblem == "" {
			firstProblem = m.Name + ": " + ms.Error
		}
		ready = ready && ms.Error == "" && ms.Probe.Reachable
		st.Mirrors = append(st.Mirrors, ms)
	}
	for name, err := range decodeErrs {
		st.Mirrors = append(st.Mirrors, v1alpha1.NodeMirrorStatus{Name: name, Reason: v1alpha1.ReasonApplyFailed, Error: err})
		ready = false
		if firstProblem == "" {
			firstProblem = name + ": " + err
		}
	}
	slices.SortFunc(st.Mirrors, func(a, b v1alpha1.NodeMirrorStatus) int { return cmp.Compare(a.Name, b.Name) })
	if ready {
		conditions.Set(&st.Conditions, 0, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonApplied,
			fmt.Sprintf("%d mirror(s) applied and reachable", len(selected)))
	} else {
		reason := v1alpha1.ReasonApplyFailed
		switch {
		case applyErr == nil && len(problems) == 0 && len(decodeErrs) == 0:
			reason = probeReason
		case applyErr == nil && len(decodeErrs) == 0 && allProblemsAre(problems, v1alpha1.ReasonConfigPathNotSet):
			reason = v1alpha1.ReasonConfigPathNotSet
		}
		conditions.Set(&st.Conditions, 0, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, firstProblem)
	}
	return st, probing
}

// allProblemsAre reports whether there are problems and every one has reason.
func allProblemsAre(problems map[string]nodeapply.Problem, reason v1alpha1.ConditionReason) bool {
	for _, p := range problems {
		if p.Reason != reason {
			return false
		}
	}
	return len(problems) > 0
}

// probeEndpoints reports the answers of the mirror's endpoints in ms (each one when there
// are fallbacks); the result is the endpoint the runtimes would use.
func (r *Reconciler) probeEndpoints(m nodeconfig.Mirror, a probeAnswer, old v1alpha1.RegistryNodeStatus, ms *v1alpha1.NodeMirrorStatus) probe.Result {
	results, chosen := a.endpoints, a.chosen
	now := a.at
	if len(results) > 1 {
		for _, res := range results {
			pr := v1alpha1.ProbeResult{Reachable: res.Reachable, StatusCode: int32(res.StatusCode), Error: res.Err}
			pr.Time = endpointProbeTime(old, m.Name, res.URL, &pr, now)
			ms.Endpoints = append(ms.Endpoints, v1alpha1.EndpointProbe{URL: res.URL, Probe: pr})
		}
	}
	res := results[chosen].Result
	ms.Probe = &v1alpha1.ProbeResult{Reachable: res.Reachable, StatusCode: int32(res.StatusCode), Error: res.Err}
	ms.Probe.Time = probeTime(old, m.Name, ms.Probe, now)
	return res
}

// endpointProbeTime keeps an endpoint's old probe time while its result is the same.
func endpointProbeTime(old v1alpha1.RegistryNodeStatus, mirror, url string, now *v1alpha1.ProbeResult, t time.Time) *metav1.Time {
	for _, m := range old.Mirrors {
		if m.Name != mirror {
			continue
		}
		for _, e := range m.Endpoints {
			if e.URL == url {
				return keptTime(&e.Probe, now, t)
			}
		}
	}
	return keptTime(nil, now, t)
}

// probeTime keeps the old probe time while the result is the same.
func probeTime(old v1alpha1.RegistryNodeStatus, mirror string, now *v1alpha1.ProbeResult, t time.Time) *metav1.Time {
	for _, m := range old.Mirrors {
		if m.Name == mirror {
			return keptTime(m.Probe, now, t)
		}
	}
	return keptTime(nil, now, t)
}

// keptTime is old's time when old said what now says, else t: a report changes only when
// a result does.
func keptTime(old, now *v1alpha1.ProbeResult, t time.Time) *metav1.Time {
	if old != nil && old.Time != nil && old.Reachable == now.Reachable && old.StatusCode == now.StatusCode && old.Error == now.Error {
		return old.Time
	}
	return &metav1.Time{Time: t.Truncate(time.Second)}
}

// reportRetry is how soon a report that met a stale cache is written again.
const reportRetry = 200 * time.Millisecond

// writeReport creates or updates the node's RegistryNode when its status changed.
func (r *Reconciler) writeReport(ctx context.Context, node *corev1.Node, existing *v1alpha1.RegistryNode, st v1alpha1.RegistryNodeStatus) error {
	if existing.Name == "" {
		rn := &v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: r.NodeName}, Status: st}
		// Deleted with its Node by garbage collection.
		if err := controllerutil.SetOwnerReference(node, rn, r.Client.Scheme()); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, rn); err != nil {
			return fmt.Errorf("creating RegistryNode %s: %w", r.NodeName, err)
		}
		return nil
	}
	if equality.Semantic.DeepEqual(existing.Status, st) {
		return nil
	}
	updated := existing.DeepCopy()
	updated.Status = st
	if err := r.Client.Update(ctx, updated); err != nil {
		return fmt.Errorf("updating RegistryNode %s: %w", r.NodeName, err)
	}
	return nil
}
