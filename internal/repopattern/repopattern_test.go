package repopattern

import (
	"strings"
	"testing"
)

func TestRepositoryPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern, namespace, repository string
		want                                 bool
	}{
		{name: "a literal path matches itself", pattern: "my-docker/busybox", repository: "my-docker/busybox", want: true},
		{name: "a literal path matches nothing longer", pattern: "my-docker/busybox", repository: "my-docker/busybox/x"},
		{name: "the namespace placeholder is the ImageSync's namespace", pattern: "my-docker/{namespace}/**", namespace: "team-a", repository: "my-docker/team-a/app", want: true},
		{name: "another namespace's repository does not match", pattern: "my-docker/{namespace}/**", namespace: "team-b", repository: "my-docker/team-a/app"},
		{name: "a namespace that is a prefix of another does not match it", pattern: "my-docker/{namespace}/**", namespace: "team", repository: "my-docker/team-a/app"},
		{name: "** matches several segments", pattern: "my-docker/**", repository: "my-docker/a/b/c", want: true},
		{name: "** matches no segment", pattern: "my-docker/**/app", repository: "my-docker/app", want: true},
		{name: "a trailing ** needs the prefix", pattern: "my-docker/**", repository: "other/app"},
		{name: "* stays within one segment", pattern: "my-docker/*", repository: "my-docker/a/b"},
		{name: "* matches part of a segment", pattern: "my-docker/{namespace}-*", namespace: "team-a", repository: "my-docker/team-a-app", want: true},
		{name: "** alone matches everything", pattern: "**", repository: "a/b", want: true},
		{name: "an empty repository matches nothing", pattern: "**", repository: ""},
		{name: "characters path.Match would read are literal", pattern: "my-docker/a?", repository: "my-docker/ab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Match(tc.pattern, tc.namespace, tc.repository); got != tc.want {
				t.Errorf("Match(%q, %q, %q) = %v, want %v", tc.pattern, tc.namespace, tc.repository, got, tc.want)
			}
		})
	}
}

// FuzzMatch: any pattern and repository end (a pattern of many ** is not exponential in
// practice: consecutive ones fold into one), and a repository matches the pattern that is
// itself, with no wildcard.
func FuzzMatch(f *testing.F) {
	f.Add("my-docker/{namespace}/**", "team-a", "my-docker/team-a/app")
	f.Add("**/**/**/**/x", "ns", "a/b/c/d/e/f/g/h/i/j/k")
	f.Fuzz(func(t *testing.T, pattern, namespace, repository string) {
		if len(pattern) > 255 || len(repository) > 255 {
			return
		}
		_ = Match(pattern, namespace, repository)
		if repository != "" && !strings.ContainsAny(repository, "*{") && !Match(repository, namespace, repository) {
			t.Errorf("%q does not match itself", repository)
		}
	})
}

func TestPatternsMatchingAtOrBelowAPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern, namespace, prefix string
		want                             bool
	}{
		{name: "a pattern of one segment below the prefix matches below it", pattern: "my-docker/{namespace}/apps/*", namespace: "team-a", prefix: "my-docker/team-a/apps", want: true},
		{name: "a pattern matching the prefix itself matches at it", pattern: "my-docker/apps", prefix: "my-docker/apps", want: true},
		{name: "** matches anything below", pattern: "my-docker/**", prefix: "my-docker/a/b", want: true},
		{name: "a pattern beside the prefix does not match", pattern: "my-docker/team-b/**", prefix: "my-docker/team-a"},
		{name: "a pattern shorter than the prefix does not match", pattern: "my-docker/*", prefix: "my-docker/a/b"},
		{name: "another namespace's prefix does not match", pattern: "my-docker/{namespace}/**", namespace: "team-a", prefix: "my-docker/team-b"},
		{name: "an empty prefix matches nothing", pattern: "**", prefix: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := MatchAtOrBelow(tc.pattern, tc.namespace, tc.prefix); got != tc.want {
				t.Errorf("MatchAtOrBelow(%q, %q, %q) = %v, want %v", tc.pattern, tc.namespace, tc.prefix, got, tc.want)
			}
		})
	}
}

// FuzzMatchAtOrBelow: a pattern matching a repository matches at or below each of the
// repository's own prefixes.
func FuzzMatchAtOrBelow(f *testing.F) {
	f.Add("my-docker/{namespace}/apps/*", "team-a", "my-docker/team-a/apps/web")
	f.Fuzz(func(t *testing.T, pattern, namespace, repository string) {
		if len(pattern) > 255 || len(repository) > 255 || !Match(pattern, namespace, repository) {
			return
		}
		segs := strings.Split(repository, "/")
		for i := 1; i <= len(segs); i++ {
			if p := strings.Join(segs[:i], "/"); p != "" && !MatchAtOrBelow(pattern, namespace, p) {
				t.Errorf("%q matches %q but not at or below its prefix %q", pattern, repository, p)
			}
		}
	})
}
