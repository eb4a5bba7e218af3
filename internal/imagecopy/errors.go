package imagecopy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/internal/registryhttp"
)

// isNotFound reports a registry's 404 (HEAD answers carry no error body).
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// isBlobUnknown reports a registry refusing a manifest (or a mount) for a blob it lacks.
func isBlobUnknown(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && (hasCode(terr, transport.ManifestBlobUnknownErrorCode) || hasCode(terr, transport.BlobUnknownErrorCode))
}

// SideError is a failure on one side of a copy.
type SideError struct {
	// Side is "source" or "target": for a blob transfer that was too slow, the side it
	// waited on.
	Side string
	// Ref is the reference being read or written.
	Ref string
	// StatusCode is the registry's HTTP status, 0 when no answer came (DNS, TCP, TLS).
	StatusCode int
	Err        error
}

func (e *SideError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s %s: %s (HTTP %d): %v", e.Side, e.Ref, http.StatusText(e.StatusCode), e.StatusCode, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Side, e.Ref, e.Err)
}

func (e *SideError) Unwrap() error { return e.Err }

// describe names the registry side, the reference and the HTTP status of an error. An
// error that already names its side is returned as it is: a source read that failed inside
// a target upload is the source's failure, with the source's reference.
func describe(err error, which, ref string) error {
	var inner *SideError
	if errors.As(err, &inner) {
		return inner
	}
	se := &SideError{Side: which, Ref: ref, Err: err}
	var terr *transport.Error
	if errors.As(err, &terr) {
		se.StatusCode = terr.StatusCode
	}
	return se
}

// compact returns a per-tag error that keeps what it says — its message, side, reference,
// status, and the bound or stall it names — without what it references: a Result may live
// for a whole run, and a hundred thousand of them must fit in a small pod, while
// go-containerregistry's error keeps its whole request (context, transports, traces),
// some 4 KB a tag.
func compact(err error) error {
	var se *SideError
	if err == nil || !errors.As(err, &se) {
		return err
	}
	var stall *registryhttp.StallError
	var bound *registryhttp.BoundError
	if errors.As(err, &stall) || errors.As(err, &bound) {
		return err // small already, and callers look for them
	}
	var limited *registryhttp.RateLimitError
	if errors.As(err, &limited) { // a request never sent: the limit is what it says
		return &SideError{Side: se.Side, Ref: se.Ref, Err: limited}
	}
	return &SideError{Side: se.Side, Ref: se.Ref, StatusCode: se.StatusCode, Err: errors.New(se.Err.Error())}
}
