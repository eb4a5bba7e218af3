package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/config/samples"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

// k8s talks to a real kube-apiserver with regwire's CRDs (cp), shared by the tests of this
// package.
var (
	k8s client.Client
	cp  *controlplane.ControlPlane
)

func TestMain(m *testing.M) {
	var err error
	cp, err = controlplane.Start(controlplane.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		os.Exit(1)
	}
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	k8s, err = client.New(cp.Config, client.Options{Scheme: s})
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	if err := cp.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
	}
	os.Exit(code)
}

// validMirror is a RegistryMirror the API server accepts; cases mutate copies of it.
func validMirror() *v1alpha1.RegistryMirror {
	return &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mirror-"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host:                 "nexus.local",
			Endpoint:             "https://nexus.local",
			CABundle:             testutil.SampleCAPEM,
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-credentials"},
		},
	}
}

// validSync is an ImageSync the API server accepts; cases mutate copies of it.
func validSync() *v1alpha1.ImageSync {
	return &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sync-", Namespace: metav1.NamespaceDefault},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "docker.io/library/busybox", Tags: []string{"1.36"}},
			Target: v1alpha1.ImageTarget{
				RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "nexus-local"},
				Repository:        "my-docker/busybox",
			},
		},
	}
}

func mirror(mutate func(*v1alpha1.RegistryMirror)) client.Object {
	o := validMirror()
	mutate(o)
	return o
}

func sync(mutate func(*v1alpha1.ImageSync)) client.Object {
	o := validSync()
	mutate(o)
	return o
}

// dryRunCreate asks the real API server to validate and admit obj without storing it.
func dryRunCreate(t *testing.T, obj client.Object) error {
	t.Helper()
	return k8s.Create(context.Background(), obj, client.DryRunAll)
}

func TestSamplesAreAccepted(t *testing.T) {
	objs, err := samples.All()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.Object.GetKind()] = true
		t.Run(o.File, func(t *testing.T) {
			u := o.Object.DeepCopy()
			if err := k8s.Create(context.Background(), u); err != nil {
				t.Fatalf("the API server rejected sample %s: %v", o.File, err)
			}
		})
	}
	for _, k := range []string{"RegistryMirror", "ImageSync"} {
		if !kinds[k] {
			t.Errorf("config/samples has no %s", k)
		}
	}
}

func TestValidObjectsAreAccepted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		obj  client.Object
	}{
		{"a host with a port is accepted", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "nexus.local:8443" })},
		{"an IPv4 host with a port is accepted", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "172.18.0.3:5000" })},
		{"a bracketed IPv6 host with a port is accepted", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "[fd00::1]:5000" })},
		{"an endpoint with a Nexus repository path is accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.Endpoint = "https://nexus.example:8443/repository/my-docker/v2"
		})},
		{"a plain http endpoint is accepted with insecureSkipVerify", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.Endpoint, m.Spec.CABundle, m.Spec.InsecureSkipVerify = "http://registry.local:5000", "", true
		})},
		{"no endpoint and no CA is accepted", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint, m.Spec.CABundle = "", "" })},
		{"repository patterns with *, ** and {namespace} are accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{Repositories: []v1alpha1.RepositoryPattern{"my-docker/{namespace}/**", "shared/*-cache", "**"}}
		})},
		{"caFrom with a ConfigMap key is accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CABundle = ""
			m.Spec.CAFrom = &v1alpha1.CASource{ConfigMapKeyRef: &v1alpha1.KeySelector{Namespace: "regwire-system", Name: "nexus-ca", Key: "ca.crt"}}
		})},
		{"a docker.io mirror with a proxy path is accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}, {Host: "ghcr.io"}}
		})},
		{"an air-gapped mirror of every registry is accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf, m.Spec.SkipFallback = []v1alpha1.UpstreamMirror{{Host: v1alpha1.DefaultHost}, {Host: "docker.io", Path: "/v2/docker-proxy"}}, true
		})},
		{"fallback endpoints, runtimes and a client certificate are accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.FallbackEndpoints = []v1alpha1.EndpointURL{"https://nexus-b.local:8443", "https://nexus-c.local/repository/my-docker/v2"}
			m.Spec.Runtimes = []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd, v1alpha1.RuntimeCRIO, v1alpha1.RuntimeDocker}
			m.Spec.ClientCertificateSecretRef = &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-client"}
		})},
		{"pull secrets from the Nexus users provisioning makes are accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef = nil
			m.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull", NamespaceSelector: &metav1.LabelSelector{}}
			m.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: "https://nexus.local", Repository: "my-docker",
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"}}}
		})},
		{"a Docker Hub proxy joined with the hosted repository in a group is accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}, {Host: "ghcr.io"}}
			m.Spec.CredentialsSecretRef = nil
			m.Spec.Provision = withProxies(v1alpha1.NexusProxy{Upstream: "docker.io", Repository: "docker-hub",
				CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "docker-hub-account"}, NegativeCacheTTL: &metav1.Duration{Duration: 3600e9}},
				v1alpha1.NexusProxy{Upstream: "ghcr.io", Repository: "ghcr", RemoteURL: "https://ghcr.io"})
			m.Spec.Provision.Nexus.Group = &v1alpha1.NexusGroup{Repository: "docker-all"}
			m.Spec.Provision.Nexus.AnonymousRead = v1alpha1.NexusAnonymousReadProxies
		})},
		{"pull secrets for every ServiceAccount are accepted", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull", NamespaceSelector: &metav1.LabelSelector{}, ServiceAccounts: []string{"*"}}
		})},
		{"an interval of exactly 1m is accepted", sync(func(s *v1alpha1.ImageSync) { s.Spec.Interval = &metav1.Duration{Duration: 60e9} })},
		{"a full target image is accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Target = v1alpha1.ImageTarget{Image: "registry.example:5000/team/busybox", Insecure: true}
		})},
		{"a source's newest five releases but release candidates are accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Tags, s.Spec.Source.TagPattern, s.Spec.Source.Exclude, s.Spec.Source.Newest = nil, ".*", ".*-rc.*", 5
		})},
		{"every repository of a registry with a port renamed under the target is accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Image, s.Spec.Source.Repositories, s.Spec.Source.RepositoryPattern = "registry.example:5000", v1alpha1.RepositoryScopePrefix, "(app|tools)/.*"
		})},
		{"the three nightly images created last are accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Tags, s.Spec.Source.TagPattern, s.Spec.Source.Newest, s.Spec.Source.NewestBy = nil, "nightly-.*", 3, v1alpha1.NewestByCreated
		})},
		{"tags signed by one of two release keys are accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Verify = &v1alpha1.VerifySpec{Keys: []v1alpha1.PublicKeySource{
				{SecretKeyRef: &v1alpha1.LocalKeySelector{Name: "keys", Key: "2025.pub"}},
				{ConfigMapKeyRef: &v1alpha1.LocalKeySelector{Name: "keys", Key: "2026.pub"}}}}
		})},
		{"prune keeping the last three, as a dry run, is accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Prune = &v1alpha1.PruneSpec{KeepLast: 3, DryRun: true}
		})},
		{"a source selected by pattern and semver is accepted", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Tags, s.Spec.Source.TagPattern, s.Spec.Source.Semver = nil, `1\.3[0-9]`, ">=1.36 <2"
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := dryRunCreate(t, tc.obj); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		obj  client.Object
		// field is the path the API server must name; message a part of its explanation.
		field, message string
	}{
		{"a host with a path is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "nexus.local/my-docker" }),
			"spec.host", "must not contain '/'"},
		{"a host that climbs out with ../ is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "../x" }),
			"spec.host", "must not contain '..'"},
		{"a host with a scheme is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "https://nexus.local" }),
			"spec.host", "must not include a scheme"},
		{"a host with a space is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "nexus .local" }),
			"spec.host", "whitespace or control characters"},
		{"a host with a NUL byte is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "nexus\x00.local" }),
			"spec.host", "whitespace or control characters"},
		{"an empty host is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "" }),
			"spec.host", "at least 1 chars long"},
		{"a host with a label over 63 characters is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.Host = v1alpha1.RegistryHost(strings.Repeat("a", 64) + ".local")
		}), "spec.host", "at most 63 characters"},
		{"a host in upper case is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "Nexus.Local" }),
			"spec.host", "lowercase DNS name"},
		{"a host with port 70000 is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "nexus.local:70000" }),
			"spec.host", "port must be between 1 and 65535"},
		{"a plain http endpoint without insecureSkipVerify is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "http://nexus.local" }),
			"spec.endpoint", "only allowed together with insecureSkipVerify"},
		{"an endpoint that is not a URL is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "nexus.local" }),
			"spec.endpoint", "must be an absolute URL"},
		{"an endpoint with another scheme is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "ftp://nexus.local" }),
			"spec.endpoint", "must use https://"},
		{"an endpoint carrying credentials is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "https://admin:admin123@nexus.local" }),
			"spec.endpoint", "put them in credentialsSecretRef"},
		{"an endpoint with a query is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "https://nexus.local/v2?x=1" }),
			"spec.endpoint", "must not have a query or fragment"},
		{"an endpoint path with .. is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Endpoint = "https://nexus.local/repository/../admin" }),
			"spec.endpoint", "must not contain '..'"},
		{"both caBundle and caFrom are rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CAFrom = &v1alpha1.CASource{SecretKeyRef: &v1alpha1.KeySelector{Namespace: "regwire-system", Name: "nexus-ca", Key: "ca.crt"}}
		}), "spec.caFrom", "set caBundle or caFrom, not both"},
		{"caFrom naming neither a Secret nor a ConfigMap is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CABundle, m.Spec.CAFrom = "", &v1alpha1.CASource{}
		}), "spec.caFrom", "exactly one of secretKeyRef or configMapKeyRef"},
		{"a caBundle that is not PEM is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.CABundle = "MIIBfzCCASWgAwIBAgIU" }),
			"spec.caBundle", "must be PEM"},
		{"an unknown capability is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Capabilities = []v1alpha1.Capability{"pull", "delete"} }),
			"spec.capabilities[1]", `supported values: "pull", "resolve", "push"`},
		{"a mirror of its own host is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "nexus.local"}}
		}), "spec.mirrorOf", "must not list the registry's own host"},
		{"an upstream host with a path is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io/library"}}
		}), "spec.mirrorOf[0].host", "must not contain '/'"},
		{"an upstream path without a leading slash is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "v2/docker-proxy"}}
		}), "spec.mirrorOf[0].path", "must start with '/'"},
		{"_default as the registry's own host is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Host = "_default" }),
			"spec.host", "lowercase DNS name"},
		{"an upstream host in upper case is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "Docker.io"}}
		}), "spec.mirrorOf[0].host", "lowercase DNS name"},
		{"a proxy of an upstream the mirror does not serve is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "ghcr.io"}}
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies(v1alpha1.NexusProxy{Upstream: "docker.io", Repository: "docker-hub"})
		}), "spec.provision.nexus.proxies", "must be a host of spec.mirrorOf"},
		{"a proxy of _default is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: v1alpha1.DefaultHost}}
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies(v1alpha1.NexusProxy{Upstream: v1alpha1.DefaultHost, Repository: "everything"})
		}), "spec.provision.nexus.proxies[0]", "a proxy needs one upstream registry"},
		{"a proxy named like the hosted repository is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}}
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies(v1alpha1.NexusProxy{Upstream: "docker.io", Repository: "my-docker"})
		}), "spec.provision.nexus.proxies", "a repository name of its own"},
		{"two proxies of one repository are rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}, {Host: "quay.io"}}
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies(v1alpha1.NexusProxy{Upstream: "docker.io", Repository: "proxy"},
				v1alpha1.NexusProxy{Upstream: "quay.io", Repository: "proxy"})
		}), "spec.provision.nexus.proxies", "two proxies name the same repository"},
		{"a group named like the hosted repository is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies()
			m.Spec.Provision.Nexus.Group = &v1alpha1.NexusGroup{Repository: "my-docker"}
		}), "spec.provision.nexus.group", "a repository name of its own"},
		{"a proxy remote URL with credentials is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}}
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies(v1alpha1.NexusProxy{Upstream: "docker.io", Repository: "docker-hub", RemoteURL: "https://u:p@registry-1.docker.io"})
		}), "spec.provision.nexus.proxies[0].remoteURL", "put them in credentialsSecretRef"},
		{"an unknown anonymousRead is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef, m.Spec.Provision = nil, withProxies()
			m.Spec.Provision.Nexus.AnonymousRead = "Everything"
		}), "spec.provision.nexus.anonymousRead", `supported values: "Proxies", "None"`},
		{"skipFallback without mirrorOf is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.SkipFallback = true }),
			"spec.skipFallback", "list them in mirrorOf"},
		{"an unknown runtime is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Runtimes = []v1alpha1.ContainerRuntime{"cri-o"} }),
			"spec.runtimes[0]", `supported values: "containerd", "crio", "docker"`},
		{"a plain http fallback endpoint without insecureSkipVerify is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.FallbackEndpoints = []v1alpha1.EndpointURL{"http://nexus-b.local"}
		}), "spec.fallbackEndpoints", "only allowed together with insecureSkipVerify"},
		{"a fallback endpoint carrying credentials is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.FallbackEndpoints = []v1alpha1.EndpointURL{"https://admin:pw@nexus-b.local"}
		}), "spec.fallbackEndpoints[0]", "put them in credentialsSecretRef"},
		{"a client certificate over plain http is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.Endpoint, m.Spec.CABundle, m.Spec.InsecureSkipVerify = "http://registry.local:5000", "", true
			m.Spec.ClientCertificateSecretRef = &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-client"}
		}), "spec.clientCertificateSecretRef", "a client certificate needs TLS"},
		{"a host alias with a bad IP is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.HostAliases = []v1alpha1.HostAlias{{IP: "172.17.0.300", Hostnames: []v1alpha1.Hostname{"nexus.local"}}}
		}), "spec.hostAliases[0].ip", "must be an IPv4 or IPv6 address"},
		{"a host alias hostname with a space is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.HostAliases = []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local other"}}}
		}), "spec.hostAliases[0].hostnames[0]", "must be a lowercase DNS name"},
		{"pull secrets without credentials are rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef = nil
			m.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull", NamespaceSelector: &metav1.LabelSelector{}}
		}), "spec.pullSecrets", "set credentialsSecretRef, or let provision.nexus create a pull user"},
		{"pull secrets with provisioning that makes no users and no credentials are rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef = nil
			m.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull", NamespaceSelector: &metav1.LabelSelector{}}
			m.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: "https://nexus.local", Repository: "my-docker", Users: v1alpha1.NexusUsersNone,
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"}}}
		}), "spec.pullSecrets", "needs credentials"},
		{"managed Nexus users beside credentialsSecretRef are rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-credentials"}
			m.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: "https://nexus.local", Repository: "my-docker", Users: v1alpha1.NexusUsersManaged,
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"}}}
		}), "spec.credentialsSecretRef", "remove credentialsSecretRef, or set users: None"},
		{"'*' beside named ServiceAccounts is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull", NamespaceSelector: &metav1.LabelSelector{}, ServiceAccounts: []string{"*", "default"}}
		}), "spec.pullSecrets.serviceAccounts", "must stand alone"},
		{"an unknown Nexus write policy is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{
				URL: "https://nexus.local", Repository: "my-docker", WritePolicy: "Sometimes",
				AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"},
			}}
		}), "spec.provision.nexus.writePolicy", `supported values: "Allow", "AllowOnce", "Deny"`},
		{"provision naming no registry is rejected", mirror(func(m *v1alpha1.RegistryMirror) { m.Spec.Provision = &v1alpha1.ProvisionSpec{} }),
			"spec.provision", "name a registry to provision"},

		{"a negative newest is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Newest = -1 }),
			"spec.source.newest", "should be greater than or equal to 1"},
		{"an interval of 30s is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Interval = &metav1.Duration{Duration: 30e9} }),
			"spec.interval", "must be at least 1m"},
		{"a source image with a tag is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Image = "docker.io/library/busybox:1.36" }),
			"spec.source.image", "without a tag"},
		{"a repository pattern without a prefix is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.RepositoryPattern = "app-.*" }),
			"spec.source.repositoryPattern", "repositoryPattern goes with repositories: Prefix"},
		{"newestBy without newest is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.NewestBy = v1alpha1.NewestByCreated }),
			"spec.source.newestBy", "newestBy goes with newest"},
		{"a verify key naming both a Secret and a ConfigMap is rejected", sync(func(s *v1alpha1.ImageSync) {
			ref := &v1alpha1.LocalKeySelector{Name: "keys", Key: "cosign.pub"}
			s.Spec.Verify = &v1alpha1.VerifySpec{Keys: []v1alpha1.PublicKeySource{{SecretKeyRef: ref, ConfigMapKeyRef: ref}}}
		}), "spec.verify.keys[0]", "set exactly one of secretKeyRef or configMapKeyRef"},
		{"verify without keys is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Verify = &v1alpha1.VerifySpec{} }),
			"spec.verify.keys", "Required value"},
		{"prune of a prefix is rejected", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Image, s.Spec.Source.Repositories, s.Spec.Prune = "registry.example/team", v1alpha1.RepositoryScopePrefix, &v1alpha1.PruneSpec{}
		}), "spec.prune", "prune works on one repository"},
		{"a scope that is neither Image nor Prefix is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Repositories = "Registry" }),
			"spec.source.repositories", `supported values: "Image", "Prefix"`},
		{"a source image with a digest is rejected", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Source.Image = "docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"
		}), "spec.source.image", "without a digest"},
		{"a source image with a scheme is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Image = "https://docker.io/library/busybox" }),
			"spec.source.image", "must not include a scheme"},
		{"a source selecting no tags is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Tags = nil }),
			"spec.source", "select tags with at least one of tags, tagPattern or semver"},
		{"a tag with a space is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Source.Tags = []string{"1.36 beta"} }),
			"spec.source.tags", "each tag must match"},
		{"a target with both forms is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Target.Image = "registry.example/busybox" }),
			"spec.target", "set exactly one of image, or registryMirrorRef with repository"},
		{"a target with neither form is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Target = v1alpha1.ImageTarget{} }),
			"spec.target", "set exactly one of image, or registryMirrorRef with repository"},
		{"a registryMirrorRef without repository is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Target.Repository = "" }),
			"spec.target.repository", "repository goes with registryMirrorRef"},
		{"credentials beside registryMirrorRef are rejected", sync(func(s *v1alpha1.ImageSync) {
			s.Spec.Target.CredentialsSecretRef = &v1alpha1.LocalSecretReference{Name: "other"}
		}), "spec.target", "the RegistryMirror's credentials and CA are used"},
		{"a target repository with a host is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Target.Repository = "nexus.local:8443/busybox" }),
			"spec.target.repository", "lowercase repository path"},
		{"a repository pattern with a host is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{Repositories: []v1alpha1.RepositoryPattern{"nexus.local:8443/**"}}
		}), "spec.imageSyncs.repositories[0]", "must be a repository path pattern such as my-docker/{namespace}/**"},
		{"a placeholder other than {namespace} is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{Repositories: []v1alpha1.RepositoryPattern{"my-docker/{name}/**"}}
		}), "spec.imageSyncs.repositories[0]", "the only placeholder is {namespace}"},
		{"imageSyncs without repositories is rejected", mirror(func(m *v1alpha1.RegistryMirror) {
			m.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{}
		}), "spec.imageSyncs.repositories", ""},
		{"a platform without an architecture is rejected", sync(func(s *v1alpha1.ImageSync) { s.Spec.Platforms = []v1alpha1.Platform{"amd64"} }),
			"spec.platforms[0]", "must be os/arch"},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d invalid cases; the API contract needs at least 20", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := dryRunCreate(t, tc.obj)
			if err == nil {
				t.Fatal("the API server accepted the object")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.field+":") {
				t.Errorf("error does not name field %s:\n%s", tc.field, msg)
			}
			if !strings.Contains(msg, tc.message) {
				t.Errorf("error does not say %q:\n%s", tc.message, msg)
			}
		})
	}
}

// TestDefaultsAreApplied checks the defaults the API server applies.
func TestDefaultsAreApplied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := validMirror()
	m.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{
		URL: "https://nexus.local", Repository: "my-docker",
		AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"},
	}}
	if err := k8s.Create(ctx, m, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if got := m.Spec.Capabilities; len(got) != 2 || got[0] != v1alpha1.CapabilityPull || got[1] != v1alpha1.CapabilityResolve {
		t.Errorf("capabilities defaulted to %v, want [pull resolve]", got)
	}
	if n := m.Spec.Provision.Nexus; n.BlobStore != "default" || n.WritePolicy != v1alpha1.WritePolicyAllow {
		t.Errorf("nexus defaults: blobStore %q writePolicy %q, want default and Allow", n.BlobStore, n.WritePolicy)
	}
	s := validSync()
	if err := k8s.Create(ctx, s, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if s.Spec.Interval == nil || s.Spec.Interval.Duration.String() != "1h0m0s" {
		t.Errorf("interval defaulted to %v, want 1h", s.Spec.Interval)
	}
}

// withProxies is provisioning of the hosted repository my-docker with proxies.
func withProxies(proxies ...v1alpha1.NexusProxy) *v1alpha1.ProvisionSpec {
	return &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: "https://nexus.local", Repository: "my-docker",
		AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-admin"}, Proxies: proxies}}
}
