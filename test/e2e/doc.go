// Package e2e runs the manual setup end to end on real parts, as root: `make e2e-local`.
// Its tests carry the e2e build tag.
package e2e
