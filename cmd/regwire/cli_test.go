package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/test/testutil"
)

// TestExitCodesAndJSONResults runs the lean binary as a pipeline would: exit 0 when every
// tag is copied or up to date, 1 when the work was tried and some failed, 2 when the
// command line or its file is wrong; with -o json, one document on standard output
// whatever the outcome.
func TestExitCodesAndJSONResults(t *testing.T) {
	t.Parallel()
	bin := buildLean(t)
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	for _, tag := range []string{"1.0", "2.0"} {
		testutil.PushImage(t, src.Host+"/library/app:"+tag, 2048, 2)
	}
	dockerConfig := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(t.TempDir(), "imagesyncs.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	imageSync := func(name, srcRepo, dstRepo, tags string) string {
		return "---\napiVersion: regwire.dev/v1alpha1\nkind: ImageSync\nmetadata: {name: " + name + "}\nspec:\n  source: {image: " + srcRepo + ", tags: [" + tags + "]}\n  target: {image: " + dstRepo + "}\n"
	}
	good := imageSync("app", src.Host+"/library/app", dst.Host+"/file/app", `"1.0"`)
	missing := imageSync("gone", src.Host+"/library/gone", dst.Host+"/file/gone", `"1.0"`)

	for _, tc := range []struct {
		name string
		args []string
		code int
		// check looks at the JSON document (nil: the output is not JSON).
		check func(t *testing.T, r syncReport)
	}{
		{name: "every tag is copied: exit 0", code: 0,
			args: []string{"sync", src.Host + "/library/app", dst.Host + "/app", "--all-tags", "--insecure", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				if r.Summary.Copied != 2 || r.Summary.Failed != 0 || len(r.Repositories) != 1 || len(r.Repositories[0].Tags) != 2 {
					t.Errorf("summary %+v, repositories %+v", r.Summary, r.Repositories)
				}
				for _, tag := range r.Repositories[0].Tags {
					if tag.Result != resultCopied || !strings.HasPrefix(tag.TargetDigest, "sha256:") || tag.Bytes == 0 {
						t.Errorf("tag %+v", tag)
					}
				}
			}},
		{name: "everything is up to date: exit 0", code: 0,
			args: []string{"sync", src.Host + "/library/app", dst.Host + "/app", "--all-tags", "--insecure", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				if r.Summary.UpToDate != 2 || r.Summary.Copied != 0 || r.Summary.ManifestChecks != 4 {
					t.Errorf("summary %+v", r.Summary)
				}
			}},
		{name: "a dry run reports what it would copy: exit 0", code: 0,
			args: []string{"sync", src.Host + "/library/app", dst.Host + "/dry/app", "--tags", "1.0", "--insecure", "--dry-run", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				if !r.Summary.DryRun || r.Summary.WouldCopy != 1 || r.Summary.Copied != 0 || r.Repositories[0].Tags[0].Result != resultWouldCopy {
					t.Errorf("summary %+v, repositories %+v", r.Summary, r.Repositories)
				}
			}},
		{name: "a tag the source lacks fails alone: exit 1", code: 1,
			args: []string{"sync", src.Host + "/library/app", dst.Host + "/app", "--tags", "1.0,nope", "--insecure", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				tags := r.Repositories[0].Tags
				if r.Summary.Failed != 1 || r.Summary.UpToDate != 1 || tags[1].Result != resultFailed || !strings.Contains(tags[1].Error, "nope") {
					t.Errorf("summary %+v, tags %+v", r.Summary, tags)
				}
			}},
		{name: "a source repository that does not exist: exit 1", code: 1,
			args: []string{"sync", src.Host + "/library/gone", dst.Host + "/gone", "--all-tags", "--insecure", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				if len(r.Repositories) != 1 || !strings.Contains(r.Repositories[0].Error, "library/gone") || len(r.Repositories[0].Tags) != 0 {
					t.Errorf("repositories %+v", r.Repositories)
				}
			}},
		{name: "a file with one ImageSync failing: exit 1", code: 1,
			args: []string{"sync", "-f", file(good + missing), "--insecure", "-o", "json"},
			check: func(t *testing.T, r syncReport) {
				if len(r.Repositories) != 2 || r.Repositories[0].Name != "app" || r.Repositories[0].Tags[0].Result != resultCopied ||
					r.Repositories[1].Name != "gone" || r.Repositories[1].Tags[0].Result != resultFailed {
					t.Errorf("repositories %+v", r.Repositories)
				}
			}},
		{name: "no tag selection: exit 2", code: 2, args: []string{"sync", src.Host + "/library/app", dst.Host + "/app"}},
		{name: "an unknown flag: exit 2", code: 2, args: []string{"sync", "--no-such-flag", "a/b", "c/d"}},
		{name: "one argument too few: exit 2", code: 2, args: []string{"sync", "a/b", "--all-tags"}},
		{name: "an output format regwire does not write: exit 2", code: 2, args: []string{"sync", "a/b", "c/d", "--all-tags", "-o", "yaml"}},
		{name: "a bad tag pattern: exit 2", code: 2, args: []string{"sync", "a/b", "c/d", "--tag-pattern", "(x"}},
		{name: "a file that does not exist: exit 2", code: 2, args: []string{"sync", "-f", filepath.Join(t.TempDir(), "none.yaml")}},
		{name: "a file that is not ImageSyncs: exit 2", code: 2, args: []string{"sync", "-f", file("kind: ImageSync\nspec: {nope: 1}\n")}},
		{name: "a command that does not exist: exit 2", code: 2, args: []string{"frobnicate"}},
	} {
		// In order: the second case finds what the first copied.
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if code != 0 && !strings.HasPrefix(stderr.String(), "regwire: ") {
				t.Errorf("the error is not on standard error: %q", stderr.String())
			}
			if tc.check == nil {
				return
			}
			var r syncReport
			dec := json.NewDecoder(strings.NewReader(stdout.String()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("standard output is not one JSON report: %v\n%s", err, stdout.String())
			}
			if dec.More() {
				t.Errorf("more than one document on standard output:\n%s", stdout.String())
			}
			tc.check(t, r)
		})
	}
}
