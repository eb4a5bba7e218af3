//go:build scale

package scale

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/testutil"
)

// copyShards is what the shipped Deployment passes (--copy-shards); the Leases' timings
// are more patient than the defaults (15 s, 10 s, 2 s), for an API server on 2 shared
// cores. A dead replica's shards move within takeoverBound: the lease, a renewal
// (renewDeadline/2) and two retry periods.
const (
	copyShards    = 12
	leaseDuration = 30 * time.Second
	renewDeadline = 20 * time.Second
	retryPeriod   = 4 * time.Second
	takeoverBound = leaseDuration + renewDeadline/2 + 2*retryPeriod
)

// managerProc is one `regwire manager` replica, run as the shipped Deployment runs it
// (leader election, --copy-shards), named by POD_NAME.
type managerProc struct {
	id, metrics string
	cmd         *exec.Cmd
}

// startManager runs a replica with the default --sync-period (10 h), or syncPeriod.
// managerMemoryLimit is the shipped Deployment's memory limit (config/manager), which it
// passes to the Go runtime as GOMEMLIMIT.
const managerMemoryLimit = "256MiB"

func startManager(t *testing.T, bin, kubeconfig, work, id string, syncPeriod ...string) *managerProc {
	t.Helper()
	m := &managerProc{id: id, metrics: testutil.FreeAddr(t)}
	m.cmd = exec.Command(bin, "manager", "--namespace", operatorNS, "--metrics-bind-address", m.metrics,
		"--health-probe-bind-address", "0", "--zap-log-level", "error",
		"--leader-elect", "--leader-election-namespace", operatorNS, fmt.Sprintf("--copy-shards=%d", copyShards), "--replica-name", id,
		// This API server shares 2 cores with 5,000 nodes' agents and heartbeats: at the
		// peak it answers a renewal in more than the default 10 s.
		"--leader-elect-lease-duration="+leaseDuration.String(), "--leader-elect-renew-deadline="+renewDeadline.String(), "--leader-elect-retry-period="+retryPeriod.String(),
		"--allow-source-cidrs=127.0.0.1/32") // the source registries listen on loopback
	if len(syncPeriod) > 0 {
		m.cmd.Args = append(m.cmd.Args, "--sync-period", syncPeriod[0])
	}
	// GOMEMLIMIT as the shipped Deployment sets it: the container's memory limit (256Mi),
	// near which the Go runtime collects harder instead of growing.
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOMEMLIMIT="+managerMemoryLimit)
	logFile, _ := os.OpenFile(filepath.Join(work, id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	must(t, m.cmd.Start())
	t.Cleanup(m.stop)
	return m
}

// stop ends the replica as Kubernetes does (SIGTERM), and waits.
func (m *managerProc) stop() {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		_ = m.cmd.Wait()
	}
}

// kill ends it as a crash or a lost node does: nothing released.
func (m *managerProc) kill() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}

// requests is the replica's own count of requests to the API server (client-go's
// rest_client_requests_total), all verbs.
func (m *managerProc) requests(t *testing.T) float64 {
	var n float64
	for _, v := range scrape(t, "http://"+m.metrics+"/metrics", "rest_client_requests_total", "method") {
		n += v
	}
	return n
}

// sourceLog is a reverse proxy in front of a source registry recording when each
// repository's manifest was asked for by tag: one per tag and copy.
type sourceLog struct {
	mu    sync.Mutex
	reads map[string][]time.Time
	srv   *httptest.Server
}

func newSourceLog(t *testing.T, registryURL string) *sourceLog {
	u, err := url.Parse(registryURL)
	must(t, err)
	l := &sourceLog{reads: map[string][]time.Time{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if repo, ref, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok && !strings.HasPrefix(ref, "sha256:") {
			l.mu.Lock()
			l.reads[repo] = append(l.reads[repo], time.Now())
			l.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *sourceLog) host() string { return l.srv.Listener.Addr().String() }

// since counts the copies (manifest reads by tag) since t0.
func (l *sourceLog) since(t0 time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ts := range l.reads {
		for _, at := range ts {
			if !at.Before(t0) {
				n++
			}
		}
	}
	return n
}

func (l *sourceLog) of(repo string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reads[repo])
}

// shardHolders returns how many copy shards each replica holds, by the Leases.
func shardHolders(ctx context.Context, k8s client.Client) (map[string]int, error) {
	leases := &coordinationv1.LeaseList{}
	if err := k8s.List(ctx, leases, client.InNamespace(operatorNS), client.MatchingLabels{"regwire.dev/shard-role": "shard"}); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, l := range leases.Items {
		out[ptr.Deref(l.Spec.HolderIdentity, "")]++
	}
	return out, nil
}

// restartResult is what a manager restart cost.
type restartResult struct {
	peakPerSecond, meanPerSecond float64 // API requests by the manager, per 10 s window
	window                       time.Duration
	copies                       int // copies started after the restart, all not yet due
	spread                       []int
}

// restart stops the only replica and starts it again (with the default --sync-period), then watches for window: its API
// requests per 10 s, the copies it starts (none is due: each ran less than an interval
// ago), and when the hourly ImageSyncs are due next (status.nextSyncTime in 10-minute
// buckets from the first, the last bucket everything after an hour).
func restart(t *testing.T, ctx context.Context, k8s client.Client, m *managerProc, bin, kubeconfig, work string, src *sourceLog, window time.Duration) (*managerProc, restartResult) {
	m.stop()
	began := time.Now()
	m = startManager(t, bin, kubeconfig, work, m.id)
	var res restartResult
	res.window = window
	prev := 0.0
	testutil.Eventually(t, 30*time.Second, "the restarted manager's metrics", func() error {
		resp, err := http.Get("http://" + m.metrics + "/metrics")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	var total float64
	for elapsed := time.Duration(0); elapsed < window; elapsed += 10 * time.Second {
		time.Sleep(10 * time.Second)
		n := m.requests(t)
		res.peakPerSecond = max(res.peakPerSecond, (n-prev)/10)
		total, prev = n, n
	}
	res.meanPerSecond = total / time.Since(began).Seconds()
	res.copies = src.since(began)
	list := &v1alpha1.ImageSyncList{}
	must(t, k8s.List(ctx, list))
	var next []time.Time
	for _, is := range list.Items {
		if is.Status.NextSyncTime != nil && is.Spec.Interval != nil && is.Spec.Interval.Duration == time.Hour {
			next = append(next, is.Status.NextSyncTime.Time)
		}
	}
	res.spread = make([]int, 7) // six 10-minute buckets from the first, then later
	if len(next) > 0 {
		first := slices.MinFunc(next, func(a, b time.Time) int { return a.Compare(b) })
		for _, at := range next {
			res.spread[min(int(at.Sub(first)/(10*time.Minute)), 6)]++
		}
	}
	return m, res
}

// replicasResult is what three replicas sharing copies showed.
type replicasResult struct {
	syncs, runs, twice, starved int
	minGap, maxGap              time.Duration
	moved                       time.Duration
	window                      time.Duration
	interval                    time.Duration
}

// threeReplicas starts two more replicas beside first, creates n ImageSyncs with a
// 1-minute interval (each its own source repository, behind src), lets them run for half
// of window, kills one replica (not the leader's process, SIGKILL), and lets them run on.
// It checks at the source that no ImageSync was copied twice within its interval (runs
// closer than 1 minute less a second), that none went without its copies (a gap over two
// intervals plus the takeover bound), and how long the dead replica's shards took to move.
func threeReplicas(t *testing.T, ctx context.Context, k8s client.Client, first *managerProc, bin, kubeconfig, work, registryHost string, src *sourceLog, n int, window time.Duration) replicasResult {
	others := []*managerProc{startManager(t, bin, kubeconfig, work, "manager-1"), startManager(t, bin, kubeconfig, work, "manager-2")}
	testutil.Eventually(t, 2*time.Minute, "three replicas holding 4 shards each", func() error {
		h, err := shardHolders(ctx, k8s)
		if err != nil {
			return err
		}
		if h[first.id] != 4 || h["manager-1"] != 4 || h["manager-2"] != 4 {
			return fmt.Errorf("shards held: %v", h)
		}
		return nil
	})
	res := replicasResult{syncs: n, window: window, interval: time.Minute}
	for i := range n {
		testutil.PushImage(t, fmt.Sprintf("%s/short/app%d:1.0", registryHost, i), 256, 1)
	}
	began := time.Now()
	for i := range n {
		ns := fmt.Sprintf("scale-%d", i%10)
		must(t, k8s.Create(ctx, &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("short-%03d", i)},
			Spec: v1alpha1.ImageSyncSpec{
				Source:   v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/short/app%d", src.host(), i)), Tags: []string{"1.0"}},
				Target:   v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/%s/short-%03d", registryHost, ns, i))},
				Interval: &metav1.Duration{Duration: res.interval},
			}}))
	}
	time.Sleep(window / 2)
	victim := others[0]
	victim.kill()
	killed := time.Now()
	testutil.Eventually(t, 2*time.Minute, "the two replicas left holding 6 shards each", func() error {
		h, err := shardHolders(ctx, k8s)
		if err != nil {
			return err
		}
		if h[first.id] != 6 || h["manager-2"] != 6 {
			return fmt.Errorf("shards held: %v", h)
		}
		return nil
	})
	res.moved = time.Since(killed)
	time.Sleep(time.Until(began.Add(window)))
	res.minGap = time.Hour
	for i := range n {
		reads := src.of(fmt.Sprintf("short/app%d", i))
		res.runs += len(reads)
		if len(reads) < 2 {
			res.starved++
			continue
		}
		for j := 1; j < len(reads); j++ {
			gap := reads[j].Sub(reads[j-1])
			res.minGap, res.maxGap = min(res.minGap, gap), max(res.maxGap, gap)
			if gap < res.interval-time.Second {
				res.twice++
			}
		}
		if last := reads[len(reads)-1]; time.Since(last) > 2*res.interval+res.moved+10*time.Second {
			res.starved++
		}
	}
	for _, o := range others[1:] {
		o.stop()
	}
	return res
}

// publishWatch records when a mirror's published ConfigMap first named each host alias
// address, as a watch like the agents' sees it.
type publishWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (w *publishWatch) at(ip string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.seen[ip]
	return at, ok
}

func watchPublished(t *testing.T, ctx context.Context, cs kubernetes.Interface, mirror string) *publishWatch {
	w := &publishWatch{seen: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	watcher, err := cs.CoreV1().ConfigMaps(operatorNS).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + nodeconfig.PublishedName(mirror)})
	must(t, err)
	go func() {
		defer watcher.Stop()
		for ev := range watcher.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			p, _, err := nodeconfig.FromConfigMap(cm)
			if err != nil {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			for _, a := range p.Spec.HostAliases {
				if _, ok := w.seen[a.IP]; !ok {
					w.seen[a.IP] = now
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}
