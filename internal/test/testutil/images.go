package testutil

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushIndex pushes to ref an OCI index of random images, one per platform ("os/arch" or
// "os/arch/variant"), each with layers layers of size bytes, and returns its digest.
func PushIndex(t testing.TB, ref string, platforms []string, size int64, layers int, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, p := range platforms {
		pl, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := random.Image(size, int64(layers))
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: pl}})
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushShared pushes to repo one image per tag: the same base layer and a small layer of
// its own, so that the images share a blob.
func PushShared(t testing.TB, repo string, base v1.Layer, tags ...string) {
	t.Helper()
	for _, tag := range tags {
		own, err := random.Layer(512, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), base, own)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(Ref(t, repo+":"+tag), img); err != nil {
			t.Fatal(err)
		}
	}
}

// PushImage pushes a random image of layers layers of size bytes to ref, and returns it.
func PushImage(t testing.TB, ref string, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(Ref(t, ref), img); err != nil {
		t.Fatal(err)
	}
	return img
}

// FirstLayer returns the digest and size of img's first layer.
func FirstLayer(t testing.TB, img v1.Image) (v1.Hash, int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers: %v", err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	return d, size
}
