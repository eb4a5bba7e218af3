package testutil

import (
	"bufio"
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// APIWrites is the API server's own count of write requests (POST, PUT, PATCH, DELETE,
// APPLY) so far, by resource ("registrymirrors/status" for a subresource). A write that
// changes nothing still counts, unlike a resource version.
func APIWrites(t testing.TB, cfg *rest.Config) map[string]float64 {
	t.Helper()
	return APIRequests(t, cfg, "POST", "PUT", "PATCH", "DELETE", "APPLY")
}

// APIReads is the API server's count of GET and LIST requests so far, by resource: the
// reads that bypass a cache (watches are not counted).
func APIReads(t testing.TB, cfg *rest.Config) map[string]float64 {
	t.Helper()
	return APIRequests(t, cfg, "GET", "LIST")
}

// APIRequests is the API server's own count of requests with the given verbs so far, by
// resource ("registrymirrors/status" for a subresource).
func APIRequests(t testing.TB, cfg *rest.Config, verbs ...string) map[string]float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return Counter(strings.NewReader(string(raw)), "apiserver_request_total", func(label func(string) string) (string, bool) {
		key := label("resource")
		if sub := label("subresource"); sub != "" {
			key += "/" + sub
		}
		return key, slices.Contains(verbs, label("verb"))
	})
}

// Counter sums the samples of the Prometheus counter name in text exposition r, by the
// key group returns for each sample's labels (skipping those it refuses).
func Counter(r io.Reader, name string, group func(label func(string) string) (string, bool)) map[string]float64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	out := map[string]float64{}
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		labels := map[string]string{}
		for _, kv := range strings.Split(line[len(name)+1:end], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		key, ok := group(func(k string) string { return labels[k] })
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err == nil {
			out[key] += v
		}
	}
	return out
}
