package imagecopy

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

// Plan is an ImageSync's spec turned into what an Engine runs: both endpoints (without
// credentials: the controller reads them from Secrets, `regwire sync -f` from the docker
// config), the tag selection, and the options the spec sets. The ImageSync controller and
// `regwire sync -f` both build it with PlanFor, so a manifest means the same in both.
type Plan struct {
	Source, Target Endpoint
	// TargetImage is the target repository as image references name it (for a
	// RegistryMirror: its host, not its endpoint), e.g. nexus.local/my-docker/busybox.
	TargetImage string
	Selector    *tagselect.Selector
	// Options holds Platforms and Referrers; the caller sets the rest.
	Options Options
	// Under, with spec.source.repositories: Prefix, is the copy of every repository below
	// Source (a prefix) to Target (the repository replacing it); nil for one repository.
	Under *Under
}

// PlanFor checks what the API server cannot and builds the Plan of spec. mirror is the
// RegistryMirror that spec.target.registryMirrorRef names (nil for spec.target.image): the
// copy then talks to the mirror's endpoint, its host and its path (containerd's
// override_path, e.g. a Nexus repository's /repository/my-docker/v2) in place of /v2.
// Errors name the field and the fix.
func PlanFor(spec *v1alpha1.ImageSyncSpec, mirror *v1alpha1.RegistryMirror) (p Plan, err error) {
	src := spec.Source
	if len(src.Tags) == 0 && src.TagPattern == "" && src.Semver == "" {
		return Plan{}, errors.New("spec.source: select tags with tags, tagPattern or semver")
	}
	sel, err := tagselect.New(tagselect.Spec{Tags: src.Tags, Pattern: src.TagPattern, Semver: src.Semver, Exclude: src.Exclude, Newest: int(src.Newest),
		ByCreated: src.NewestBy == v1alpha1.NewestByCreated})
	if err != nil {
		return Plan{}, err
	}
	p = Plan{
		Source:   Endpoint{Repository: string(src.Image), CA: bytesOrNil(src.CABundle), Insecure: src.Insecure},
		Selector: sel,
		Options:  Options{Referrers: spec.Referrers},
	}
	for _, s := range spec.Platforms {
		pl, err := v1.ParsePlatform(string(s))
		if err != nil {
			return Plan{}, fmt.Errorf("spec.platforms %q: %w", s, err)
		}
		p.Options.Platforms = append(p.Options.Platforms, *pl)
	}
	switch {
	case src.Repositories == v1alpha1.RepositoryScopePrefix:
		p.Under = &Under{}
		if src.RepositoryPattern != "" {
			re, err := regexp.Compile(`^(?:` + src.RepositoryPattern + `)$`)
			if err != nil {
				return Plan{}, fmt.Errorf("spec.source.repositoryPattern %q: not a valid RE2 regular expression: %w", src.RepositoryPattern, err)
			}
			p.Under.Pattern = re
		}
	case src.RepositoryPattern != "":
		return Plan{}, errors.New("spec.source.repositoryPattern goes with repositories: Prefix")
	}
	defer func() {
		if p.Under != nil {
			p.Under.Source, p.Under.Target = p.Source, p.Target
		}
	}()
	t := spec.Target
	if mirror == nil {
		if t.Image == "" {
			return Plan{}, errors.New("spec.target: give image, or registryMirrorRef and repository")
		}
		p.TargetImage = string(t.Image)
		p.Target = Endpoint{Repository: string(t.Image), CA: bytesOrNil(t.CABundle), Insecure: t.Insecure}
		return p, nil
	}
	p.TargetImage = string(mirror.Spec.Host) + "/" + t.Repository
	p.Target, err = MirrorTarget(mirror, t.Repository, "")
	if err != nil {
		return Plan{}, err
	}
	return p, nil
}

// MirrorTarget is repository at a RegistryMirror as the nodes reach it: its endpoint's host
// (else its host), the endpoint's path in place of /v2 unless pathPrefix (a mirrorOf path)
// replaces it, its TLS setting and hostAliases (names DNS does not resolve, such as
// nexus.local, resolved in the manager's pod as on nodes). CA and credentials are the
// caller's.
func MirrorTarget(mirror *v1alpha1.RegistryMirror, repository, pathPrefix string) (Endpoint, error) {
	connect, prefix := string(mirror.Spec.Host), ""
	if mirror.Spec.Endpoint != "" {
		u, err := url.Parse(mirror.Spec.Endpoint)
		if err != nil {
			return Endpoint{}, fmt.Errorf("RegistryMirror %s spec.endpoint: %w", mirror.Name, err)
		}
		connect = u.Host
		if u.Path != "" && u.Path != "/" {
			prefix = path.Clean(u.Path)
		}
	}
	if pathPrefix != "" {
		prefix = pathPrefix
	}
	return Endpoint{Repository: connect + "/" + repository, PathPrefix: prefix, Insecure: mirror.Spec.InsecureSkipVerify,
		HostAliases: registryhttp.Aliases(mirror.Spec.HostAliases)}, nil
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
