package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
)

// addBoundsFlags binds the flags that bound what a registry may make a copy do, the same
// for regwire sync and the manager.
func addBoundsFlags(fl *pflag.FlagSet, b *imagecopy.Bounds) {
	b.MaxBlobBytes, b.MinTransferRate = imagecopy.DefaultMaxBlobBytes, imagecopy.DefaultMinTransferRate
	fl.DurationVar(&b.StallTimeout, "stall-timeout", registryhttp.DefaultStallTimeout, "fail a request to a registry that makes no progress for this long (no connection, no answer, no byte sent or received); a slow registry that keeps moving bytes is never cut off")
	fl.Var(byteSize{&b.MaxBlobBytes}, "max-blob-size", "refuse a blob whose manifest declares more than this, before any of it moves (a quantity: 32Gi, 500Mi)")
	fl.Var(byteSize{&b.MinTransferRate}, "min-transfer-rate", `end a blob transfer moving fewer bytes a second than this, averaged over twice --stall-timeout (a quantity: 64Ki, 1Mi; "0" for no minimum)`)
	fl.IntVar(&b.RateLimitFloor, "rate-limit-floor", DefaultRateLimitFloor, `stop reading manifests (pulls) from a source registry that publishes a pull limit (Docker Hub's RateLimit-Remaining) once this many pulls or fewer are left, so that copies never spend the last pulls nodes need; "0" spends them all`)
	fl.BoolVar(&b.AllowPrivateRedirects, "allow-private-redirects", false, "follow registry redirects to private, loopback and link-local addresses (refused by default: a registry could send regwire to internal services); for registries whose storage redirects to, say, MinIO on 10.0.0.0/8")
}

// DefaultRateLimitFloor is how many of a source's published pulls copies leave by
// default: Docker Hub gives an unauthenticated client only 10 an hour, so a larger floor
// would stop it altogether; 2 keeps a node's next pull (an index and its manifest).
const DefaultRateLimitFloor = 2

// byteSize is a flag holding a number of bytes written as a Kubernetes quantity.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil {
		return "0"
	}
	return resource.NewQuantity(*b.n, resource.BinarySI).String()
}

func (b byteSize) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("want a quantity such as 64Ki, 500Mi or 32Gi: %w", err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return fmt.Errorf("want a whole, non-negative number of bytes, such as 64Ki, 500Mi or 32Gi")
	}
	if n == 0 {
		n = -1 // imagecopy's "none"
	}
	*b.n = n
	return nil
}

func (byteSize) Type() string { return "quantity" }
