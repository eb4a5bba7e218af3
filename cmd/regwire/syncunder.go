package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

// runSyncUnder copies every repository below a prefix (--prefix), and reports them like a
// file of ImageSyncs: a line per tag (or per repository that failed as a whole), then a
// summary counting repositories.
func runSyncUnder(ctx context.Context, out io.Writer, under *imagecopy.Under, sel *tagselect.Selector, opts imagecopy.Options, f syncFlags) error {
	start := time.Now()
	repos, err := under.Sync(ctx, sel, opts)
	if err != nil {
		return err
	}
	if len(repos) == 0 {
		return fmt.Errorf("the catalog of %s lists no repository below the prefix", under.Source.Repository)
	}
	var all []imagecopy.Result
	var failed []string
	var requests []*registryhttp.Requests
	var left tagselect.LeftOut
	reports := make([]repoReport, 0, len(repos))
	for _, r := range repos {
		src, dst := under.Source.Repository, under.Target.Repository
		if r.Path != "" {
			src, dst = strings.TrimSuffix(src, "/")+"/"+r.Path, strings.TrimSuffix(dst, "/")+"/"+r.Path
		}
		if f.output == "json" {
			reports = append(reports, newRepoReport("", src, dst, r.Err, r.Results, f.dryRun))
		} else if r.Err != nil {
			fmt.Fprintf(out, "failed     %s: %v\n", dst, r.Err)
		} else {
			printResults(out, dst+":", r.Results, f.dryRun)
		}
		if r.Err != nil {
			failed = append(failed, dst)
		}
		failed = append(failed, failedTags(dst+":", r.Results)...)
		all = append(all, r.Results...)
		left.Excluded, left.Older, left.NotVersions = left.Excluded+r.LeftOut.Excluded, left.Older+r.LeftOut.Older, left.NotVersions+r.LeftOut.NotVersions
		if r.SourceRequests != nil {
			requests = append(requests, r.SourceRequests, r.TargetRequests)
		}
	}
	if f.output == "json" {
		if err := writeReport(out, reports, all, time.Since(start), f.dryRun, requests...); err != nil {
			return err
		}
	} else {
		if said := left.String(f.newest); said != "" {
			fmt.Fprintf(out, "left out: %s\n", said)
		}
		printSummary(out, fmt.Sprintf("%d repositories below %s, ", len(repos), under.Source.Repository), all, time.Since(start), f.dryRun, requests...)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}
