// Command bench measures regwire sync against crane, skopeo sync and regsync on the same
// generated image set, same machine, alternating runs, and writes docs/benchmarks.md and
// a plot. Run it with `make bench` (it builds the tools first).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// scenario is one measured situation.
type scenario struct {
	key, title, what string
}

// noopRepeats is how many times a timed round runs the no-op resync.
const noopRepeats = 3

var scenarios = []scenario{
	{"cold", "cold copy", "every repository of the main set into an empty target"},
	{"noop", "no-op resync", "the same again: everything is up to date"},
	{"change", "one tag changed", "one tag of the source gets a new image (a new 1 MiB top layer), then the whole set is synced"},
	{"shared", "shared base layers", "into an empty target: repositories of one image each, all on the same three base layers"},
}

// cell is what one peer did in one scenario.
type cell struct {
	runs     []run
	src, dst counts // from the counted run
}

type results struct {
	// startup is each peer's median process start-up (its version command).
	startup          map[string]time.Duration
	set              *ImageSet
	spec             SetSpec
	peers            []*peer
	cells            map[string]map[string]*cell // scenario → peer → cell
	loopback, sha256 float64
	jobs, rounds     int
	started          time.Time
	took             time.Duration
	// disk is, per disk peer, the main set to and from an OCI layout directory.
	disk      map[string]*diskCell
	diskPeers []*diskPeer
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == launchArg {
		launch(os.Args[2:])
		return
	}
	var (
		setName  = flag.String("set", "full", "image set: full (the reference set) or small (a quick try)")
		rounds   = flag.Int("runs", 5, "timed runs of every peer in every scenario (medians are reported)")
		jobs     = flag.Int("jobs", 8, "parallelism given to every peer that has one (crane -j, regsync parallel, regwire --jobs)")
		bin      = flag.String("bin", "bin", "directory with registry, crane, regsync and regwire")
		work     = flag.String("work", "/dev/shm/regwire-bench", "tmpfs directory for the registries' storage")
		out      = flag.String("out", "docs/benchmarks.md", "report to write")
		png      = flag.String("png", "docs/benchmarks.png", "plot to write")
		only     = flag.String("peers", "", "comma-separated peer names to run (default: all)")
		noReport = flag.Bool("no-report", false, "print the results only")
		goBench  = flag.String("gobench", "", "output of the Go benchmarks (make bench-go) to include in the report")
		keep     = flag.Bool("keep", false, "only generate the set, copy it once with regwire and keep both registries running for profiling (Ctrl-C stops)")
	)
	flag.Parse()
	spec := FullSet
	if *setName == "small" {
		spec = SmallSet
	} else if *setName != "full" {
		fail(fmt.Errorf("-set %q: want full or small", *setName))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *keep {
		if err := keepRunning(ctx, spec, *jobs, *bin, *work); err != nil {
			fail(err)
		}
		return
	}
	res, err := bench(ctx, spec, *rounds, *jobs, *bin, *work, *only)
	if err != nil {
		fail(err)
	}
	printSummary(os.Stdout, res)
	if *noReport {
		return
	}
	if err := writePlot(*png, res); err != nil {
		fail(err)
	}
	doc := report(res, filepath.Base(*png))
	if *goBench != "" {
		b, err := os.ReadFile(*goBench)
		if err != nil {
			fail(err)
		}
		doc += goBenchSection(string(b))
	}
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil { // a document, readable by all
		fail(err)
	}
	fmt.Printf("wrote %s and %s\n", *out, *png)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func say(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func bench(ctx context.Context, spec SetSpec, rounds, jobs int, bin, work, only string) (*results, error) {
	bin, _ = filepath.Abs(bin)
	for _, tool := range []string{"registry", "crane", "regsync", "regwire"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `make bench-tools` (it builds them from the Go module proxy)", tool, bin)
		}
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		return nil, errors.New("skopeo is not installed: apt-get install -y skopeo")
	}
	res := &results{spec: spec, jobs: jobs, rounds: rounds, cells: map[string]map[string]*cell{}, started: time.Now()}
	for _, p := range peers(bin) {
		if only == "" || slices.Contains(strings.Split(only, ","), p.name) || slices.Contains(strings.Split(only, ","), strings.Fields(p.name)[0]) {
			res.peers = append(res.peers, p)
		}
	}
	for _, s := range scenarios {
		res.cells[s.key] = map[string]*cell{}
		for _, p := range res.peers {
			res.cells[s.key][p.name] = &cell{}
		}
	}

	if err := os.RemoveAll(cacheDir); err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(cacheDir) }()
	say("measuring every peer's process start-up")
	res.startup = map[string]time.Duration{}
	for _, p := range res.peers {
		d, err := startup(ctx, p.startArgv, 21)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		res.startup[p.name] = d
		say("%-24s %.1f ms", p.name, float64(d.Microseconds())/1000)
	}

	say("measuring loopback and sha256 throughput")
	var err error
	if res.loopback, res.sha256, err = throughputs(); err != nil {
		return nil, err
	}
	say("loopback %.0f MB/s, sha256 %.0f MB/s", res.loopback/1e6, res.sha256/1e6)

	src, dst, err := startRegistries(bin, work)
	if err != nil {
		return nil, err
	}
	defer src.stop()
	defer func() { dst.stop(); _ = os.RemoveAll(work) }()
	say("generating the image set (seed %d) into the source registry", spec.Seed)
	start := time.Now()
	if res.set, err = Push(ctx, spec, src.addr, 8); err != nil {
		return nil, err
	}
	say("%d repositories, %d images (%d indexes), %.0f MB of unique blobs (+%.0f MB in the shared-bases set), in %s",
		len(res.set.Repos), res.set.Images, res.set.Indexes, float64(res.set.UniqueBytes)/1e6, float64(res.set.SharedBytes)/1e6, time.Since(start).Round(time.Second))
	var mainSet, sharedSet []Repo
	for _, r := range res.set.Repos {
		if r.Shared {
			sharedSet = append(sharedSet, r)
		} else {
			mainSet = append(mainSet, r)
		}
	}

	srcProxy, err := newCountingProxy(src.addr, src.tls)
	if err != nil {
		return nil, err
	}
	defer srcProxy.close()
	dstProxy, err := newCountingProxy(dst.addr, dst.tls)
	if err != nil {
		return nil, err
	}
	defer dstProxy.close()

	change := 0
	// Rounds 0..rounds-1 are timed; the last one goes through the counting proxies.
	for round := 0; round <= rounds && len(res.peers) > 0; round++ {
		counted := round == rounds
		order := slices.Clone(res.peers)
		k := round % len(order)
		order = append(order[k:], order[:k]...)
		for _, p := range order {
			dir, err := os.MkdirTemp("", "bench-peer-")
			if err != nil {
				return nil, err
			}
			srcAddr, dstAddr := src.addr, dst.addr
			if counted {
				srcAddr, dstAddr = srcProxy.addr, dstProxy.addr
			}
			step := func(key string, repos []Repo, check bool) error {
				if counted {
					srcProxy.take()
					dstProxy.take()
				}
				regCPU := src.cpu() + dst.cpu()
				r, err := p.run(ctx, dir, srcAddr, dstAddr, repos, jobs)
				r.regCPU = src.cpu() + dst.cpu() - regCPU
				if err != nil {
					return fmt.Errorf("%s, %s: %w", p.name, key, err)
				}
				c := res.cells[key][p.name]
				if counted {
					c.src, c.dst = srcProxy.take(), dstProxy.take()
					say("counted  %-24s %-7s %5.2fs  %d requests", p.name, key, r.wall.Seconds(), c.src.Requests+c.dst.Requests)
				} else {
					c.runs = append(c.runs, r)
					say("round %d/%d %-24s %-7s %6.2fs  %4.0f MiB RSS  cpu %5.2fs  registries' cpu %5.2fs", round+1, rounds, p.name, key, r.wall.Seconds(), float64(r.maxRSS)/(1<<20), r.cpu.Seconds(), r.regCPU.Seconds())
				}
				if check {
					return verify(ctx, src.addr, dst.addr, repos, p.target)
				}
				return nil
			}
			if dst, err = dst.reset(); err != nil {
				return nil, err
			}
			first := round == 0 || counted
			if err := step("cold", mainSet, first); err != nil {
				return nil, err
			}
			// A no-op is short and a 2-core machine noisy: each timed round runs it
			// noopRepeats times, so its median stands on more samples.
			for i := range noopRepeats {
				if i > 0 && counted {
					break
				}
				if err := step("noop", mainSet, false); err != nil {
					return nil, err
				}
			}
			change++
			if _, err := Change(ctx, src.addr, res.set, change); err != nil {
				return nil, err
			}
			if err := step("change", mainSet, true); err != nil {
				return nil, err
			}
			if dst, err = dst.reset(); err != nil {
				return nil, err
			}
			if err := step("shared", sharedSet, first); err != nil {
				return nil, err
			}
			_ = os.RemoveAll(dir)
		}
	}
	if only == "" || strings.Contains(only, "oci") {
		say("to and from disk")
		if dst, err = benchDisk(ctx, res, src, dst, mainSet, rounds, jobs, bin, work); err != nil {
			return nil, err
		}
	}
	res.took = time.Since(res.started)
	return res, nil
}

// keepRunning serves a copied set for profiling a peer by hand.
func keepRunning(ctx context.Context, spec SetSpec, jobs int, bin, work string) error {
	bin, _ = filepath.Abs(bin)
	src, dst, err := startRegistries(bin, work)
	if err != nil {
		return err
	}
	defer src.stop()
	defer func() { dst.stop(); _ = os.RemoveAll(work) }()
	set, err := Push(ctx, spec, src.addr, 8)
	if err != nil {
		return err
	}
	var repos []Repo
	for _, r := range set.Repos {
		if !r.Shared {
			repos = append(repos, r)
		}
	}
	dir, err := os.MkdirTemp("", "bench-keep-")
	if err != nil {
		return err
	}
	for _, p := range peers(bin) {
		if p.regwire && p.mode == batch {
			r, err := p.run(ctx, dir, src.addr, dst.addr, repos, jobs)
			if err != nil {
				return err
			}
			say("copied in %s; source %s, target %s; regwire's file: %s/regwire.yaml; SSL_CERT_FILE=%s", r.wall.Round(time.Millisecond), src.addr, dst.addr, dir, src.tls.ca)
		}
	}
	<-ctx.Done()
	return nil
}

// startup is the median wall time of n runs of argv, each started from the launcher as
// every timed run is.
func startup(ctx context.Context, argv []string, n int) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-startup-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p := &peer{argv: func(string, string, string, []Repo, int) ([][]string, error) { return [][]string{argv}, nil }}
	walls := make([]time.Duration, 0, n)
	for range n {
		r, err := p.run(ctx, dir, "", "", nil, 0)
		if err != nil {
			return 0, err
		}
		walls = append(walls, r.wall)
	}
	slices.Sort(walls)
	return walls[n/2], nil
}
