package v1alpha1

// RegistryHost is a registry host as it appears in image references: a lowercase DNS name,
// an IPv4 address or a bracketed IPv6 address, optionally followed by :port. It is never a
// URL, a path or a pattern; containerd looks up its configuration in a directory of exactly
// this name.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=255
// +kubebuilder:validation:XValidation:rule=`!self.contains('://')`,message="must not include a scheme: write nexus.local, not https://nexus.local (the scheme belongs in endpoint)"
// +kubebuilder:validation:XValidation:rule=`!self.contains('/')`,message="must not contain '/': give only the registry host and optional :port as in image references (a path belongs in endpoint)"
// +kubebuilder:validation:XValidation:rule=`!self.contains('..')`,message="must not contain '..'"
// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x20\\x7f]')`,message="must not contain whitespace or control characters"
// +kubebuilder:validation:XValidation:rule=`self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\\[[0-9a-f:.]+\\])(:[0-9]{1,5})?$')`,message="must be a lowercase DNS name, IPv4 address or [IPv6] address, optionally followed by :port, e.g. nexus.local or nexus.local:8443"
// +kubebuilder:validation:XValidation:rule=`self.startsWith('[') || self.split(':')[0].split('.').all(l, size(l) <= 63)`,message="each dot-separated label must be at most 63 characters"
// +kubebuilder:validation:XValidation:rule=`!self.matches(':[0-9]+$') || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)`,message="the port must be between 1 and 65535"
type RegistryHost string

// DefaultHost is the mirrorOf host that stands for every registry no other host
// configuration names, as containerd's _default directory does.
const DefaultHost UpstreamHost = "_default"

// UpstreamHost is a registry host as in RegistryHost, or _default for every registry.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=255
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (!self.contains('://'))`,message="must not include a scheme: write nexus.local, not https://nexus.local (the scheme belongs in endpoint)"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (!self.contains('/'))`,message="must not contain '/': give only the registry host and optional :port as in image references (a path belongs in endpoint)"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (!self.contains('..'))`,message="must not contain '..'"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (!self.matches('[\\x00-\\x20\\x7f]'))`,message="must not contain whitespace or control characters"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\\[[0-9a-f:.]+\\])(:[0-9]{1,5})?$'))`,message="must be a lowercase DNS name, IPv4 address or [IPv6] address, optionally followed by :port, e.g. nexus.local or nexus.local:8443"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (self.startsWith('[') || self.split(':')[0].split('.').all(l, size(l) <= 63))`,message="each dot-separated label must be at most 63 characters"
// +kubebuilder:validation:XValidation:rule=`self == '_default' || (!self.matches(':[0-9]+$') || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535))`,message="the port must be between 1 and 65535"
type UpstreamHost string

// Hostname is a lowercase DNS name, as written in /etc/hosts.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a lowercase DNS name such as nexus.local"
type Hostname string

// SecretReference names a Secret in a given namespace.
type SecretReference struct {
	// namespace of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// LocalSecretReference names a Secret in the namespace of the object that holds the reference.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// KeySelector selects one key of a Secret or ConfigMap in a given namespace.
type KeySelector struct {
	// namespace of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key within the object's data, e.g. ca.crt.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}
