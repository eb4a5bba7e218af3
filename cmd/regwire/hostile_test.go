package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/test/testutil"
)

// regwireRun is one run of the regwire binary.
type regwireRun struct {
	out    string
	err    error
	took   time.Duration
	maxRSS int64 // bytes
}

// runRegwire runs the binary with args, killed after a minute, and measures it; its peak
// RSS is sampled while it runs (testutil.PeakRSS).
func runRegwire(t *testing.T, args ...string) regwireRun {
	t.Helper()
	const limit = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if len(args) > 0 && args[0] == "sync" {
		// Each case must meet its hostile registry: a blob an earlier case left in the
		// target would otherwise be mounted from there instead of read from the source.
		args = append(args, "--no-blob-cache")
	}
	cmd := exec.CommandContext(ctx, buildBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if hwm := testutil.PeakRSS(cmd.Process.Pid); hwm > peak.Load() {
				peak.Store(hwm)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	<-sampled
	r := regwireRun{out: out.String(), err: err, took: time.Since(start), maxRSS: peak.Load()}
	if ctx.Err() != nil {
		t.Fatalf("regwire %s did not end within %s:\n%s", strings.Join(args, " "), limit, r.out)
	}
	return r
}

// TestHostileRegistriesCannotHangOrBloatACopy runs `regwire sync` against registries that
// stall, loop or send too much. Each run ends by itself within its bound, under the
// manager's memory limit, naming the side at fault, and never reports a broken image as
// copied.
func TestHostileRegistriesCannotHangOrBloatACopy(t *testing.T) {
	t.Parallel()
	const stall = time.Second
	const memoryLimit = 256 << 20 // the manager's
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	layer, _ := testutil.FirstLayer(t, testutil.PushImage(t, src.Host+"/library/app:1", 16<<20, 1))
	idx := testutil.PushIndex(t, src.Host+"/library/multi:1", []string{"linux/amd64", "linux/arm64"}, 1024, 1)

	// isBlobGet: a GET of the image's 16 MiB layer.
	isBlobGet := func(r *http.Request) bool { return testutil.IsBlobGet(r, layer.String()) }
	cases := []struct {
		name string
		// side is "source" or "target": which registry misbehaves.
		side      string
		intercept func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool
		args      []string
		want      []string
	}{
		{name: "a source that sends headers and 64 KiB of a blob, then nothing, fails as a stalled source body",
			side: "source", want: []string{"source", "no progress", "(body)"},
			intercept: func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !isBlobGet(r) {
					return false
				}
				h.Stall(w, r, 16<<20)
				return true
			}},
		{name: "a source that never answers manifest requests fails as stalled headers",
			side: "source", want: []string{"source", "no progress", "(headers)"},
			intercept: func(h *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/manifests/") {
					return false
				}
				h.Hang(r)
				return true
			}},
		// Loopback socket buffers take megabytes: the stall shows while the request is sent
		// (send) or, once the kernel has taken all of it, while its answer is awaited (headers).
		{name: "a target that stops reading an upload mid-PATCH fails as a stalled target",
			side: "target", want: []string{"target", `Patch "`, "no progress"},
			intercept: func(h *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPatch {
					return false
				}
				_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
				h.Hang(r)
				return true
			}},
		{name: "a source that redirects a blob to itself stops at the redirect bound",
			side: "source", want: []string{"source", "maxRedirects"},
			intercept: func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !isBlobGet(r) {
					return false
				}
				http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
				return true
			}},
		{name: "a tag listing whose next page is itself is a loop",
			side: "source", args: []string{"--all-tags", "--dry-run"}, want: []string{"loops"},
			intercept: func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/tags/list") {
					return false
				}
				w.Header().Set("Link", fmt.Sprintf(`<%s?n=1000&last=t999>; rel="next"`, r.URL.Path))
				tags := make([]string, 1000)
				for i := range tags {
					tags[i] = fmt.Sprintf(`"t%d"`, i)
				}
				fmt.Fprintf(w, `{"name":"library/app","tags":[%s]}`, strings.Join(tags, ","))
				return true
			}},
		{name: "an endless tag listing stops at the listing bound",
			side: "source", args: []string{"--all-tags", "--dry-run"}, want: []string{"maxTagListBytes"},
			intercept: func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/tags/list") {
					return false
				}
				_, _ = io.WriteString(w, `{"name":"library/app","tags":["t"`)
				chunk := []byte(strings.Repeat(`,"a-tag-name-of-some-length"`, 1000))
				for r.Context().Err() == nil {
					if _, err := w.Write(chunk); err != nil {
						return true
					}
				}
				return true
			}},
		{name: "a 200 MB manifest stops at the OCI spec's 4 MiB",
			side: "source", want: []string{"source", "maxManifestBytes"},
			intercept: func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
					return false
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				w.Header().Set("Content-Length", fmt.Sprint(200<<20))
				w.WriteHeader(http.StatusOK)
				chunk := make([]byte, 1<<20)
				for range 200 {
					if _, err := w.Write(chunk); err != nil {
						return true
					}
				}
				return true
			}},
		{name: "a source that trickles a blob, never stalling, ends at the minimum transfer rate",
			side: "source", want: []string{"source", "minTransferRate"},
			intercept: func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !isBlobGet(r) {
					return false
				}
				w.Header().Set("Content-Length", fmt.Sprint(16<<20))
				w.WriteHeader(http.StatusOK)
				for r.Context().Err() == nil { // 20 KiB/s, under the default 64 KiB/s
					if _, err := w.Write(make([]byte, 1<<10)); err != nil {
						return true
					}
					w.(http.Flusher).Flush()
					time.Sleep(50 * time.Millisecond)
				}
				return true
			}},
		{name: "a 403 on a source blob is the source's failure",
			side: "source", want: []string{"source", "Forbidden (HTTP 403)"},
			intercept: func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !isBlobGet(r) {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)
				return true
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			from, to := src.Host, dst.Host
			h := testutil.StartHostile(t, map[string]*testutil.Registry{"source": src, "target": dst}[tc.side], tc.intercept)
			if tc.side == "source" {
				from = h.Host()
			} else {
				to = h.Host()
			}
			args := append([]string{"sync", from + "/library/app", fmt.Sprintf("%s/case-%d/app", to, i), "--tags", "1", "--stall-timeout", stall.String(), "--progress", "none"}, tc.args...)
			if slices.Contains(tc.args, "--all-tags") {
				args = append([]string{"sync", from + "/library/app", fmt.Sprintf("%s/case-%d/app", to, i), "--stall-timeout", stall.String(), "--progress", "none"}, tc.args...)
			}
			r := runRegwire(t, args...)
			t.Logf("ended in %s, max RSS %d MiB, %d requests to the hostile registry", r.took.Round(time.Millisecond), r.maxRSS>>20, h.Requests.Load())
			if r.err == nil {
				t.Fatalf("regwire sync succeeded against a hostile registry:\n%s", r.out)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
			if tc.side == "source" && strings.Contains(r.out, ": target ") {
				t.Errorf("a source failure is reported as the target's:\n%s", r.out)
			}
			if strings.Contains(r.out, "copied     1 ") {
				t.Errorf("a broken copy is reported as copied:\n%s", r.out)
			}
			if r.maxRSS > memoryLimit {
				t.Errorf("max RSS %d MiB, over the manager's limit of %d MiB", r.maxRSS>>20, memoryLimit>>20)
			}
		})
	}

	t.Run("a manifest whose bytes differ from its advertised digest is refused, with --platform", func(t *testing.T) {
		t.Parallel()
		h := testutil.StartHostile(t, src, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/manifests/1") {
				return false
			}
			h.Rewrite(w, r, func(_ http.Header, body []byte) []byte { return append(body, '\n') }) // same header digest, other bytes
			return true
		})
		r := runRegwire(t, "sync", h.Host()+"/library/multi", dst.Host+"/mismatch/multi", "--tags", "1", "--platform", "linux/amd64",
			"--stall-timeout", stall.String(), "--progress", "none")
		if r.err == nil || !strings.Contains(r.out, "says its digest is "+idx.String()) || strings.Contains(r.out, "copied     1 ") {
			t.Fatalf("err %v:\n%s", r.err, r.out)
		}
	})

	t.Run("an index served as an image manifest is copied as the index it is", func(t *testing.T) {
		t.Parallel()
		// An OCI index without the optional mediaType field: only the Content-Type says
		// what it is, and the hostile registry says "image".
		small := testutil.PushImage(t, src.Host+"/library/bare:small", 1024, 1)
		d, _ := small.Digest()
		raw, _ := small.RawManifest()
		index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, d, len(raw))
		req, _ := http.NewRequest(http.MethodPut, src.URL+"/v2/library/bare/manifests/1", strings.NewReader(index))
		req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		resp, err := (&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}).Do(req) // not DefaultTransport: parallel tests closing httptest servers close its idle connections
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("pushing the bare index: %v %v", err, resp)
		}
		_ = resp.Body.Close()
		h := testutil.StartHostile(t, src, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/manifests/1") {
				return false
			}
			h.Rewrite(w, r, func(header http.Header, body []byte) []byte {
				header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				return body
			})
			return true
		})
		r := runRegwire(t, "sync", h.Host()+"/library/bare", dst.Host+"/labelled/bare", "--tags", "1", "--stall-timeout", stall.String(), "--progress", "none")
		if r.err != nil {
			t.Fatalf("%v:\n%s", r.err, r.out)
		}
		got, err := remote.Get(testutil.Ref(t, dst.Host+"/labelled/bare:1"))
		if err != nil || !got.MediaType.IsIndex() || string(got.Manifest) != index {
			t.Fatalf("the target holds %v (%v), want the index byte for byte", got, err)
		}
	})

	t.Run("a target that stores another digest than it was sent is not trusted", func(t *testing.T) {
		t.Parallel()
		h := testutil.StartHostile(t, dst, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			h.Rewrite(w, r, func(header http.Header, body []byte) []byte {
				header.Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
				return body
			})
			return true
		})
		r := runRegwire(t, "sync", src.Host+"/library/app", h.Host()+"/stored/app", "--tags", "1", "--stall-timeout", stall.String(), "--progress", "none")
		if r.err == nil || !strings.Contains(r.out, "the registry stored sha256:000") || strings.Contains(r.out, "copied     1 ") {
			t.Fatalf("err %v:\n%s", r.err, r.out)
		}
	})

	t.Run("redirects to a private address are refused unless asked for", func(t *testing.T) {
		t.Parallel()
		// The blob store answers on another loopback address: another host, and private.
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatalf("127.0.0.2 is not usable here: %v", err)
		}
		u, _ := url.Parse(src.URL)
		storage := &httptest.Server{Listener: l, Config: &http.Server{Handler: httputil.NewSingleHostReverseProxy(u), ReadHeaderTimeout: 10 * time.Second}}
		storage.Start()
		t.Cleanup(storage.Close)
		h := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			if !isBlobGet(r) {
				return false
			}
			http.Redirect(w, r, storage.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return true
		})
		args := []string{"sync", h.Host() + "/library/app", dst.Host + "/redirected/app", "--tags", "1", "--stall-timeout", "10s", "--progress", "none"}
		r := runRegwire(t, args...)
		if r.err == nil || !strings.Contains(r.out, "SSRF protection") {
			t.Fatalf("a redirect to 127.0.0.2 was followed by default: %v\n%s", r.err, r.out)
		}
		r = runRegwire(t, append(args, "--allow-private-redirects")...)
		if r.err != nil || !strings.Contains(r.out, "copied     1 ") {
			t.Fatalf("with --allow-private-redirects: %v\n%s", r.err, r.out)
		}
	})

	t.Run("a hundred thousand tags are listed and checked within the memory limit", func(t *testing.T) {
		t.Parallel()
		const n = 100_000
		var list bytes.Buffer
		list.WriteString(`{"name":"library/many","tags":[`)
		for i := range n {
			if i > 0 {
				list.WriteByte(',')
			}
			fmt.Fprintf(&list, `"v%d"`, i)
		}
		list.WriteString(`]}`)
		h := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			switch {
			case strings.HasSuffix(r.URL.Path, "/tags/list"):
				_, _ = w.Write(list.Bytes())
			case strings.Contains(r.URL.Path, "/manifests/"):
				w.WriteHeader(http.StatusNotFound) // every tag is gone by the time it is checked
			default:
				return false
			}
			return true
		})
		r := runRegwire(t, "sync", h.Host()+"/library/many", dst.Host+"/many/app", "--all-tags", "--dry-run", "--progress", "none", "--jobs", "16")
		t.Logf("%d tags in %s, max RSS %d MiB", n, r.took.Round(time.Millisecond), r.maxRSS>>20)
		if r.err == nil || !strings.Contains(r.out, fmt.Sprintf("%d tag(s)", n)) {
			t.Fatalf("err %v:\n%s", r.err, r.out[max(0, len(r.out)-2000):])
		}
		if r.maxRSS > memoryLimit {
			t.Errorf("max RSS %d MiB for %d tags, over the manager's limit of %d MiB", r.maxRSS>>20, n, memoryLimit>>20)
		}
	})

	t.Run("an index listing one child thousands of times, nested three deep, reads each manifest once", func(t *testing.T) {
		t.Parallel()
		// 3,000 entries at each of 3 levels over 4 distinct manifests: 27 billion paths,
		// each once a check and a read of its child.
		img := testutil.PushImage(t, src.Host+"/library/nested:image", 1024, 1)
		desc, err := partial.Descriptor(img)
		if err != nil {
			t.Fatal(err)
		}
		for level := range 3 {
			entries := make([]v1.Descriptor, 3000)
			for i := range entries {
				entries[i] = *desc
			}
			raw, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries})
			if err != nil {
				t.Fatal(err)
			}
			tag := fmt.Sprintf("level-%d", level+1)
			if level == 2 {
				tag = "1"
			}
			if err := remote.Put(testutil.Ref(t, src.Host+"/library/nested:"+tag), rawManifest{raw, types.OCIImageIndex}); err != nil {
				t.Fatalf("pushing an index of %d KiB: %v", len(raw)>>10, err)
			}
			d, _, _ := v1.SHA256(bytes.NewReader(raw))
			desc = &v1.Descriptor{MediaType: types.OCIImageIndex, Size: int64(len(raw)), Digest: d}
		}
		var gets atomic.Int64
		h := testutil.StartHostile(t, src, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
				gets.Add(1)
			}
			return false
		})
		r := runRegwire(t, "sync", h.Host()+"/library/nested", dst.Host+"/nested/app", "--tags", "1", "--stall-timeout", stall.String(), "--progress", "none")
		t.Logf("ended in %s, max RSS %d MiB, %d requests to the source, %d manifest GETs", r.took.Round(time.Millisecond), r.maxRSS>>20, h.Requests.Load(), gets.Load())
		if r.err != nil || !strings.Contains(r.out, "copied     1 ") {
			t.Fatalf("%v:\n%s", r.err, r.out)
		}
		if got := gets.Load(); got > 4+2 {
			t.Errorf("%d manifest GETs for 4 distinct manifests, want at most 6", got)
		}
		if got := h.Requests.Load(); got > 40 {
			t.Errorf("%d requests to the source for 4 manifests and 2 blobs, want at most 40", got)
		}
		if got, err := remote.Head(testutil.Ref(t, dst.Host+"/nested/app:1")); err != nil || got.Digest != desc.Digest {
			t.Errorf("the target holds %v (%v), want %s", got, err, desc.Digest)
		}
		if r.maxRSS > memoryLimit {
			t.Errorf("max RSS %d MiB, over the manager's limit of %d MiB", r.maxRSS>>20, memoryLimit>>20)
		}
	})

	t.Run("a layer declaring 100 GiB is refused before a byte of it moves", func(t *testing.T) {
		t.Parallel()
		img := testutil.PushImage(t, src.Host+"/library/huge:real", 1024, 1)
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		m.Layers[0].Size = 100 << 30
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(testutil.Ref(t, src.Host+"/library/huge:1"), rawManifest{raw, m.MediaType}); err != nil {
			t.Fatal(err)
		}
		layer := m.Layers[0].Digest.String()
		var blobGets atomic.Int64
		h := testutil.StartHostile(t, src, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
			if !testutil.IsBlobGet(r, layer) {
				return false
			}
			blobGets.Add(1)
			w.Header().Set("Content-Length", fmt.Sprint(int64(100<<30)))
			w.WriteHeader(http.StatusOK)
			for r.Context().Err() == nil { // a byte every 2 s: never a stall at the default
				if _, err := w.Write([]byte{0}); err != nil {
					return true
				}
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Second)
			}
			return true
		})
		r := runRegwire(t, "sync", h.Host()+"/library/huge", dst.Host+"/huge/app", "--tags", "1", "--progress", "none")
		t.Logf("ended in %s: %s", r.took.Round(time.Millisecond), strings.TrimSpace(r.out))
		if r.err == nil || !strings.Contains(r.out, "maxBlobBytes") || !strings.Contains(r.out, "source") {
			t.Fatalf("err %v, want the source's maxBlobBytes bound:\n%s", r.err, r.out)
		}
		if got := blobGets.Load(); got != 0 {
			t.Errorf("the source was asked for the 100 GiB layer %d times, want 0", got)
		}
	})

	t.Run("a source that accepts connections and never answers fails as stalled", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					_ = c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		r := runRegwire(t, "sync", l.Addr().String()+"/library/app", dst.Host+"/silent/app", "--tags", "1", "--stall-timeout", stall.String(), "--progress", "none")
		t.Logf("ended in %s", r.took.Round(time.Millisecond))
		if r.err == nil || !strings.Contains(r.out, "source") || !strings.Contains(r.out, "no progress") {
			t.Fatalf("err %v:\n%s", r.err, r.out)
		}
	})
}

// rawManifest is a manifest put as it is (remote.Put's Taggable).
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil } //nolint:unparam // go-containerregistry's withMediaType interface
