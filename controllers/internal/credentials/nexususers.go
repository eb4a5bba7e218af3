package credentials

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// The names of what regwire creates for a RegistryMirror's Nexus users
// (spec.provision.nexus.users Managed); kind is v1alpha1.NexusPullUser or NexusPushUser.
// The RegistryMirror controller creates them, the ImageSync controller reads the push
// user's Secret, and both go by these names.

// NexusUserID is the user's id in Nexus, and its role's: regwire-<mirror>-<kind>.
func NexusUserID(mirror, kind string) string {
	return "regwire-" + mirror + "-" + kind
}

// NexusUserSecretName is the Secret in the operator's namespace holding the user's
// generated password: <mirror>-nexus-<kind>, shortened with a hash of the mirror's name
// where that would pass the 253 characters of a Secret name.
func NexusUserSecretName(mirror, kind string) string {
	const maxName = 253
	suffix := "-nexus-" + kind
	if len(mirror)+len(suffix) <= maxName {
		return mirror + suffix
	}
	sum := sha256.Sum256([]byte(mirror))
	hash := "-" + hex.EncodeToString(sum[:4])
	// A DNS subdomain's labels start and end alphanumeric: no '.' or '-' before the hash.
	head := strings.TrimRight(mirror[:maxName-len(suffix)-len(hash)], ".-")
	return head + hash + suffix
}
