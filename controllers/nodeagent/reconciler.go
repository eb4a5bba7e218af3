// Package nodeagent is the node agent's controller (`regwire agent`, one per node): it
// applies the mirrors the manager publishes for its node to the node's containerd
// configuration root and hosts file, probes the registries, and reports in the node's
// RegistryNode.
package nodeagent

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/probe"
)

// Reconciler is the node agent: it applies the mirrors published for its node to the
// node's containerd configuration root and hosts file, probes the registries, and reports
// in the node's RegistryNode.
type Reconciler struct {
	// Client reads through a cache limited by CacheByObject.
	Client client.Client
	// NodeName is the node the agent runs on.
	NodeName string
	// Namespace is the operator namespace holding the published mirrors.
	Namespace string
	// Roots applies each runtime's registry configuration in its root; a runtime without
	// one is reported for the mirrors that need it.
	Roots map[v1alpha1.ContainerRuntime]*nodefiles.Files
	// CRIORoot is CRI-O's /etc/containers as the agent reaches it, whose other drop-ins it
	// reads to tell when one of them wins over regwire's; "" skips that.
	CRIORoot string
	// ContainerdConfig is the node's containerd configuration file as the agent reads it
	// ("" skips the check); ContainerdConfigOnHost and ContainerdRootOnHost are that file
	// and the containerd root as the node names them, for messages and the check.
	ContainerdConfig, ContainerdConfigOnHost, ContainerdRootOnHost string
	// Reload is called after a runtime's files changed (CRI-O reloads its registries on
	// SIGHUP); nil does nothing.
	Reload func(ctx context.Context, rt v1alpha1.ContainerRuntime) error
	// HostsFile is the hosts file to keep regwire's block in; empty leaves it alone.
	HostsFile string
	// Probe checks a registry from the node; probe.Prober unless a test sets it.
	Probe func(context.Context, nodeconfig.Mirror) probe.Result
	// AnonymousPull says why a mirror refuses an upstream's pulls without credentials ("" when
	// it does not); probe.Prober unless a test sets it.
	AnonymousPull func(context.Context, nodeconfig.Mirror, v1alpha1.UpstreamMirror) string
	// Resync is how often the agent re-applies (repairing drift) and re-probes.
	Resync time.Duration
	// Version is reported in status.agentVersion.
	Version string
	// Now returns the current time; tests set it.
	Now func() time.Time

	// anonymous keeps anonymousPullProblem's answers (one reconcile at a time touches it).
	anonymous map[string]anonymousCheck
}

// CacheByObject limits the agent's cache to its own Node and RegistryNode, the published
// mirrors, and the Secret of client certificates.
func CacheByObject(namespace, node string) map[client.Object]cache.ByObject {
	own := fields.OneTermEqualSelector("metadata.name", node)
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{nodeconfig.PublishedLabel: "true"}),
		},
		&corev1.Node{}:           {Field: own},
		&v1alpha1.RegistryNode{}: {Field: own},
		// The one Secret the agents' Role may read: mirrors' client certificates.
		&corev1.Secret{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", nodeconfig.ClientCertificatesSecret),
		},
	}
}

// SetupWithManager registers the agent with mgr: any change to a published mirror or to
// the node brings one reconcile of the whole node.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Probe == nil {
		r.Probe = probe.Prober{HostsFile: r.HostsFile}.Probe
	}
	if r.AnonymousPull == nil {
		r.AnonymousPull = probe.Prober{HostsFile: r.HostsFile}.AnonymousPullRefused
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Resync == 0 {
		r.Resync = time.Minute
	}
	toNode := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: r.NodeName}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodeagent").
		Watches(&corev1.ConfigMap{}, toNode).
		Watches(&corev1.Node{}, toNode).
		Watches(&v1alpha1.RegistryNode{}, toNode).
		Watches(&corev1.Secret{}, toNode).
		Complete(r)
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
	for _, p := range published {
		if nodeconfig.Selects(p.Spec, node) {
			selected = append(selected, mirrors[p.Name])
			gens[p.Name] = p.Generation
		}
	}
	plan := r.plan(node, selected)
	applyErr := r.apply(ctx, plan, decodeErrs)
	existing := &v1alpha1.RegistryNode{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: r.NodeName}, existing); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	status := r.report(ctx, selected, gens, plan, applyErr, decodeErrs, existing.Status)
	if err := r.writeReport(ctx, node, existing, status); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// The cache has not seen the agent's previous write yet: report again from the
			// fresh object shortly (the write's own event usually comes first).
			logf.FromContext(ctx).V(1).Info("RegistryNode changed meanwhile; reporting again", "error", err.Error())
			return ctrl.Result{RequeueAfter: reportRetry}, nil
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

// apply writes each runtime's rendered files and the hosts block. Mirrors the node
// refuses to render (or to decode) keep their last good files and hosts entries. It
// returns what went wrong, which concerns every mirror; the next reconcile retries.
func (r *Reconciler) apply(ctx context.Context, p *plan, decodeErrs map[string]string) string {
	log := logf.FromContext(ctx).WithValues("node", r.NodeName)
	var applyErr string
	for _, rt := range slices.Sorted(maps.Keys(r.Roots)) {
		cfg := p.configs[rt]
		keep := map[string]bool{}
		for _, e := range cfg.Errors {
			keep[e.Mirror] = true
		}
		for name := range decodeErrs {
			keep[name] = true
		}
		changes, err := r.Roots[rt].ApplyOwned(nodefiles.Desired{Files: cfg.Files, Owners: cfg.FileOwners(), Keep: keep})
		if err != nil {
			applyErr = joinErr(applyErr, fmt.Sprintf("%s: %v", rt, err))
			log.Error(err, "Applying registry configuration failed", "runtime", rt)
		}
		for _, c := range changes {
			log.Info("Changed registry configuration", "runtime", rt, "path", c.Path, "action", c.Action)
		}
		if len(changes) > 0 && r.Reload != nil {
			if err := r.Reload(ctx, rt); err != nil {
				applyErr = joinErr(applyErr, fmt.Sprintf("%s: %v", rt, err))
				log.Error(err, "Reloading the runtime's registry configuration failed", "runtime", rt)
			}
		}
	}
	if r.HostsFile == "" {
		return applyErr
	}
	keep := map[string]bool{}
	for _, e := range p.hosts.Errors {
		keep[e.Mirror] = true
	}
	for name := range decodeErrs {
		keep[name] = true
	}
	entries := make([]hostsfile.Entry, 0, len(p.hosts.HostsEntries))
	for _, e := range p.hosts.HostsEntries {
		entries = append(entries, hostsfile.Entry{IP: e.IP, Hostnames: e.Hostnames, Owner: e.Mirror})
	}
	changed, err := nodefiles.ApplyHostsFile(r.HostsFile, entries, slices.Sorted(maps.Keys(keep))...)
	switch {
	case err != nil:
		applyErr = joinErr(applyErr, err.Error())
		log.Error(err, "Applying hosts file entries failed", "hostsFile", r.HostsFile)
	case changed:
		log.Info("Changed hosts file entries", "hostsFile", r.HostsFile, "entries", len(entries))
	}
	return applyErr
}

// published reads the mirrors published for nodes, with their client certificates;
// undecodable ones, and those whose client certificate has not arrived, are reported by
// name (and keep their last good files).
func (r *Reconciler) published(ctx context.Context) ([]nodeconfig.Published, map[string]nodeconfig.Mirror, map[string]string, error) {
	list := &corev1.ConfigMapList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Namespace), client.MatchingLabels{nodeconfig.PublishedLabel: "true"}); err != nil {
		return nil, nil, nil, fmt.Errorf("listing published mirrors: %w", err)
	}
	certs := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: nodeconfig.ClientCertificatesSecret}, certs)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, nil, fmt.Errorf("reading the client certificates: %w", err)
	}
	var out []nodeconfig.Published
	mirrors := map[string]nodeconfig.Mirror{}
	errs := map[string]string{}
	for i := range list.Items {
		p, name, err := nodeconfig.FromConfigMap(&list.Items[i])
		if err != nil {
			errs[name] = err.Error()
			continue
		}
		m := p.Mirror()
		if p.ClientCertificate != "" {
			certKey, keyKey := nodeconfig.ClientCertificateKeys(p.Name)
			cert, key := certs.Data[certKey], certs.Data[keyKey]
			if nodeconfig.ClientCertificateDigest(cert, key) != p.ClientCertificate {
				errs[name] = fmt.Sprintf("waiting for the client certificate in Secret %s/%s", r.Namespace, nodeconfig.ClientCertificatesSecret)
				continue
			}
			m.ClientCert, m.ClientKey = cert, key
		}
		out = append(out, p)
		mirrors[p.Name] = m
	}
	return out, mirrors, errs, nil
}

// report builds the node's status, probing each mirror that applied cleanly. Probe times
// only move when a result changes, so a steady node writes nothing.
func (r *Reconciler) report(ctx context.Context, selected []nodeconfig.Mirror, gens map[string]int64,
	p *plan, applyErr string, decodeErrs map[string]string, old v1alpha1.RegistryNodeStatus) v1alpha1.RegistryNodeStatus {
	mirrorErrs, reasons := p.problems()
	st := v1alpha1.RegistryNodeStatus{AgentVersion: r.Version, Runtime: p.node.Name, ConfigHash: p.hash(), Conditions: old.Conditions}
	ready, firstProblem := true, ""
	probeReason := v1alpha1.ReasonProbeFailed
	for _, m := range selected {
		ms := v1alpha1.NodeMirrorStatus{Name: m.Name, ObservedGeneration: gens[m.Name], Error: joinErr(applyErr, mirrorErrs[m.Name])}
		if ms.Error == "" {
			ms.AppliedHash = p.mirrorHash(m.Name)
			ms.Runtimes = p.runtimes[m.Name]
		}
		switch {
		case applyErr != "":
			ms.Reason = v1alpha1.ReasonApplyFailed
		case ms.Error != "":
			ms.Reason = reasons[m.Name]
		}
		if ms.Error == "" {
			res := r.probeEndpoints(ctx, m, old, &ms)
			if !res.Reachable && firstProblem == "" {
				firstProblem = fmt.Sprintf("%s: registry not reachable: %s", m.Name, res.Err)
			}
			if res.Reachable {
				if msg := r.anonymousPullProblem(ctx, m, gens[m.Name]); msg != "" {
					ms.Reason, ms.Error = v1alpha1.ReasonMirrorRefusesAnonymousPulls, msg
					probeReason = v1alpha1.ReasonMirrorRefusesAnonymousPulls
					if firstProblem == "" {
						firstProblem = m.Name + ": " + msg
					}
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
		case applyErr == "" && len(mirrorErrs) == 0 && len(decodeErrs) == 0:
			reason = probeReason
		case applyErr == "" && len(decodeErrs) == 0 && allReasons(reasons, v1alpha1.ReasonConfigPathNotSet):
			reason = v1alpha1.ReasonConfigPathNotSet
		}
		conditions.Set(&st.Conditions, 0, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, firstProblem)
	}
	return st
}

// probeEndpoints probes each of the mirror's endpoints in priority order and reports
// them in ms (each one when there are fallbacks); the result is the first that answered,
// or the first endpoint's when none did: runtimes use the first that answers.
func (r *Reconciler) probeEndpoints(ctx context.Context, m nodeconfig.Mirror, old v1alpha1.RegistryNodeStatus, ms *v1alpha1.NodeMirrorStatus) probe.Result {
	urls := m.Endpoints()
	results := make([]probe.Result, len(urls))
	chosen := 0
	for i, u := range urls {
		one := m
		one.Spec.Endpoint, one.Spec.FallbackEndpoints = u, nil
		results[i] = r.Probe(ctx, one)
		if results[i].Reachable && !results[chosen].Reachable {
			chosen = i
		}
		if len(urls) > 1 {
			pr := v1alpha1.ProbeResult{Reachable: results[i].Reachable, StatusCode: int32(results[i].StatusCode), Error: results[i].Err}
			pr.Time = endpointProbeTime(old, m.Name, u, &pr, r.Now())
			ms.Endpoints = append(ms.Endpoints, v1alpha1.EndpointProbe{URL: u, Probe: pr})
		}
	}
	res := results[chosen]
	ms.Probe = &v1alpha1.ProbeResult{Reachable: res.Reachable, StatusCode: int32(res.StatusCode), Error: res.Err}
	ms.Probe.Time = probeTime(old, m.Name, ms.Probe, r.Now())
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

// anonymousPullProblem checks each mirrorOf upstream: runtimes reach the mirror for an
// upstream's images without the pull secret's credentials (those are for the upstream's
// host), so a mirror that refuses anonymous pulls is silently skipped (or, with
// skipFallback, every such pull fails). The message says so, with the fix.
// The answer is kept for a resync per mirror generation: reconciles come with every
// report the agent writes, and the question costs up to three requests per upstream.
func (r *Reconciler) anonymousPullProblem(ctx context.Context, m nodeconfig.Mirror, gen int64) string {
	if len(m.Spec.MirrorOf) == 0 {
		return ""
	}
	if c, ok := r.anonymous[m.Name]; ok && c.gen == gen && r.Now().Sub(c.at) < r.Resync {
		return c.msg
	}
	msg := r.askAnonymousPull(ctx, m)
	if r.anonymous == nil {
		r.anonymous = map[string]anonymousCheck{}
	}
	r.anonymous[m.Name] = anonymousCheck{gen: gen, at: r.Now(), msg: msg}
	return msg
}

// anonymousCheck is a kept answer of anonymousPullProblem.
type anonymousCheck struct {
	gen int64
	at  time.Time
	msg string
}

func (r *Reconciler) askAnonymousPull(ctx context.Context, m nodeconfig.Mirror) string {
	for _, u := range m.Spec.MirrorOf {
		why := r.AnonymousPull(ctx, m, u)
		if why == "" {
			continue
		}
		outcome := "they go to " + string(u.Host) + " instead"
		if m.Spec.SkipFallback {
			outcome = "with skipFallback they fail"
		}
		return fmt.Sprintf("pulls of %s images reach the mirror without credentials (containerd and CRI-O send a pull secret's credentials only to the registry it names) and it refuses them: %s; %s. Allow anonymous read on the mirror's repository for %s",
			u.Host, why, outcome, u.Host)
	}
	return ""
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

func joinErr(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
