package imagecopy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// newestCreated keeps the n tags of tags whose images were created last (the config's
// created time; for a multi-platform index, that of the platform copied first: the first
// of Options.Platforms, else linux/amd64, else the index's first image), in the order of
// tags, and says how many it left out. Reading a creation time costs a manifest GET and a
// config blob GET per tag, on Options.Jobs workers.
func (e *Engine) newestCreated(ctx context.Context, tags []string, n int) ([]string, int, error) {
	created := make([]time.Time, len(tags))
	errs := make([]error, len(tags))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(e.o.Jobs, len(tags)) {
		wg.Go(func() {
			for i := range next {
				created[i], errs[i] = e.created(ctx, tags[i])
			}
		})
	}
	for i := range tags {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, 0, describe(fmt.Errorf("reading when %s was created (newestBy: Created): %w", tags[i], err), "source", e.src.repo.Tag(tags[i]).String())
		}
	}
	order := make([]int, len(tags))
	for i := range order {
		order[i] = i
	}
	// Created last first; the same time by tag, for a stable choice.
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(created[b].Compare(created[a]), strings.Compare(tags[a], tags[b]))
	})
	keep := make([]bool, len(tags))
	for _, i := range order[:n] {
		keep[i] = true
	}
	var kept []string
	for i, tag := range tags {
		if keep[i] {
			kept = append(kept, tag)
		}
	}
	return kept, len(tags) - n, nil
}

// created reads when the image a tag points at was created.
func (e *Engine) created(ctx context.Context, tag string) (time.Time, error) {
	release, err := e.slot(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer release()
	d, err := e.src.puller.Get(ctx, e.src.repo.Tag(tag))
	if err != nil {
		return time.Time{}, err
	}
	var img v1.Image
	if d.MediaType.IsIndex() {
		idx, err := d.ImageIndex()
		if err != nil {
			return time.Time{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return time.Time{}, err
		}
		child, ok := e.firstPlatform(im)
		if !ok {
			return time.Time{}, fmt.Errorf("index %s lists no image", d.Digest)
		}
		if img, err = idx.Image(child); err != nil {
			return time.Time{}, err
		}
	} else if img, err = d.Image(); err != nil {
		return time.Time{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return time.Time{}, err
	}
	return cf.Created.Time, nil
}

// firstPlatform chooses the image of an index whose creation time stands for the index.
func (e *Engine) firstPlatform(im *v1.IndexManifest) (v1.Hash, bool) {
	want := []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	if len(e.o.Platforms) > 0 {
		want = e.o.Platforms[:1]
	}
	var first *v1.Descriptor
	for i, m := range im.Manifests {
		if !m.MediaType.IsImage() || (m.Platform != nil && m.Platform.OS == "unknown") { // attestations
			continue
		}
		if m.Platform != nil && m.Platform.Satisfies(want[0]) {
			return m.Digest, true
		}
		if first == nil {
			first = &im.Manifests[i]
		}
	}
	if first == nil {
		return v1.Hash{}, false
	}
	return first.Digest, true
}
