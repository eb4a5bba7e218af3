package imagecopy_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestHostAliasesReachARegistryDNSDoesNotKnow copies into a registry by a name no DNS
// resolves, as a RegistryMirror's hostAliases make nodes do: without the alias the copy
// fails on the lookup, with it the image lands.
func TestHostAliasesReachARegistryDNSDoesNotKnow(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushIndex(t, src.Host+"/library/app:1", []string{"linux/amd64"}, 512, 1)
	_, port, _ := strings.Cut(dst.Host, ":")
	target := imagecopy.Endpoint{Repository: "nexus.regwire.invalid:" + port + "/my-docker/app", Insecure: true}
	copyTo := func(dst imagecopy.Endpoint) error {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app", Insecure: true}, dst, imagecopy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return eng.CopyTag(context.Background(), "1").Err
	}
	if err := copyTo(target); err == nil || !strings.Contains(err.Error(), "lookup nexus.regwire.invalid") {
		t.Fatalf("without the alias: %v, want a failed lookup", err)
	}
	target.HostAliases = map[string]string{"nexus.regwire.invalid": "127.0.0.1"}
	if err := copyTo(target); err != nil {
		t.Fatalf("with the alias: %v", err)
	}
}

func TestPlanForTakesTheMirrorsHostAliases(t *testing.T) {
	t.Parallel()
	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus"}, Spec: v1alpha1.RegistryMirrorSpec{
		Host: "nexus.local", HostAliases: []v1alpha1.HostAlias{{IP: "172.18.0.5", Hostnames: []v1alpha1.Hostname{"Nexus.Local", "registry.lan"}}},
	}}
	spec := &v1alpha1.ImageSyncSpec{Source: v1alpha1.ImageSource{Image: "docker.io/library/busybox", Tags: []string{"1.36"}},
		Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "nexus"}, Repository: "my-docker/busybox"}}
	p, err := imagecopy.PlanFor(spec, rm)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Target.HostAliases; len(got) != 2 || got["nexus.local"] != "172.18.0.5" || got["registry.lan"] != "172.18.0.5" {
		t.Errorf("target host aliases %v", got)
	}
}
