package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
)

// syncReport is what `regwire sync -o json` and `sync -f -o json` print: one JSON
// document when the run ends, whatever its outcome (the exit code says it too).
type syncReport struct {
	// Repositories are the copies in the order given: one for `sync SRC DST`, one per
	// ImageSync for `sync -f`.
	Repositories []repoReport `json:"repositories"`
	Summary      summary      `json:"summary"`
}

type repoReport struct {
	// Name is the ImageSync's namespace/name (or its document's position) with -f.
	Name   string `json:"name,omitempty"`
	Source string `json:"source"`
	Target string `json:"target"`
	// Error is why the repository failed before any tag was tried (listing, selection).
	Error string      `json:"error,omitempty"`
	Tags  []tagReport `json:"tags"`
}

// Results of a tag.
const (
	resultCopied    = "Copied"
	resultUpToDate  = "UpToDate"
	resultWouldCopy = "WouldCopy" // --dry-run
	resultFailed    = "Failed"
)

// resultOf says what happened to a tag; the text output and the JSON report both say it.
func resultOf(r imagecopy.Result, dryRun bool) string {
	switch {
	case r.Err != nil:
		return resultFailed
	case r.UpToDate:
		return resultUpToDate
	case dryRun:
		return resultWouldCopy
	default:
		return resultCopied
	}
}

type tagReport struct {
	Tag string `json:"tag"`
	// Result is Copied, UpToDate, WouldCopy (--dry-run) or Failed.
	Result       string `json:"result"`
	SourceDigest string `json:"sourceDigest,omitempty"`
	TargetDigest string `json:"targetDigest,omitempty"`
	// Bytes are the bytes this copy moved (blobs mounted or already there count nothing).
	Bytes int64  `json:"bytes"`
	Error string `json:"error,omitempty"`
}

type summary struct {
	Tags   int `json:"tags"`
	Copied int `json:"copied"`
	// WouldCopy counts, with --dry-run, the tags a run would copy.
	WouldCopy       int     `json:"wouldCopy"`
	UpToDate        int     `json:"upToDate"`
	Failed          int     `json:"failed"`
	Bytes           int64   `json:"bytes"`
	DurationSeconds float64 `json:"durationSeconds"`
	DryRun          bool    `json:"dryRun"`
	// Requests are every HTTP request to both registries; ManifestChecks the manifest
	// HEADs among them.
	Requests       int64 `json:"requests"`
	ManifestChecks int64 `json:"manifestChecks"`
}

func newRepoReport(name, src, dst string, err error, results []imagecopy.Result, dryRun bool) repoReport {
	r := repoReport{Name: name, Source: src, Target: dst, Tags: []tagReport{}}
	if err != nil {
		r.Error = err.Error()
	}
	for _, res := range results {
		t := tagReport{Tag: res.Tag, Result: resultOf(res, dryRun), SourceDigest: res.SourceDigest, TargetDigest: res.TargetDigest, Bytes: res.Bytes}
		if res.Err != nil {
			t.Error = res.Err.Error()
		}
		r.Tags = append(r.Tags, t)
	}
	return r
}

func writeReport(out io.Writer, repos []repoReport, all []imagecopy.Result, took time.Duration, dryRun bool, requests ...*registryhttp.Requests) error {
	s := imagecopy.Summarize(all, took)
	rep := syncReport{Repositories: repos, Summary: summary{Tags: len(all), Copied: s.Copied, UpToDate: s.UpToDate, Failed: s.Failed,
		Bytes: s.Bytes, DurationSeconds: took.Seconds(), DryRun: dryRun}}
	if dryRun {
		rep.Summary.Copied, rep.Summary.WouldCopy = 0, s.Copied
	}
	for _, r := range requests {
		rep.Summary.Requests += r.All.Load()
		rep.Summary.ManifestChecks += r.ManifestHeads.Load()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
