package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// verify checks that every tag of repos is in dst with the source's digest.
func verify(ctx context.Context, src, dst string, repos []Repo, target func(string) string) error {
	for _, r := range repos {
		for _, tag := range r.Tags {
			s, err := name.ParseReference(src + "/" + r.Name + ":" + tag)
			if err != nil {
				return err
			}
			d, err := name.ParseReference(dst + "/" + target(r.Name) + ":" + tag)
			if err != nil {
				return err
			}
			sd, err := remote.Head(s, remote.WithContext(ctx))
			if err != nil {
				return fmt.Errorf("source %s: %w", s, err)
			}
			dd, err := remote.Head(d, remote.WithContext(ctx))
			if err != nil {
				return fmt.Errorf("target %s: %w", d, err)
			}
			if sd.Digest != dd.Digest {
				return fmt.Errorf("%s is %s, source %s", d, dd.Digest, sd.Digest)
			}
		}
	}
	return nil
}
