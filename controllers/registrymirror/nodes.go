package registrymirror

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// maxFailing bounds status.nodes.failing.
const maxFailing = 20

// reconcileNodes publishes the mirror for the node agents (package agentdaemonset runs
// them) and aggregates their reports into status.nodes.
func (r *Reconciler) reconcileNodes(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	if _, err := labels.ValidatedSelectorFromSet(rm.Spec.NodeSelector); err != nil {
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonInvalidSpec, "spec.nodeSelector: %v", err)
	}
	// The cache's own objects, not copies (nothing here changes them): at thousands of
	// nodes a copy of every Node and report on each reconcile is most of the memory.
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing Nodes: %w", err)
	}
	reports := &v1alpha1.RegistryNodeList{}
	if err := r.Client.List(ctx, reports, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing RegistryNodes: %w", err)
	}
	selected := selectedNodes(rm, nodes.Items)
	if sc.caUsable && sc.clientCertUsable {
		if err := r.publish(ctx, rm, sc.ca, sc.clientCert, len(selected)); err != nil {
			return ctrl.Result{}, err
		}
	}
	st := aggregateNodes(rm, selected, reports.Items)
	rm.Status.Nodes = &st
	rm.Status.Endpoints = aggregateEndpoints(rm, selected, reports.Items)
	nodesReadyGauge.WithLabelValues(rm.Name).Set(float64(st.Ready))
	nodesDesiredGauge.WithLabelValues(rm.Name).Set(float64(st.Desired))

	conds, gen := &rm.Status.Conditions, rm.Generation
	switch {
	case !sc.caUsable || !sc.clientCertUsable:
		conditions.Set(conds, gen, v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonNotPublished,
			"nodes keep the last good configuration until the CA or client certificate problem (see CAValid, ClientCertificateReady) is fixed")
	case st.Desired == 0:
		conditions.Set(conds, gen, v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonNoNodesSelected,
			"no node matches spec.nodeSelector and spec.tolerations")
	case st.Ready == st.Desired:
		conditions.Set(conds, gen, v1alpha1.ConditionNodesReady, metav1.ConditionTrue, v1alpha1.ReasonNodesReady,
			fmt.Sprintf("%d/%d nodes applied the configuration and reached the registry", st.Ready, st.Desired))
	default:
		msg, reason := fmt.Sprintf("%d/%d nodes ready", st.Ready, st.Desired), v1alpha1.ReasonNodesNotReady
		if len(st.Failing) > 0 {
			f := st.Failing[0]
			msg += fmt.Sprintf(" (not ready: %s); %s: %s", failingSummary(&st), f.Name, f.Message)
			if f.Reason == v1alpha1.ReasonHostConflict {
				// The loser of a host claimed twice: only a person can settle who has it.
				return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonHostConflict, "%s", msg)
			}
		}
		conditions.Set(conds, gen, v1alpha1.ConditionNodesReady, metav1.ConditionFalse, reason, msg)
	}
	return ctrl.Result{}, nil
}

// publish writes the mirror's ConfigMap for the agents when its content changed. Its CA
// bundle goes into a ConfigMap of its own named by its digest (immutable, shared by the
// mirrors that trust the same CA, owned by each), which the mirror's ConfigMap refers to:
// a change of the mirror sends every agent a few hundred bytes, not the bundle again. With
// it goes the window the agents of the mirror's nodes (selected of them) spread their
// reports over.
func (r *Reconciler) publish(ctx context.Context, rm *v1alpha1.RegistryMirror, ca []byte, clientCert string, selected int) error {
	digest := ""
	if len(ca) > 0 {
		digest = nodeconfig.CADigest(ca)
		if err := r.ensureCABundle(ctx, rm, ca); err != nil {
			return err
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: nodeconfig.PublishedName(rm.Name)}}
	res, err := controllerutil.CreateOrPatch(ctx, r.Client, cm, func() error {
		p := nodeconfig.Publish(rm, ca, clientCert)
		var current time.Duration
		if was, _, err := nodeconfig.FromConfigMap(cm); err == nil {
			current = was.ReportWindow()
		}
		p.ReportWindowSeconds = int32(nodeconfig.ReportWindow(selected, r.AgentReportRate, current) / time.Second)
		nodeconfig.SetConfigMap(cm, p)
		// Garbage collection removes it with the mirror should the finalizer be skipped.
		return controllerutil.SetOwnerReference(rm, cm, r.Client.Scheme())
	})
	if err != nil {
		return fmt.Errorf("publishing RegistryMirror %s for the nodes: %w", rm.Name, err)
	}
	if res != controllerutil.OperationResultNone {
		logf.FromContext(ctx).V(1).Info("Published RegistryMirror for nodes", "configMap", cm.Name, "operation", res)
	}
	return r.releaseCABundles(ctx, rm, digest)
}

// ensureCABundle makes sure the CA bundle ConfigMap of ca exists and names rm among its
// owners (garbage collection removes it with the last of them).
func (r *Reconciler) ensureCABundle(ctx context.Context, rm *v1alpha1.RegistryMirror, ca []byte) error {
	want := nodeconfig.CABundleConfigMap(r.Namespace, ca)
	cm := &corev1.ConfigMap{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), cm)
	if apierrors.IsNotFound(err) {
		if err := controllerutil.SetOwnerReference(rm, want, r.Client.Scheme()); err != nil {
			return err
		}
		err = r.Client.Create(ctx, want)
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("publishing RegistryMirror %s's CA bundle (ConfigMap %s): %w", rm.Name, want.Name, err)
			}
			return nil
		}
		// Another mirror's, not in the cache yet.
		err = r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), cm)
	}
	if err != nil {
		return fmt.Errorf("reading CA bundle ConfigMap %s: %w", want.Name, err)
	}
	if ownedBy(cm, rm) {
		return nil
	}
	before := cm.DeepCopy()
	if err := controllerutil.SetOwnerReference(rm, cm, r.Client.Scheme()); err != nil {
		return err
	}
	if err := r.Client.Patch(ctx, cm, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("adding RegistryMirror %s to the owners of CA bundle ConfigMap %s: %w", rm.Name, cm.Name, err)
	}
	return nil
}

// releaseCABundles takes rm from the owners of the CA bundles other than keep's (all of
// them for ""), deleting a bundle no mirror owns any more.
func (r *Reconciler) releaseCABundles(ctx context.Context, rm *v1alpha1.RegistryMirror, keep string) error {
	list := &corev1.ConfigMapList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Namespace), client.MatchingLabels{nodeconfig.PublishedLabel: nodeconfig.CABundleLabelValue}); err != nil {
		return fmt.Errorf("listing CA bundles: %w", err)
	}
	for i := range list.Items {
		cm := &list.Items[i]
		if !ownedBy(cm, rm) || keep != "" && cm.Name == nodeconfig.CABundleName(keep) {
			continue
		}
		before := cm.DeepCopy()
		cm.OwnerReferences = slices.DeleteFunc(cm.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == rm.UID })
		var err error
		if len(cm.OwnerReferences) == 0 {
			err = client.IgnoreNotFound(r.Client.Delete(ctx, cm, client.Preconditions{ResourceVersion: &cm.ResourceVersion}))
		} else {
			err = r.Client.Patch(ctx, cm, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		}
		if err != nil {
			return fmt.Errorf("releasing CA bundle ConfigMap %s: %w", cm.Name, err)
		}
	}
	return nil
}

func ownedBy(o metav1.Object, rm *v1alpha1.RegistryMirror) bool {
	return slices.ContainsFunc(o.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == rm.UID })
}

// aggregateNodes counts the nodes the mirror selects and those whose agent reports the
// current generation applied and the registry reachable. The nodes that are not are
// counted by reason; the first maxFailing of them by reason, then name, are listed, so the
// list stays the same while the same nodes fail (a status that changes with the order a
// cache lists nodes in would be written on every reconcile).
func aggregateNodes(rm *v1alpha1.RegistryMirror, selected []*corev1.Node, reports []v1alpha1.RegistryNode) v1alpha1.NodesStatus {
	byNode := make(map[string]*v1alpha1.RegistryNode, len(reports))
	for i := range reports {
		byNode[reports[i].Name] = &reports[i]
	}
	var st v1alpha1.NodesStatus
	var failing []v1alpha1.NodeFailure
	counts := map[v1alpha1.ConditionReason]int32{}
	for _, n := range selected {
		st.Desired++
		reason, msg := nodeReadiness(rm, byNode[n.Name])
		if reason == "" {
			st.Ready++
			continue
		}
		counts[reason]++
		failing = append(failing, v1alpha1.NodeFailure{Name: n.Name, Reason: reason, Message: msg})
	}
	slices.SortFunc(failing, func(a, b v1alpha1.NodeFailure) int {
		return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Name, b.Name))
	})
	st.Failing = failing[:min(len(failing), maxFailing)]
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		st.FailingReasons = append(st.FailingReasons, v1alpha1.ReasonCount{Reason: reason, Count: counts[reason]})
	}
	st.FailingReasons = st.FailingReasons[:min(len(st.FailingReasons), maxFailingReasons)]
	st.Summary = fmt.Sprintf("%d/%d", st.Ready, st.Desired)
	return st
}

// maxFailingReasons bounds status.nodes.failingReasons (the CRD's MaxItems).
const maxFailingReasons = 64

// failingSummary says how many nodes fail for which reasons, e.g. "3 AgentNotReporting,
// 1 ProbeFailed".
func failingSummary(st *v1alpha1.NodesStatus) string {
	parts := make([]string, 0, len(st.FailingReasons))
	for _, rc := range st.FailingReasons {
		parts = append(parts, fmt.Sprintf("%d %s", rc.Count, rc.Reason))
	}
	return strings.Join(parts, ", ")
}

// selectedNodes are the nodes the mirror's nodeSelector and tolerations select.
func selectedNodes(rm *v1alpha1.RegistryMirror, nodes []corev1.Node) []*corev1.Node {
	var out []*corev1.Node
	for i := range nodes {
		if nodeconfig.Selects(rm.Spec, &nodes[i]) {
			out = append(out, &nodes[i])
		}
	}
	return out
}

// aggregateEndpoints counts, for each endpoint of a mirror with fallbacks, the selected
// nodes whose last probe reached it; nil without fallbacks.
func aggregateEndpoints(rm *v1alpha1.RegistryMirror, selected []*corev1.Node, reports []v1alpha1.RegistryNode) []v1alpha1.EndpointStatus {
	if len(rm.Spec.FallbackEndpoints) == 0 {
		return nil
	}
	var out []v1alpha1.EndpointStatus
	index := map[string]int{}
	m := nodeconfig.Mirror{Spec: rm.Spec}
	for _, u := range m.Endpoints() {
		index[u] = len(out)
		out = append(out, v1alpha1.EndpointStatus{URL: u})
	}
	isSelected := make(map[string]bool, len(selected))
	for _, n := range selected {
		isSelected[n.Name] = true
	}
	for _, rep := range reports {
		if !isSelected[rep.Name] {
			continue
		}
		for _, ms := range rep.Status.Mirrors {
			if ms.Name != rm.Name || ms.ObservedGeneration != rm.Generation {
				continue
			}
			for _, e := range ms.Endpoints {
				if i, ok := index[e.URL]; ok && e.Probe.Reachable {
					out[i].ReachableNodes++
				}
			}
		}
	}
	return out
}

// nodeReadiness returns "" when the node is ready for the mirror, else a reason and message.
func nodeReadiness(rm *v1alpha1.RegistryMirror, report *v1alpha1.RegistryNode) (v1alpha1.ConditionReason, string) {
	if report == nil {
		return v1alpha1.ReasonAgentNotReporting, "the regwire agent on this node has not reported"
	}
	i := slices.IndexFunc(report.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == rm.Name })
	if i < 0 {
		return v1alpha1.ReasonApplying, "the agent has not applied this mirror yet"
	}
	m := report.Status.Mirrors[i]
	switch {
	case m.Error != "":
		return cmp.Or(m.Reason, v1alpha1.ReasonApplyFailed), m.Error
	case m.ObservedGeneration != rm.Generation:
		return v1alpha1.ReasonApplying, fmt.Sprintf("the node has generation %d applied, want %d", m.ObservedGeneration, rm.Generation)
	case m.Probe == nil:
		return v1alpha1.ReasonApplying, "the registry has not been probed yet"
	case !m.Probe.Reachable:
		return v1alpha1.ReasonProbeFailed, m.Probe.Error
	}
	return "", ""
}

// releaseNodes withdraws the mirror from the nodes and reports whether every agent that
// still runs has removed its files.
func (r *Reconciler) releaseNodes(ctx context.Context, rm *v1alpha1.RegistryMirror) (bool, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: nodeconfig.PublishedName(rm.Name)}}
	if err := r.Client.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("withdrawing RegistryMirror %s from the nodes: %w", rm.Name, err)
	}
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	exists := map[string]bool{}
	for _, n := range nodes.Items {
		exists[n.Name] = true
	}
	reports := &v1alpha1.RegistryNodeList{}
	if err := r.Client.List(ctx, reports, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	var waiting []string
	for _, rep := range reports.Items {
		// A node that is gone cannot clean up; do not wait for it.
		if !exists[rep.Name] {
			continue
		}
		if slices.ContainsFunc(rep.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == rm.Name }) {
			waiting = append(waiting, rep.Name)
		}
	}
	if len(waiting) > 0 {
		slices.Sort(waiting) // the same message from one poll to the next: no status write
		conditions.Set(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonWaitingForNodes,
			fmt.Sprintf("waiting for %d node(s) to remove the configuration, e.g. %s", len(waiting), waiting[0]))
		return false, nil
	}
	return true, nil
}

// deletionPoll is how often deletion checks whether the nodes have cleaned up.
const deletionPoll = 2 * time.Second
