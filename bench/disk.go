package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// diskPeer carries the main set to an OCI image layout directory and from it into an
// empty registry, as its users do.
type diskPeer struct {
	name, version string
	// to and from return the commands for each direction; dir is the layout.
	to, from func(dir, src, dst string, repos []Repo, jobs int) [][]string
	// keepsDigests: the far side gets the source's digests (checked); otherwise the tool
	// converts the images on the way and only the tags are checked.
	keepsDigests bool
	note         string
}

// diskCell is what a disk peer did: timed runs each way.
type diskCell struct {
	to, from []run
	// bytes on disk after a copy, and processes each way.
	bytes          int64
	toProc, frProc int
	err            string
}

func diskPeers(bin string) []*diskPeer {
	regwire := filepath.Join(bin, "regwire")
	skopeoVersion, regwireVersion := toolVersion("skopeo", "--version"), toolVersion(regwire, "version")
	perTag := func(repos []Repo, f func(r Repo, tag string) []string) [][]string {
		var cmds [][]string
		for _, r := range repos {
			for _, tag := range r.Tags {
				cmds = append(cmds, f(r, tag))
			}
		}
		return cmds
	}
	return []*diskPeer{
		{
			name: "skopeo copy (oci:)", version: skopeoVersion,
			note: "skopeo has no OCI-layout sync: one `skopeo copy --all` per tag, `docker://SRC/REPO:TAG` → `oci:DIR:REPO:TAG` and back. It converts the set's Docker schema 2 images to OCI on the way, so digests change; with `skopeo copy --preserve-digests` it writes them unconverted but then cannot read them back (skopeo 1.9: \"no descriptor found for reference\"), so the converting form is the one that crosses.",
			to: func(dir, src, _ string, repos []Repo, _ int) [][]string {
				return perTag(repos, func(r Repo, tag string) []string {
					return []string{"skopeo", "copy", "--all", "--retry-times", "0", "docker://" + src + "/" + r.Name + ":" + tag, "oci:" + dir + ":" + r.Name + ":" + tag}
				})
			},
			from: func(dir, _, dst string, repos []Repo, _ int) [][]string {
				return perTag(repos, func(r Repo, tag string) []string {
					return []string{"skopeo", "copy", "--all", "--retry-times", "0", "oci:" + dir + ":" + r.Name + ":" + tag, "docker://" + dst + "/" + r.Name + ":" + tag}
				})
			},
		},
		{
			name: "regwire sync (oci:)", version: regwireVersion, keepsDigests: true,
			note: "one process each way: `regwire sync --prefix SRC/bench oci:DIR --all-tags --jobs 8`, then `regwire sync --prefix oci:DIR DST --all-tags --jobs 8 --no-blob-cache`; digests kept (checked).",
			to: func(dir, src, _ string, repos []Repo, jobs int) [][]string {
				return [][]string{{regwire, "sync", "--prefix", src + "/" + prefixOf(repos), "oci:" + dir, "--all-tags", "--progress", "lines", "--jobs", fmt.Sprint(jobs)}}
			},
			from: func(dir, _, dst string, _ []Repo, jobs int) [][]string {
				return [][]string{{regwire, "sync", "--prefix", "oci:" + dir, dst, "--all-tags", "--progress", "lines", "--jobs", fmt.Sprint(jobs), "--no-blob-cache"}}
			},
		},
	}
}

// benchDisk times every disk peer over the main set, rounds times each way: to a fresh
// directory on tmpfs, then from it into an emptied target registry.
func benchDisk(ctx context.Context, res *results, src, dst *benchRegistry, repos []Repo, rounds, jobs int, bin, work string) (*benchRegistry, error) {
	res.disk = map[string]*diskCell{}
	res.diskPeers = diskPeers(bin)
	for round := range rounds {
		for _, dp := range res.diskPeers {
			c := res.disk[dp.name]
			if c == nil {
				c = &diskCell{}
				res.disk[dp.name] = c
			}
			layout := filepath.Join(work, "layout")
			if err := os.RemoveAll(layout); err != nil {
				return dst, err
			}
			scratch, err := os.MkdirTemp("", "bench-disk-")
			if err != nil {
				return dst, err
			}
			if dst, err = dst.reset(); err != nil {
				return dst, err
			}
			timed := func(name string, cmds [][]string) (run, error) {
				p := &peer{name: dp.name, argv: func(string, string, string, []Repo, int) ([][]string, error) { return cmds, nil }}
				regCPU := src.cpu() + dst.cpu()
				r, err := p.run(ctx, scratch, src.addr, dst.addr, repos, jobs)
				r.regCPU = src.cpu() + dst.cpu() - regCPU
				if err == nil {
					say("round %d/%d %-24s %-9s %6.2fs  %4.0f MiB RSS  cpu %5.2fs", round+1, rounds, dp.name, name, r.wall.Seconds(), float64(r.maxRSS)/(1<<20), r.cpu.Seconds())
				}
				return r, err
			}
			toCmds, fromCmds := dp.to(layout, src.addr, dst.addr, repos, jobs), dp.from(layout, src.addr, dst.addr, repos, jobs)
			r, err := timed("to disk", toCmds)
			if err != nil {
				c.err = err.Error()
				continue
			}
			c.to, c.toProc, c.bytes = append(c.to, r), len(toCmds), dirBytes(layout)
			if r, err = timed("from disk", fromCmds); err != nil {
				c.err = err.Error()
				continue
			}
			c.from, c.frProc = append(c.from, r), len(fromCmds)
			if dp.keepsDigests {
				if err := verify(ctx, src.addr, dst.addr, repos, func(s string) string { return s }); err != nil {
					return dst, fmt.Errorf("%s: %w", dp.name, err)
				}
			}
			_ = os.RemoveAll(scratch)
		}
	}
	return dst, os.RemoveAll(filepath.Join(work, "layout"))
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// reportDisk writes the to-disk and from-disk section.
func reportDisk(p func(string, ...any), r *results) {
	if len(r.disk) == 0 {
		return
	}
	p("## To and from disk\n\n")
	p("The main set (%d tags) into an OCI image layout directory on tmpfs, then from it into an empty registry — the air gap's two halves. Medians of %d runs each way.\n\n", r.tags("cold"), r.rounds)
	p("| peer | to disk | from disk | processes each way | on disk | digests | peak RSS | CPU to + from |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, dp := range r.diskPeers {
		c := r.disk[dp.name]
		if c.err != "" && len(c.from) == 0 {
			p("| %s | failed: %s | | | | | | |\n", dp.name, strings.ReplaceAll(tail(c.err, 200), "\n", " "))
			continue
		}
		digests := "changed (converted to OCI)"
		if dp.keepsDigests {
			digests = "kept (checked)"
		}
		cpuTo, _ := medianCPU(&cell{runs: c.to})
		cpuFrom, _ := medianCPU(&cell{runs: c.from})
		rss := max(medianRSS(&cell{runs: c.to}), medianRSS(&cell{runs: c.from}))
		p("| %s | %s | %s | %d / %d | %.0f MB | %s | %.0f MiB | %s + %s |\n", dp.name, secs(median(&cell{runs: c.to})), secs(median(&cell{runs: c.from})),
			c.toProc, c.frProc, float64(c.bytes)/1e6, digests, float64(rss)/(1<<20), secs(cpuTo), secs(cpuFrom))
	}
	p("\n")
	for _, dp := range r.diskPeers {
		p("- %s — `%s`: %s\n", dp.name, dp.version, dp.note)
	}
	p("\n")
}
