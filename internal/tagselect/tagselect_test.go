package tagselect_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/tagselect"
)

func TestSelector(t *testing.T) {
	t.Parallel()
	available := []string{"1.35.0", "1.36", "1.36.1", "1.37.0-rc.1", "2.0.0", "latest", "musl", "v1.36.2", "1.36-musl"}
	cases := []struct {
		name string
		spec tagselect.Spec
		want []string
	}{
		{"an explicit list selects exactly those tags", tagselect.Spec{Tags: []string{"latest", "1.36", "absent"}}, []string{"1.36", "latest"}},
		{"a pattern is anchored at both ends", tagselect.Spec{Pattern: `1\.36`}, []string{"1.36"}},
		{"a pattern can select a family", tagselect.Spec{Pattern: `1\.36.*`}, []string{"1.36", "1.36.1", "1.36-musl"}},
		{"a semver range ignores tags that are not versions", tagselect.Spec{Semver: ">=1.36 <2"}, []string{"1.36", "1.36.1", "v1.36.2"}},
		{"a semver tilde range selects patch releases", tagselect.Spec{Semver: "~1.36.1"}, []string{"1.36.1", "v1.36.2"}},
		{"the selections add up", tagselect.Spec{Tags: []string{"latest"}, Pattern: "musl", Semver: "^2"}, []string{"2.0.0", "latest", "musl"}},
		{"an empty spec selects nothing", tagselect.Spec{}, nil},
		{"exclude leaves out what it matches, whatever selected it", tagselect.Spec{Pattern: `.*`, Exclude: `.*-(rc|musl)(\..*)?|latest`}, []string{"1.35.0", "1.36", "1.36.1", "2.0.0", "musl", "v1.36.2"}},
		{"exclude is anchored at both ends", tagselect.Spec{Pattern: `1\.36.*`, Exclude: `musl`}, []string{"1.36", "1.36.1", "1.36-musl"}},
		{"newest keeps the N highest versions, in listing order", tagselect.Spec{Pattern: `.*`, Newest: 3}, []string{"1.37.0-rc.1", "2.0.0", "v1.36.2"}},
		{"exclude keeps prereleases out of the newest", tagselect.Spec{Pattern: `.*`, Exclude: `.*-rc.*`, Newest: 3}, []string{"1.36.1", "2.0.0", "v1.36.2"}},
		{"newest counts what exclude left", tagselect.Spec{Semver: ">=1", Exclude: `2\..*`, Newest: 2}, []string{"1.36.1", "v1.36.2"}},
		{"newest keeps all when there are fewer", tagselect.Spec{Tags: []string{"1.36", "latest"}, Newest: 5}, []string{"1.36"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := tagselect.New(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Filter(available); !slices.Equal(got, tc.want) {
				t.Errorf("Filter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInvalidSpecsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		spec  tagselect.Spec
		field string
	}{
		{"an unbalanced pattern names tagPattern", tagselect.Spec{Pattern: "1.(36"}, "tagPattern"},
		{"a Perl-only construct names tagPattern", tagselect.Spec{Pattern: `(?<=v)1`}, "tagPattern"},
		{"a word as a range names semver", tagselect.Spec{Semver: "newest"}, "semver"},
		{"a broken comparison names semver", tagselect.Spec{Semver: ">= 1.2.x.y"}, "semver"},
		{"an unbalanced exclude names exclude", tagselect.Spec{Pattern: ".*", Exclude: "rc("}, "exclude"},
		{"a negative newest names newest", tagselect.Spec{Pattern: ".*", Newest: -1}, "newest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tagselect.New(tc.spec)
			var fe *tagselect.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if fe.Field != tc.field || !strings.HasPrefix(err.Error(), "spec.source."+tc.field+" ") {
				t.Errorf("err = %v, want it to name spec.source.%s", err, tc.field)
			}
		})
	}
}

func FuzzNew(f *testing.F) {
	f.Add("1\\.36.*", ">=1.36 <2", "latest")
	f.Add("(", "~", "")
	f.Add("[[:alpha:]]+", "^1 || ^2", "1.36")
	f.Fuzz(func(t *testing.T, pattern, semver, tag string) {
		s, err := tagselect.New(tagselect.Spec{Pattern: pattern, Semver: semver, Tags: []string{tag}})
		if err != nil {
			var fe *tagselect.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v does not name a field", err)
			}
			return
		}
		if !s.Match(tag) {
			t.Fatalf("listed tag %q not selected", tag)
		}
	})
}

// FuzzExcludeAndNewest: whatever exclude and newest say, the result is a subset of what
// was given, nothing excluded survives, at most newest tags are kept, and every tag is
// either kept or counted as left out.
func FuzzExcludeAndNewest(f *testing.F) {
	f.Add(".*-rc.*", 2, "1.36,1.37.0-rc.1,2.0.0,latest")
	f.Add("(", 1, "a")
	f.Add("", 0, "v1,1.0.0,1.0")
	f.Fuzz(func(t *testing.T, exclude string, newest int, csv string) {
		available := strings.Split(csv, ",")
		s, err := tagselect.New(tagselect.Spec{Pattern: ".*", Exclude: exclude, Newest: newest})
		if err != nil {
			var fe *tagselect.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v does not name a field", err)
			}
			return
		}
		got, left := s.FilterCounted(available)
		if newest > 0 && len(got) > newest {
			t.Fatalf("%d tags kept, more than newest %d", len(got), newest)
		}
		unique := len(slices.Compact(slices.Sorted(slices.Values(available))))
		if len(got)+left.Unselected+left.Excluded+left.Older+left.NotVersions != unique {
			t.Fatalf("kept %d and left out %+v of %d tags", len(got), left, unique)
		}
		for _, g := range got {
			if !slices.Contains(available, g) || !s.Match(g) {
				t.Fatalf("kept %q: not given, or excluded", g)
			}
		}
	})
}

func TestWhatIsLeftOutIsCountedByReason(t *testing.T) {
	t.Parallel()
	available := []string{"1.35.0", "1.36", "1.36.1", "1.37.0-rc.1", "2.0.0", "latest", "musl", "v1.36.2", "1.36-musl"}
	s, err := tagselect.New(tagselect.Spec{Pattern: `.*`, Exclude: `.*musl`, Newest: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, left := s.FilterCounted(available)
	want := tagselect.LeftOut{Excluded: 2, Older: 4, NotVersions: 1}
	if !slices.Equal(got, []string{"1.37.0-rc.1", "2.0.0"}) || left != want {
		t.Errorf("FilterCounted = %v, %+v; want [1.37.0-rc.1 2.0.0], %+v", got, left, want)
	}
	if msg := left.String(2); msg != "2 excluded, 4 older than the newest 2, 1 not versions" {
		t.Errorf("String = %q", msg)
	}
	named, only := mustNew(t, tagselect.Spec{Tags: []string{"1.36", "1.36-musl", "latest"}, Exclude: "latest"}).Named()
	if !only || !slices.Equal(named, []string{"1.36", "1.36-musl"}) {
		t.Errorf("Named with exclude = %v, %v", named, only)
	}
}

func mustNew(t *testing.T, spec tagselect.Spec) *tagselect.Selector {
	t.Helper()
	s, err := tagselect.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
