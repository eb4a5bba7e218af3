// Package tagselect decides which tags of a repository an ImageSync copies: a tag is
// selected when it is listed, matches the pattern, or satisfies the semver range.
package tagselect

import (
	"fmt"
	"regexp"
	"slices"

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
}

// Selector selects tags. The zero value selects nothing.
type Selector struct {
	tags    []string
	pattern *regexp.Regexp
	semver  *semver.Constraints
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
	return sel, nil
}

// Match reports whether tag is selected.
func (s *Selector) Match(tag string) bool {
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
	return slices.Clone(s.tags), s.pattern == nil && s.semver == nil
}

// Filter returns the selected tags of available, in their order.
func (s *Selector) Filter(available []string) []string {
	var out []string
	for _, t := range available {
		if s.Match(t) {
			out = append(out, t)
		}
	}
	return out
}
