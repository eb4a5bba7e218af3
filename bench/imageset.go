package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/imagebuild"
)

// SetSpec sizes a reference image set. The same spec and seed always give the same bytes.
type SetSpec struct {
	Seed uint64
	// Repos × Tags images; MultiArch of the repositories have their last tag as an index
	// of 2–4 platforms; every TinyEvery-th repository has tiny images without a base.
	Repos, Tags, MultiArch, TinyEvery int
	// Bases are the shared base layers' sizes range in MiB; BaseShare is the share of
	// images (in percent) built on a base.
	Bases                  int
	BaseMinMiB, BaseMaxMiB int
	BaseShare              int
	// Own layers per image (besides the base) and their size range in KiB.
	MinLayers, MaxLayers int
	OwnMinKiB, OwnMaxKiB int
	// SharedRepos is the "same base layers across repositories" set: that many
	// repositories of one tag each, every image on one of the bases.
	SharedRepos int
}

// FullSet is the reference set: ~40 repositories × 3 tags, 3 shared bases of
// 20–80 MB, 10 multi-arch indexes, some tiny images.
var FullSet = SetSpec{Seed: 7, Repos: 40, Tags: 3, MultiArch: 10, TinyEvery: 8, Bases: 3, BaseMinMiB: 20, BaseMaxMiB: 80, BaseShare: 85,
	MinLayers: 3, MaxLayers: 7, OwnMinKiB: 16, OwnMaxKiB: 3072, SharedRepos: 10}

// SmallSet is a quick set for trying the harness.
var SmallSet = SetSpec{Seed: 7, Repos: 8, Tags: 3, MultiArch: 2, TinyEvery: 4, Bases: 3, BaseMinMiB: 4, BaseMaxMiB: 12, BaseShare: 85,
	MinLayers: 3, MaxLayers: 7, OwnMinKiB: 16, OwnMaxKiB: 1024, SharedRepos: 4}

// Repo is one repository of the set and its tags.
type Repo struct {
	Name string
	Tags []string
	// Shared marks the repositories of the shared-bases scenario.
	Shared bool
}

// ImageSet is a generated set: what each repository holds and how many unique blob bytes.
type ImageSet struct {
	Repos       []Repo
	UniqueBytes int64 // of every blob of the main set
	SharedBytes int64 // of every blob of the shared-bases set
	Images      int   // manifests of the main set (index children included)
	Indexes     int
}

// generator makes deterministic layers: each layer's bytes come from its own ChaCha8 seed.
type generator struct {
	rng  *rand.Rand
	next uint64
}

// layer is a gzip (stored, so incompressible data stays its size) tar with one file of
// size random bytes.
func (g *generator) layer(size int) v1.Layer {
	g.next++
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(g.next >> (8 * i))
	}
	seed[31] = 0x5e
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(data)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	tw := tar.NewWriter(zw)
	_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data-%d", g.next), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
	_, _ = tw.Write(data)
	_ = tw.Close()
	_ = zw.Close()
	return static.NewLayer(buf.Bytes(), types.DockerLayer)
}

func (g *generator) between(lo, hi int) int { return lo + g.rng.IntN(hi-lo+1) }

// image is an image on base (nil: none) with n own layers of the spec's sizes.
func (g *generator) image(s SetSpec, base v1.Layer, n int, tiny bool, platform string) (v1.Image, error) {
	img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.DockerConfigJSON), types.DockerManifestSchema2)
	var layers []v1.Layer
	if base != nil {
		layers = append(layers, base)
	}
	for range n {
		size := g.between(s.OwnMinKiB, s.OwnMaxKiB) << 10
		if tiny {
			size = g.between(100, 4096)
		}
		layers = append(layers, g.layer(size))
	}
	return imagebuild.Image(img, layers, func(cf *v1.ConfigFile) { cf.OS, cf.Architecture = "linux", platform })
}

var arches = []string{"amd64", "arm64", "ppc64le", "s390x"}

// Push generates the set and pushes it to registry (host:port, HTTPS that the process trusts).
func Push(ctx context.Context, s SetSpec, registry string, jobs int) (*ImageSet, error) {
	g := &generator{rng: rand.New(rand.NewPCG(s.Seed, 0x5eed))}
	bases := make([]v1.Layer, s.Bases)
	set := &ImageSet{}
	for i := range bases {
		bases[i] = g.layer(g.between(s.BaseMinMiB, s.BaseMaxMiB) << 20)
	}
	seen := map[v1.Hash]bool{}
	count := func(img v1.Image, shared bool) {
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			if !seen[d] {
				seen[d] = true
				n, _ := l.Size()
				if shared {
					set.SharedBytes += n
				} else {
					set.UniqueBytes += n
				}
			}
		}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithJobs(jobs)}
	push := func(repo, tag string, t remote.Taggable) error {
		ref, err := name.ParseReference(registry + "/" + repo + ":" + tag)
		if err != nil {
			return err
		}
		switch v := t.(type) {
		case v1.ImageIndex:
			return remote.WriteIndex(ref, v, opts...)
		case v1.Image:
			return remote.Write(ref, v, opts...)
		}
		return fmt.Errorf("unknown %T", t)
	}
	for r := range s.Repos {
		repo := Repo{Name: fmt.Sprintf("bench/app-%02d", r)}
		tiny := s.TinyEvery > 0 && r%s.TinyEvery == s.TinyEvery-1
		multi := !tiny && r%(s.Repos/max(s.MultiArch, 1)) == 1 && set.Indexes < s.MultiArch
		var base v1.Layer
		if !tiny && g.rng.IntN(100) < s.BaseShare {
			base = bases[g.rng.IntN(len(bases))]
		}
		var prev v1.Image
		for t := range s.Tags {
			tag := fmt.Sprintf("1.%d.0", t)
			repo.Tags = append(repo.Tags, tag)
			n := g.between(s.MinLayers, s.MaxLayers)
			if multi && t == s.Tags-1 {
				idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
				for p := range g.between(2, 4) {
					img, err := g.image(s, base, n, false, arches[p])
					if err != nil {
						return nil, err
					}
					count(img, false)
					set.Images++
					idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arches[p]}}})
				}
				set.Indexes++
				if err := push(repo.Name, tag, idx); err != nil {
					return nil, err
				}
				continue
			}
			var img v1.Image
			var err error
			if prev != nil && !tiny {
				// A new version: the previous tag's layers but the last, and a new top layer.
				ls, _ := prev.Layers()
				img, err = mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.DockerConfigJSON), types.DockerManifestSchema2), ls[:len(ls)-1]...)
				if err == nil {
					img, err = mutate.AppendLayers(img, g.layer(g.between(s.OwnMinKiB, s.OwnMaxKiB)<<10))
				}
			} else {
				img, err = g.image(s, base, n, tiny, "amd64")
			}
			if err != nil {
				return nil, err
			}
			prev = img
			count(img, false)
			set.Images++
			if err := push(repo.Name, tag, img); err != nil {
				return nil, err
			}
		}
		set.Repos = append(set.Repos, repo)
	}
	for r := range s.SharedRepos {
		repo := Repo{Name: fmt.Sprintf("shared/svc-%02d", r), Tags: []string{"1.0.0"}, Shared: true}
		img, err := g.image(s, bases[r%len(bases)], 2, false, "amd64")
		if err != nil {
			return nil, err
		}
		count(img, true)
		if err := push(repo.Name, "1.0.0", img); err != nil {
			return nil, err
		}
		set.Repos = append(set.Repos, repo)
	}
	return set, nil
}

// Change pushes a new image to one tag of the main set (the "one tag changed" scenario):
// its previous layers but a new top layer of 1 MiB; round makes each call different.
func Change(ctx context.Context, registry string, set *ImageSet, round int) (string, error) {
	repo := set.Repos[0]
	tag := repo.Tags[0]
	ref, err := name.ParseReference(registry + "/" + repo.Name + ":" + tag)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return "", err
	}
	g := &generator{rng: rand.New(rand.NewPCG(uint64(round), 1)), next: 1<<40 + uint64(round)}
	img, err = mutate.AppendLayers(img, g.layer(1<<20))
	if err != nil {
		return "", err
	}
	return repo.Name + ":" + tag, remote.Write(ref, img, remote.WithContext(ctx))
}
