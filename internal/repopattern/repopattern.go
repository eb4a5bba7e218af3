// Package repopattern matches repository paths against the patterns a RegistryMirror's
// spec.imageSyncs.repositories gives: segments separated by /, where * matches within one
// segment, a segment ** any number of segments (none included), and {namespace} stands
// for the namespace of the ImageSync asking.
package repopattern

import (
	"path"
	"strings"
)

// Namespace is the placeholder for the ImageSync's namespace.
const Namespace = "{namespace}"

// Match reports whether repository matches pattern for an ImageSync in namespace.
func Match(pattern, namespace, repository string) bool {
	if pattern == "" || repository == "" {
		return false
	}
	return match(strings.Split(strings.ReplaceAll(pattern, Namespace, namespace), "/"), strings.Split(repository, "/"))
}

// MatchAny reports whether repository matches one of patterns.
func MatchAny[P ~string](patterns []P, namespace, repository string) bool {
	for _, p := range patterns {
		if Match(string(p), namespace, repository) {
			return true
		}
	}
	return false
}

// match matches by dynamic programming over (pattern, segment) positions: linear in
// their product however many ** a pattern holds.
func match(pattern, segments []string) bool {
	// next[j] says whether pattern[i+1:] matches segments[j:]; row[j] the same for pattern[i:].
	next := make([]bool, len(segments)+1)
	next[len(segments)] = true // the empty pattern matches the empty rest
	for i := len(pattern) - 1; i >= 0; i-- {
		row := make([]bool, len(segments)+1)
		for j := len(segments); j >= 0; j-- {
			switch {
			case pattern[i] == "**":
				row[j] = next[j] || j < len(segments) && row[j+1]
			case j < len(segments):
				row[j] = next[j+1] && segmentMatch(pattern[i], segments[j])
			}
		}
		next = row
	}
	return next[0]
}

// segmentMatch matches one segment: * within it, everything else literally.
func segmentMatch(pattern, segment string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == segment
	}
	// path.Match also knows ?, [ ] and \; a pattern holding them matches them literally.
	if strings.ContainsAny(pattern, `?[]\`) {
		return pattern == segment
	}
	ok, err := path.Match(pattern, segment)
	return err == nil && ok
}

// MatchAtOrBelow reports whether pattern matches prefix or some repository path below it
// (prefix/...), for an ImageSync in namespace: a prefix sync into prefix may write there.
func MatchAtOrBelow(pattern, namespace, prefix string) bool {
	if pattern == "" || prefix == "" {
		return false
	}
	pat := strings.Split(strings.ReplaceAll(pattern, Namespace, namespace), "/")
	// The pattern positions reachable after the prefix's segments: any left means that the
	// rest of the pattern can be met by segments below the prefix.
	closure := func(states map[int]bool) map[int]bool {
		for i := 0; i < len(pat); i++ {
			if states[i] && pat[i] == "**" {
				states[i+1] = true
			}
		}
		return states
	}
	states := closure(map[int]bool{0: true})
	for _, seg := range strings.Split(prefix, "/") {
		next := map[int]bool{}
		for i := range states {
			switch {
			case i == len(pat):
			case pat[i] == "**":
				next[i] = true
			case segmentMatch(pat[i], seg):
				next[i+1] = true
			}
		}
		states = closure(next)
	}
	return len(states) > 0
}

// MatchAnyAtOrBelow reports whether one of patterns matches at or below prefix.
func MatchAnyAtOrBelow[P ~string](patterns []P, namespace, prefix string) bool {
	for _, p := range patterns {
		if MatchAtOrBelow(string(p), namespace, prefix) {
			return true
		}
	}
	return false
}
