package nexus_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/nexusemulator"
)

func dockerHub(remote string) *nexus.DockerProxyRepository {
	return &nexus.DockerProxyRepository{
		Name: "docker-hub", Online: true,
		Storage:       nexus.Storage{BlobStoreName: "default", StrictContentTypeValidation: true},
		Proxy:         nexus.Proxy{RemoteURL: remote, ContentMaxAge: 1440, MetadataMaxAge: 1440},
		NegativeCache: nexus.NegativeCache{Enabled: true, TimeToLive: 1440},
		HTTPClient:    nexus.HTTPClient{AutoBlock: true},
		Docker:        nexus.Docker{ForceBasicAuth: false},
		DockerProxy:   nexus.DockerProxy{IndexType: nexus.IndexTypeHub},
	}
}

// withMyDocker is a new Nexus holding the hosted repository my-docker, its admin's client,
// and a context.
func withMyDocker(t *testing.T) (*nexusemulator.Server, *nexus.Client, context.Context) {
	t.Helper()
	f, url := fake(t)
	ctx := context.Background()
	admin := client(t, url, "admin", "initial-admin-password")
	if _, err := admin.EnsureDockerHosted(ctx, myDocker()); err != nil {
		t.Fatal(err)
	}
	return f, admin, ctx
}

func TestContractAProxyAndAGroupAreCreatedThenKeptAsAsked(t *testing.T) {
	t.Parallel()
	f, admin, ctx := withMyDocker(t)
	want := dockerHub("https://registry-1.docker.io")
	want.HTTPClient.Authentication = &nexus.Authentication{Type: "username", Username: "hub-user", Password: "hub-secret"}
	steps := []struct {
		name string
		do   func() (nexus.Action, error)
		want nexus.Action
	}{
		{"a new proxy is created", func() (nexus.Action, error) { return admin.EnsureDockerProxy(ctx, want, true) }, nexus.Created},
		{"the same proxy again sends nothing", func() (nexus.Action, error) { return admin.EnsureDockerProxy(ctx, want, false) }, nexus.Unchanged},
		{"a password that may have changed is sent again, quietly", func() (nexus.Action, error) { return admin.EnsureDockerProxy(ctx, want, true) }, nexus.Unchanged},
		{"a new remote updates it", func() (nexus.Action, error) {
			want.Proxy.RemoteURL = "https://mirror.gcr.io"
			return admin.EnsureDockerProxy(ctx, want, false)
		}, nexus.Updated},
		{"a group of the hosted repository and the proxy is created", func() (nexus.Action, error) {
			return admin.EnsureDockerGroup(ctx, &nexus.DockerGroupRepository{Name: "docker-all", Online: true,
				Storage: nexus.Storage{BlobStoreName: "default", StrictContentTypeValidation: true},
				Group:   nexus.Group{MemberNames: []string{"my-docker", "docker-hub"}}})
		}, nexus.Created},
		{"members in another order update it", func() (nexus.Action, error) {
			return admin.EnsureDockerGroup(ctx, &nexus.DockerGroupRepository{Name: "docker-all", Online: true,
				Storage: nexus.Storage{BlobStoreName: "default", StrictContentTypeValidation: true},
				Group:   nexus.Group{MemberNames: []string{"docker-hub", "my-docker"}}})
		}, nexus.Updated},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got != s.want {
			t.Fatalf("%s: %q, %v; want %q", s.name, got, err, s.want)
		}
	}
	repo := f.Repository("docker-hub")
	if repo["proxy"].(map[string]any)["remoteUrl"] != "https://mirror.gcr.io" {
		t.Errorf("proxy in Nexus: %v", repo)
	}
	puts := 0
	for _, r := range f.Requests() {
		if r == "PUT /service/rest/v1/repositories/docker/proxy/docker-hub" {
			puts++
		}
	}
	if puts != 2 {
		t.Errorf("%d updates of the proxy, want 2 (the password alone, then the remote)", puts)
	}
	members := f.Repository("docker-all")["group"].(map[string]any)["memberNames"]
	if !slices.Equal(toStrings(members), []string{"docker-hub", "my-docker"}) {
		t.Errorf("group members %v", members)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func TestContractAnonymousAccessAndWhoMayReadARepository(t *testing.T) {
	t.Parallel()
	f, admin, ctx := withMyDocker(t)
	if _, err := admin.EnsureDockerProxy(ctx, dockerHub("https://registry-1.docker.io"), false); err != nil {
		t.Fatal(err)
	}
	got, err := admin.Anonymous(ctx)
	if err != nil || got.Enabled || got.UserID != nexus.AnonymousUser || got.RealmName != nexus.AnonymousRealm {
		t.Fatalf("anonymous access of a new Nexus: %+v, %v", got, err)
	}
	if err := admin.SetAnonymous(ctx, nexus.AnonymousSettings{Enabled: true, UserID: nexus.AnonymousUser, RealmName: "NoSuchRealm"}); err == nil || !strings.Contains(err.Error(), "Realm does not exist") {
		t.Errorf("an unknown realm: %v", err)
	}
	if err := admin.SetAnonymous(ctx, nexus.AnonymousSettings{Enabled: true, UserID: nexus.AnonymousUser, RealmName: nexus.AnonymousRealm}); err != nil {
		t.Fatal(err)
	}
	if on, _ := f.Anonymous(); !on {
		t.Error("anonymous access still off")
	}
	// A new Nexus's anonymous user reads everything, through nx-anonymous.
	readers, err := admin.ReadersOf(ctx, nexus.AnonymousUser, "my-docker")
	if err != nil || !slices.Equal(readers, []string{"nx-anonymous (nx-repository-view-*-*-read)"}) {
		t.Errorf("who lets anonymous read my-docker: %v, %v", readers, err)
	}
	if _, err := admin.EnsureRole(ctx, &nexus.Role{ID: "mirror-read", Name: "mirror-read", Privileges: []string{nexus.DockerViewPrivilege("docker-hub", nexus.ActionRead)}, Roles: []string{}}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		add, remove []string
		changed     bool
	}{
		{add: []string{"mirror-read"}, remove: []string{"nx-anonymous"}, changed: true},
		{add: []string{"mirror-read"}, remove: []string{"nx-anonymous"}, changed: false},
	} {
		changed, err := admin.SetUserRoles(ctx, nexus.AnonymousUser, step.add, step.remove)
		if err != nil || changed != step.changed {
			t.Fatalf("SetUserRoles(+%v -%v): %v, %v; want changed %v", step.add, step.remove, changed, err, step.changed)
		}
	}
	if roles, _, _ := f.UserRoles(nexus.AnonymousUser); !slices.Equal(roles, []string{"mirror-read"}) {
		t.Errorf("anonymous user's roles %v", roles)
	}
	if readers, err := admin.ReadersOf(ctx, nexus.AnonymousUser, "my-docker"); err != nil || len(readers) != 0 {
		t.Errorf("who lets anonymous read my-docker now: %v, %v", readers, err)
	}
	if _, err := admin.SetUserRoles(ctx, "no-such-user", []string{"mirror-read"}, nil); !nexus.IsNotFound(err) {
		t.Errorf("roles of a user that does not exist: %v", err)
	}
}

func TestContractAFieldNexusDoesNotKeepIsAnErrorNamingIt(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	f.SetVersion("3.80.0") // no path-based routing: pathEnabled is dropped without an error
	admin := client(t, url, "admin", "initial-admin-password")
	want := dockerHub("https://registry-1.docker.io")
	want.Docker.PathEnabled = ptr(true)
	_, err := admin.EnsureDockerProxy(context.Background(), want, false)
	if err == nil || !strings.Contains(err.Error(), "nexus 3.80.0 did not keep docker.pathEnabled of docker (proxy) repository docker-hub") {
		t.Errorf("err = %v, want one naming the field Nexus dropped", err)
	}
}
