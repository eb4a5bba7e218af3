package nodeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeapply"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
)

// prober asks the registries of the mirrors the node applied whether they answer, apart
// from the reconcile that writes the files: a change of a mirror reaches the node's files
// at once, whatever its registries (an endpoint that does not answer costs a probe its
// timeout). The reconcile says what it applied (want); the prober probes what it has no
// answer for, everything again at the node's phase of each resync, and once more soon
// after a registry stops answering; a changed answer brings the reconcile back (changed)
// to report it.
type prober struct {
	probe     func(context.Context, nodeconfig.Mirror) probe.Result
	anonymous func(context.Context, nodeconfig.Mirror, v1alpha1.UpstreamMirror) string
	node      string
	resync    time.Duration
	clock     clock.PassiveClock
	// changed is called after a round whose answers differ from the last ones.
	changed func()

	wake chan struct{}
	mu   sync.Mutex
	// wanted are the mirrors to probe, by name, with the key of what they are.
	wanted map[string]wantedMirror
	// answers are the last answers, by mirror name, for the key they were asked for.
	answers map[string]probeAnswer
}

type wantedMirror struct {
	key    string
	mirror nodeconfig.Mirror
}

// probeAnswer is what a mirror's registries answered.
type probeAnswer struct {
	key string
	// endpoints are each endpoint's answer, in priority order; chosen the one the
	// runtimes use.
	endpoints []nodeapply.EndpointResult
	chosen    int
	// anonymous says why the mirror refuses an upstream's anonymous pulls ("" when it
	// does not, or serves no upstream).
	anonymous string
	at        time.Time
}

func newProber(r *Reconciler, changed func()) *prober {
	return &prober{probe: r.Probe, anonymous: r.AnonymousPull, node: r.NodeName, resync: r.Resync, clock: r.Clock, changed: changed,
		wake: make(chan struct{}, 1), wanted: map[string]wantedMirror{}, answers: map[string]probeAnswer{}}
}

// keyOf names what a mirror is to a probe: its endpoints, trust, credentials and hosts.
func keyOf(m nodeconfig.Mirror) string {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("unkeyed %p", &m) // never equal: probed every time
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// want sets the mirrors to probe (those the node applied cleanly) and returns the answers
// it has for them as they are; a mirror without one is probed next.
func (p *prober) want(mirrors []nodeconfig.Mirror) map[string]probeAnswer {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wanted = make(map[string]wantedMirror, len(mirrors))
	out := map[string]probeAnswer{}
	missing := false
	for _, m := range mirrors {
		k := keyOf(m)
		p.wanted[m.Name] = wantedMirror{key: k, mirror: m}
		if a, ok := p.answers[m.Name]; ok && a.key == k {
			out[m.Name] = a
		} else {
			missing = true
		}
	}
	for name := range p.answers {
		if _, ok := p.wanted[name]; !ok {
			delete(p.answers, name)
		}
	}
	if missing {
		select {
		case p.wake <- struct{}{}:
		default: // a round is already asked for
		}
	}
	return out
}

// Start probes until ctx ends.
func (p *prober) Start(ctx context.Context) error {
	resync := time.NewTimer(untilPhase(p.node, p.resync, p.clock.Now()))
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		all := false
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-resync.C:
			all = true
			resync.Reset(untilPhase(p.node, p.resync, p.clock.Now()))
		case <-retry:
			all, retry = true, nil
		}
		changed, newlyFailing := p.round(ctx, all)
		if newlyFailing && retry == nil {
			// Often a moment's matter (a proxy reloading its certificate, a registry
			// restarting): ask once more soon rather than report it for a whole resync.
			retry = time.After(min(probeRetry, p.resync))
		}
		if changed {
			p.changed()
		}
	}
}

// round probes the wanted mirrors that have no answer for what they are now (all of them
// when all), and says whether any answer changed and whether a registry has just stopped
// answering.
func (p *prober) round(ctx context.Context, all bool) (changed, newlyFailing bool) {
	p.mu.Lock()
	var todo []wantedMirror
	for name, w := range p.wanted {
		if a, ok := p.answers[name]; all || !ok || a.key != w.key {
			todo = append(todo, w)
		}
	}
	p.mu.Unlock()
	for _, w := range todo {
		a := p.ask(ctx, w)
		if ctx.Err() != nil {
			return false, false
		}
		p.mu.Lock()
		if cur, ok := p.wanted[w.mirror.Name]; ok && cur.key == w.key {
			old, had := p.answers[w.mirror.Name]
			if !had || old.key != a.key || !reflect.DeepEqual(old.endpoints, a.endpoints) || old.chosen != a.chosen || old.anonymous != a.anonymous {
				changed = true
				if !a.endpoints[a.chosen].Reachable && (!had || old.key != a.key || old.endpoints[old.chosen].Reachable) {
					newlyFailing = true
				}
				p.answers[w.mirror.Name] = a
			}
		}
		p.mu.Unlock()
	}
	return changed, newlyFailing
}

// ask probes one mirror's endpoints and, when it serves upstreams and answers, whether it
// takes their pulls without credentials.
func (p *prober) ask(ctx context.Context, w wantedMirror) probeAnswer {
	a := probeAnswer{key: w.key, at: p.clock.Now()}
	a.endpoints, a.chosen = nodeapply.ProbeEndpoints(ctx, w.mirror, p.probe)
	if a.endpoints[a.chosen].Reachable {
		a.anonymous = anonymousPullProblem(ctx, w.mirror, p.anonymous)
	}
	return a
}

// anonymousPullProblem checks each mirrorOf upstream: runtimes reach the mirror for an
// upstream's images without the pull secret's credentials (those are for the upstream's
// host), so a mirror that refuses anonymous pulls is silently skipped (or, with
// skipFallback, every such pull fails). The message says so, with the fix.
func anonymousPullProblem(ctx context.Context, m nodeconfig.Mirror, ask func(context.Context, nodeconfig.Mirror, v1alpha1.UpstreamMirror) string) string {
	for _, u := range m.Spec.MirrorOf {
		why := ask(ctx, m, u)
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
