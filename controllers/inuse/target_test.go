package inuse

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

func TestAnImageInUseGoesWhereTheNodesAskTheMirrorForIt(t *testing.T) {
	t.Parallel()
	mirror := func(endpoint string, mirrorOf ...v1alpha1.UpstreamMirror) *v1alpha1.RegistryMirror {
		return &v1alpha1.RegistryMirror{Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: endpoint, MirrorOf: mirrorOf}}
	}
	cases := []struct {
		name         string
		rm           *v1alpha1.RegistryMirror
		image        string
		covered      bool
		repo, prefix string
	}{
		{"a short Docker Hub name goes under library at the mirror's root", mirror("", v1alpha1.UpstreamMirror{Host: "docker.io"}), "busybox:1.36", true, "nexus.local/library/busybox", ""},
		{"a mirrorOf path /v2/<repository> is that repository at the registry's /v2 (Nexus path routing)", mirror("", v1alpha1.UpstreamMirror{Host: "docker.io", Path: "/v2/my-docker"}), "docker.io/library/busybox:1.36", true, "nexus.local/my-docker/library/busybox", ""},
		{"an endpoint's path is the prefix without a mirrorOf path", mirror("https://nexus.local:8443/repository/my-docker/v2", v1alpha1.UpstreamMirror{Host: "ghcr.io"}), "ghcr.io/org/app@sha256:" + sixtyFour, true, "nexus.local:8443/org/app", "/repository/my-docker/v2"},
		{"another mirrorOf path replaces /v2, as containerd's override_path does", mirror("", v1alpha1.UpstreamMirror{Host: "ghcr.io", Path: "/repository/ghcr/v2"}), "ghcr.io/org/app:1", true, "nexus.local/org/app", "/repository/ghcr/v2"},
		{"_default covers a registry no entry names", mirror("", v1alpha1.UpstreamMirror{Host: "_default"}), "quay.io/org/app:1", true, "nexus.local/org/app", ""},
		{"_default does not cover the mirror itself", mirror("", v1alpha1.UpstreamMirror{Host: "_default"}), "nexus.local/my-docker/app:1", false, "", ""},
		{"a registry mirrorOf does not name is not covered", mirror("", v1alpha1.UpstreamMirror{Host: "docker.io"}), "ghcr.io/org/app:1", false, "", ""},
		{"a reference that does not parse is not covered", mirror("", v1alpha1.UpstreamMirror{Host: "_default"}), "UPPER/Case:!", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := targetOf(tc.rm, nodeconfig.ProxiedMirrorOf(tc.rm.Spec), tc.image)
			if ok != tc.covered || (ok && (got.endpoint.Repository != tc.repo || got.endpoint.PathPrefix != tc.prefix)) {
				t.Errorf("targetOf(%q) = %q %q %v, want %q %q %v", tc.image, got.endpoint.Repository, got.endpoint.PathPrefix, ok, tc.repo, tc.prefix, tc.covered)
			}
		})
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestThePodCacheKeepsItsImagesAlone(t *testing.T) {
	t.Parallel()
	p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "a", Image: "x:1", Args: []string{"--long"}}},
		InitContainers: []corev1.Container{{Name: "i", Image: "y:1"}}}}
	p.Annotations = map[string]string{"big": "annotation"}
	out, err := PodImagesOnly(p)
	if err != nil {
		t.Fatal(err)
	}
	kept := out.(*corev1.Pod)
	if kept.Spec.NodeName != "" || kept.Annotations != nil || len(kept.Spec.Containers[0].Args) != 0 || len(Images(kept)) != 2 {
		t.Errorf("kept %+v", kept)
	}
}
