// Package bootstrap stands up what regwire needs around a cluster. Its subpackage local is
// the embedded stack that `make demo` runs: a local control plane with regwire's CRDs and
// controllers, no Docker needed.
package bootstrap
