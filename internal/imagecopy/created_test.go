package imagecopy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

func createdIn(t *testing.T, year int) v1.Image {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestNewestByCreatedKeepsTheImagesCreatedLast: tags that are not versions, ordered by
// the creation time in their configs; an index by its linux/amd64 image, or by the
// platform copied when platforms narrow it.
func TestNewestByCreatedKeepsTheImagesCreatedLast(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	repo := reg.Host + "/library/app"
	for tag, year := range map[string]int{"nightly-a": 2020, "nightly-b": 2024, "nightly-c": 2022, "old": 2010} {
		if err := remote.Write(testutil.Ref(t, repo+":"+tag), createdIn(t, year)); err != nil {
			t.Fatal(err)
		}
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: createdIn(t, 2019), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: createdIn(t, 2025), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	if err := remote.WriteIndex(testutil.Ref(t, repo+":nightly-d"), idx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		platforms []v1.Platform
		want      []string
	}{
		{"an index counts by its linux/amd64 image", nil, []string{"nightly-b", "nightly-d"}},
		{"an index narrowed to arm64 counts by its arm64 image", []v1.Platform{{OS: "linux", Architecture: "arm64"}}, []string{"nightly-b", "nightly-c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eng, err := imagecopy.New(imagecopy.Endpoint{Repository: repo}, imagecopy.Endpoint{Repository: reg.Host + "/m/app"}, imagecopy.Options{Platforms: tc.platforms})
			if err != nil {
				t.Fatal(err)
			}
			sel, _ := tagselect.New(tagselect.Spec{Pattern: "nightly-.*", Newest: 2, ByCreated: true})
			tags, left, err := eng.TagsCounted(context.Background(), sel)
			slices.Sort(tags)
			if err != nil || !slices.Equal(tags, tc.want) || left.Older != 2 || left.NotVersions != 0 || left.Unselected != 1 {
				t.Errorf("tags %v, left out %+v, err %v; want %v with 2 older", tags, left, err, tc.want)
			}
		})
	}
	// Named tags alone are ordered without listing the repository.
	eng, _ := imagecopy.New(imagecopy.Endpoint{Repository: repo}, imagecopy.Endpoint{Repository: reg.Host + "/m/app"}, imagecopy.Options{})
	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"old", "nightly-a", "nightly-c"}, Newest: 1, ByCreated: true})
	if tags, left, err := eng.TagsCounted(context.Background(), sel); err != nil || !slices.Equal(tags, []string{"nightly-c"}) || left.Older != 2 {
		t.Errorf("named tags, newest 1 by created: %v %+v %v", tags, left, err)
	}
}
