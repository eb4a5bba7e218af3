// Package tagselect decides which tags of a repository an ImageSync copies: a tag is
// selected when it is listed, matches the pattern, or satisfies the semver range; then
// those that match exclude are left out, and with newest only the N highest versions of
// what remains are kept.
package tagselect

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Spec is the user's selection, as in ImageSync spec.source.
type Spec struct {
	// Tags are selected by name.
	Tags []string
	// Pattern is an RE2 expression matched against the whole tag.
	Pattern string
	// Semver is a range such as ">=1.36 <2" or "~1.36".
	Semver string
	// Exclude is an RE2 expression matched against the whole tag: a tag it matches is left
	// out, whatever selected it.
	Exclude string
	// Newest, when positive, keeps only the N highest semantic versions among the tags
	// selected and not excluded; tags that are not versions are then left out.
	Newest int
	// ByCreated makes Newest keep the N images created last instead (the caller reads
	// their creation times: NewestByCreated).
	ByCreated bool
}

// LeftOut counts the tags a selection left out of those it was given, by reason.
type LeftOut struct {
	// Unselected are tags no list, pattern or range selects.
	Unselected int `json:"unselected,omitempty"`
	// Excluded are selected tags that exclude matches.
	Excluded int `json:"excluded,omitempty"`
	// Older are versions below the newest N kept; NotVersions are tags newest cannot
	// order.
	Older       int `json:"older,omitempty"`
	NotVersions int `json:"notVersions,omitempty"`
}

// String says what was left out, e.g. "3 excluded, 12 older than the newest 5".
func (l LeftOut) String(newest int) string {
	var parts []string
	if l.Excluded > 0 {
		parts = append(parts, fmt.Sprintf("%d excluded", l.Excluded))
	}
	if l.Older > 0 {
		parts = append(parts, fmt.Sprintf("%d older than the newest %d", l.Older, newest))
	}
	if l.NotVersions > 0 {
		parts = append(parts, fmt.Sprintf("%d not versions", l.NotVersions))
	}
	return strings.Join(parts, ", ")
}

// Selector selects tags. The zero value selects nothing.
type Selector struct {
	tags    []string
	pattern *regexp.Regexp
	semver  *semver.Constraints
	exclude *regexp.Regexp
	newest  int
	// byCreated: newest is applied by the caller, by image creation time.
	byCreated bool
}

// FieldError is an invalid part of a Spec; Field is its path below spec.source.
type FieldError struct {
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("spec.source.%s %q: %v", e.Field, e.Value, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// New checks a Spec and builds its Selector. Errors are *FieldError naming the field.
func New(s Spec) (*Selector, error) {
	sel := &Selector{tags: slices.Clone(s.Tags)}
	slices.Sort(sel.tags)
	if s.Pattern != "" {
		re, err := regexp.Compile(`^(?:` + s.Pattern + `)$`)
		if err != nil {
			return nil, &FieldError{Field: "tagPattern", Value: s.Pattern, Err: fmt.Errorf("not a valid RE2 regular expression: %w", err)}
		}
		sel.pattern = re
	}
	if s.Semver != "" {
		c, err := semver.NewConstraint(s.Semver)
		if err != nil {
			return nil, &FieldError{Field: "semver", Value: s.Semver, Err: fmt.Errorf("not a valid semantic version range (examples: \">=1.36 <2\", \"~1.36\", \"^1\"): %w", err)}
		}
		sel.semver = c
	}
	if s.Exclude != "" {
		re, err := regexp.Compile(`^(?:` + s.Exclude + `)$`)
		if err != nil {
			return nil, &FieldError{Field: "exclude", Value: s.Exclude, Err: fmt.Errorf("not a valid RE2 regular expression: %w", err)}
		}
		sel.exclude = re
	}
	if s.Newest < 0 {
		return nil, &FieldError{Field: "newest", Value: fmt.Sprint(s.Newest), Err: errors.New("must be 1 or more")}
	}
	sel.newest, sel.byCreated = s.Newest, s.ByCreated && s.Newest > 0
	return sel, nil
}

// Match reports whether tag is selected and not excluded (newest aside, which needs the
// other tags: Filter).
func (s *Selector) Match(tag string) bool {
	return s.selects(tag) && (s.exclude == nil || !s.exclude.MatchString(tag))
}

// selects reports whether a list, the pattern or the range selects tag.
func (s *Selector) selects(tag string) bool {
	if _, ok := slices.BinarySearch(s.tags, tag); ok {
		return true
	}
	if s.pattern != nil && s.pattern.MatchString(tag) {
		return true
	}
	if s.semver != nil {
		if v, err := semver.NewVersion(tag); err == nil && s.semver.Check(v) {
			return true
		}
	}
	return false
}

// Named returns the tags the selection names and whether it names them only (no pattern,
// no range): then the selected tags are known without listing the repository.
func (s *Selector) Named() ([]string, bool) {
	if s.pattern != nil || s.semver != nil {
		return slices.Clone(s.tags), false
	}
	named, _ := s.FilterCounted(s.tags)
	return named, true
}

// NewestByCreated returns N when newest keeps the N images created last: FilterCounted
// then leaves that to the caller, which reads the creation times.
func (s *Selector) NewestByCreated() (int, bool) { return s.newest, s.byCreated }

// Filter returns the selected tags of available, in their order.
func (s *Selector) Filter(available []string) []string {
	out, _ := s.FilterCounted(available)
	return out
}

// FilterCounted returns the selected tags of available, in their order and each once, and
// counts those left out by reason.
func (s *Selector) FilterCounted(available []string) ([]string, LeftOut) {
	var out []string
	var left LeftOut
	seen := make(map[string]bool, len(available))
	for _, t := range available {
		if seen[t] {
			continue // a tag listed twice counts once
		}
		seen[t] = true
		switch {
		case !s.selects(t):
			left.Unselected++
		case s.exclude != nil && s.exclude.MatchString(t):
			left.Excluded++
		default:
			out = append(out, t)
		}
	}
	if s.newest == 0 || s.byCreated {
		return out, left
	}
	type version struct {
		tag string
		v   *semver.Version
	}
	var versions []version
	for _, t := range out {
		if v, err := semver.NewVersion(t); err == nil {
			versions = append(versions, version{t, v})
		} else {
			left.NotVersions++
		}
	}
	// Highest first; equal versions (1.36 and v1.36.0) by tag, for a stable choice.
	slices.SortStableFunc(versions, func(a, b version) int {
		if c := b.v.Compare(a.v); c != 0 {
			return c
		}
		return strings.Compare(a.tag, b.tag)
	})
	keep := map[string]bool{}
	for i, v := range versions {
		if i < s.newest {
			keep[v.tag] = true
		} else {
			left.Older++
		}
	}
	kept := out[:0]
	for _, t := range out {
		if keep[t] {
			kept = append(kept, t)
		}
	}
	return kept, left
}
