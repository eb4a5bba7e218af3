package imagecopy

import (
	"context"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/internal/registryhttp"
)

// connect makes the side's remote options: through a shared session when the registry
// wants no token, else through go-containerregistry's handshake for this repository.
func (s *side) connect(ctx context.Context, pool *registryhttp.Pool) error {
	s.once.Do(func() {
		s.err = s.dial(ctx, pool)
	})
	return s.err
}

func (s *side) dial(ctx context.Context, pool *registryhttp.Pool) error {
	auth := s.endpoint.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	// The transport: go-containerregistry's handshake on the base transport, unless the
	// shared session says no token is needed.
	rt := s.base
	if s.shareable {
		ak, err := registryhttp.AuthKey(auth)
		if err != nil {
			return err
		}
		reg := s.repo.Registry
		key := registryhttp.SessionKey{Registry: reg.RegistryStr(), PathPrefix: s.endpoint.PathPrefix, Insecure: s.endpoint.Insecure, CA: registryhttp.Hash(string(s.endpoint.CA)), Auth: ak}
		// Retried like every other request (go-containerregistry retries its own pings too).
		retrying := transport.NewRetry(s.base, transport.WithRetryBackoff(s.backoff), transport.WithRetryPredicate(registryhttp.Retryable), transport.WithRetryStatusCodes(registryhttp.RetryStatusCodes...))
		ch, err := pool.Challenge(ctx, key, reg, retrying, time.Now())
		if err != nil {
			return err
		}
		if !strings.EqualFold(ch.Scheme, "bearer") {
			scheme := "https"
			if ch.Insecure {
				scheme = "http"
			}
			// A *transport.Wrapper: go-containerregistry uses it as it is, without a ping.
			w, err := transport.FromToken(reg, auth, registryhttp.WithScheme(scheme, reg.RegistryStr(), retrying), ch, &transport.Token{})
			if err != nil {
				return err
			}
			rt = w
		}
	}
	// The backoff also drives remote's own retries of whole uploads.
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(rt), remote.WithRetryBackoff(s.backoff)}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return err
	}
	opts = append(opts, remote.Reuse(p))
	s.puller, s.opts = p, opts
	return nil
}
