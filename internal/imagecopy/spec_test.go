package imagecopy_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
)

func TestPlanForTurnsASpecIntoWhatTheEngineRuns(t *testing.T) {
	t.Parallel()
	src := v1alpha1.ImageSource{Image: "docker.io/library/busybox", Tags: []string{"1.36"}, CABundle: "SRC-CA", Insecure: true}
	mirror := func(endpoint string) *v1alpha1.RegistryMirror {
		return &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus"},
			Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: endpoint, InsecureSkipVerify: true}}
	}
	toMirror := v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "nexus"}, Repository: "my-docker/busybox"}
	cases := []struct {
		name                     string
		spec                     v1alpha1.ImageSyncSpec
		mirror                   *v1alpha1.RegistryMirror
		wantTarget, wantPrefix   string
		wantImage, wantErrSubstr string
		wantCA                   bool
	}{
		{name: "an explicit target image is pushed to as written, with its CA",
			spec:       v1alpha1.ImageSyncSpec{Source: src, Target: v1alpha1.ImageTarget{Image: "registry.example/app", CABundle: "DST-CA"}},
			wantTarget: "registry.example/app", wantImage: "registry.example/app", wantCA: true},
		{name: "a mirror without endpoint is reached at its host",
			spec: v1alpha1.ImageSyncSpec{Source: src, Target: toMirror}, mirror: mirror(""),
			wantTarget: "nexus.local/my-docker/busybox", wantImage: "nexus.local/my-docker/busybox"},
		{name: "an endpoint without a path gives its host, while images keep the mirror's host",
			spec: v1alpha1.ImageSyncSpec{Source: src, Target: toMirror}, mirror: mirror("https://10.0.0.5:8443"),
			wantTarget: "10.0.0.5:8443/my-docker/busybox", wantImage: "nexus.local/my-docker/busybox"},
		{name: "an endpoint path is where the registry API lives: a Nexus repository base path, images named without the repository",
			spec:       v1alpha1.ImageSyncSpec{Source: src, Target: v1alpha1.ImageTarget{RegistryMirrorRef: toMirror.RegistryMirrorRef, Repository: "busybox"}},
			mirror:     mirror("https://nexus.local/repository/my-docker/v2/"),
			wantTarget: "nexus.local/busybox", wantPrefix: "/repository/my-docker/v2", wantImage: "nexus.local/busybox"},
		{name: "a tag pattern that is no RE2 names its field",
			spec:          v1alpha1.ImageSyncSpec{Source: v1alpha1.ImageSource{Image: "a/b", TagPattern: "("}, Target: v1alpha1.ImageTarget{Image: "c/d"}},
			wantErrSubstr: `spec.source.tagPattern "("`},
		{name: "a spec selecting no tag says how to select them",
			spec:          v1alpha1.ImageSyncSpec{Source: v1alpha1.ImageSource{Image: "a/b"}, Target: v1alpha1.ImageTarget{Image: "c/d"}},
			wantErrSubstr: "select tags with tags, tagPattern or semver"},
		{name: "a platform that does not parse names its field",
			spec:          v1alpha1.ImageSyncSpec{Source: src, Target: v1alpha1.ImageTarget{Image: "c/d"}, Platforms: []v1alpha1.Platform{"linux/amd64/v1/x"}},
			wantErrSubstr: `spec.platforms "linux/amd64/v1/x"`},
		{name: "a mirror endpoint that is no URL names the mirror and its field",
			spec: v1alpha1.ImageSyncSpec{Source: src, Target: toMirror}, mirror: mirror("https://[::1"),
			wantErrSubstr: "RegistryMirror nexus spec.endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := imagecopy.PlanFor(&tc.spec, tc.mirror)
			if tc.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
					t.Fatalf("err = %v, want it to say %q", err, tc.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Target.Repository != tc.wantTarget || p.Target.PathPrefix != tc.wantPrefix || p.TargetImage != tc.wantImage {
				t.Errorf("target %q under %q (image %q), want %q under %q (image %q)",
					p.Target.Repository, p.Target.PathPrefix, p.TargetImage, tc.wantTarget, tc.wantPrefix, tc.wantImage)
			}
			if (p.Target.CA != nil) != tc.wantCA {
				t.Errorf("target CA %q, want one: %v", p.Target.CA, tc.wantCA)
			}
			if tc.mirror != nil && !p.Target.Insecure {
				t.Error("a mirror with insecureSkipVerify must be pushed to without verification")
			}
			if p.Source.Repository != string(src.Image) || string(p.Source.CA) != src.CABundle || !p.Source.Insecure || !p.Selector.Match("1.36") || p.Selector.Match("1.37") {
				t.Errorf("source %+v, selector %v", p.Source, p.Selector)
			}
		})
	}
}
