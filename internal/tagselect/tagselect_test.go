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
