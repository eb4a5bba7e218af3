package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestTheImageSetIsDeterministic(t *testing.T) {
	t.Parallel()
	digests := func(seed uint64) []string {
		g := &generator{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
		var out []string
		for range 3 {
			l := g.layer(g.between(1000, 5000))
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d.String())
		}
		return out
	}
	a, b := digests(7), digests(7)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, layer %d: %s and %s", i, a[i], b[i])
		}
	}
	if c := digests(8); c[0] == a[0] && c[1] == a[1] {
		t.Error("a different seed gave the same layers")
	}
}

func TestLayersAreIncompressibleAndSized(t *testing.T) {
	t.Parallel()
	g := &generator{rng: rand.New(rand.NewPCG(1, 2))}
	l := g.layer(1 << 20)
	size, _ := l.Size()
	if size < 1<<20 || size > 1<<20+8<<10 { // stored gzip of a tar: a little framing, no shrinking
		t.Errorf("a layer of 1 MiB of data is %d bytes compressed", size)
	}
}

func TestOnlyManifestRequestsCountAsManifestChecks(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"/v2/bench/app-00/manifests/1.0.0":    true,
		"/v2/a/b/c/manifests/sha256:abc":      true,
		"/v2/bench/app-00/blobs/sha256:abc":   false,
		"/v2/manifests/blobs/sha256:abc":      false,
		"/v2/":                                false,
		"/v2/bench/app-00/tags/list":          false,
		"/v2/bench/manifests/x/manifests/1.0": true,
	} {
		if got := isManifestPath(path); got != want {
			t.Errorf("isManifestPath(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestMediansAndFloor(t *testing.T) {
	t.Parallel()
	c := &cell{runs: []run{{wall: 5 * time.Second}, {wall: time.Second}, {wall: 3 * time.Second}, {wall: 2 * time.Second}, {wall: 4 * time.Second}}}
	if m := median(c); m != 3*time.Second {
		t.Errorf("median %s, want 3s", m)
	}
	if lo, hi := spread(c); lo != time.Second || hi != 5*time.Second {
		t.Errorf("spread %s–%s", lo, hi)
	}
	r := &results{loopback: 2e9, sha256: 1e9}
	if f := r.floor(2e9); f != 2*time.Second {
		t.Errorf("floor of 2 GB at 1 GB/s (the slower stage) = %s, want 2s", f)
	}
}
