package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RegistryMirrorFinalizer lets the controller remove node files and pull secrets before a
// RegistryMirror goes away.
const RegistryMirrorFinalizer = "regwire.dev/cleanup"

// Capability is an operation containerd may perform against a registry host.
// +kubebuilder:validation:Enum=pull;resolve;push
type Capability string

const (
	// CapabilityPull fetches content (blobs and manifests by digest).
	CapabilityPull Capability = "pull"
	// CapabilityResolve turns a tag into a digest.
	CapabilityResolve Capability = "resolve"
	// CapabilityPush uploads content.
	CapabilityPush Capability = "push"
)

// WritePolicy is a Nexus hosted repository's policy for overwriting stored content.
// +kubebuilder:validation:Enum=Allow;AllowOnce;Deny
type WritePolicy string

const (
	// WritePolicyAllow lets a tag be pushed again (what mutable tags such as latest need).
	WritePolicyAllow WritePolicy = "Allow"
	// WritePolicyAllowOnce lets each path be written once.
	WritePolicyAllowOnce WritePolicy = "AllowOnce"
	// WritePolicyDeny makes the repository read-only.
	WritePolicyDeny WritePolicy = "Deny"
)

// NexusDockerAuth is how a Nexus docker repository asks clients for their credentials.
// +kubebuilder:validation:Enum=Basic;Token
type NexusDockerAuth string

const (
	// NexusDockerAuthBasic makes Nexus answer with a Basic challenge (forceBasicAuth: true):
	// clients send the user and password with each request. No security realm is needed.
	NexusDockerAuthBasic NexusDockerAuth = "Basic"
	// NexusDockerAuthToken makes Nexus send clients to its token endpoint
	// (forceBasicAuth: false); regwire activates the Docker Bearer Token realm (DockerToken)
	// it needs. Behind a proxy, Nexus 3.78 to 3.80 name a wrong token URL when the proxy
	// sends X-Forwarded-Host with a port.
	NexusDockerAuthToken NexusDockerAuth = "Token"
)

// NexusAnonymousRead says what users without credentials may pull from the repositories
// regwire provisions.
// +kubebuilder:validation:Enum=Proxies;None
type NexusAnonymousRead string

const (
	// NexusAnonymousReadProxies lets anonymous users read the proxy repositories, and
	// nothing else regwire provisions: container runtimes send no credentials to a mirror
	// (containerd, CRI-O), so nodes pulling an upstream's images through its proxy pull
	// anonymously. regwire turns Nexus's anonymous access on where it is off (taking the
	// built-in nx-anonymous role, which reads every repository, from the anonymous user
	// then), activates the Docker Bearer Token realm, and gives the anonymous user a role
	// reading the proxies. Where anonymous access was on already, its other roles stay;
	// the Provisioned condition says whether they let anonymous users read the hosted
	// repository too.
	NexusAnonymousReadProxies NexusAnonymousRead = "Proxies"
	// NexusAnonymousReadNone gives anonymous users nothing: nodes then need the mirror's
	// credentials to pull through it, which most runtimes do not send to a mirror.
	NexusAnonymousReadNone NexusAnonymousRead = "None"
)

// NexusUsers says whether regwire creates the Nexus users that pull secrets and ImageSyncs
// authenticate as.
// +kubebuilder:validation:Enum=Managed;None
type NexusUsers string

const (
	// NexusUsersManaged creates, for the provisioned repository, a pull user that may only
	// read it and a push user that may also add and edit, each with a role of its own and
	// a generated password kept in a Secret in the operator's namespace. Pull secrets are
	// built from the pull user and ImageSyncs push as the push user, so the admin
	// credentials serve provisioning only.
	NexusUsersManaged NexusUsers = "Managed"
	// NexusUsersNone creates no users: pull secrets and ImageSyncs use credentialsSecretRef.
	NexusUsersNone NexusUsers = "None"
)

// Kinds of user regwire creates in Nexus for a RegistryMirror.
const (
	// NexusPullUser may read (pull from) the repository.
	NexusPullUser = "pull"
	// NexusPushUser may read, add and edit (push to) it.
	NexusPushUser = "push"
)

// ContainerRuntime is a container runtime whose own registry configuration the node agent
// writes.
// +kubebuilder:validation:Enum=containerd;crio;docker
type ContainerRuntime string

const (
	// RuntimeContainerd writes <config_path>/<host>/hosts.toml and ca.crt (containerd's hosts.md).
	RuntimeContainerd ContainerRuntime = "containerd"
	// RuntimeCRIO writes a registries.conf.d drop-in and certs.d/<host>/ca.crt under
	// /etc/containers (containers-registries.conf.d(5), containers-certs.d(5)), which CRI-O,
	// podman, skopeo and buildah read.
	RuntimeCRIO ContainerRuntime = "crio"
	// RuntimeDocker writes /etc/docker/certs.d/<host>/ca.crt, Docker Engine's per-registry trust,
	// read on each connection without a daemon restart.
	RuntimeDocker ContainerRuntime = "docker"
)

// EndpointURL is a registry's API address: an absolute http(s) URL, optionally with a path,
// without credentials, query or fragment.
//
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule=`isURL(self)`,message="must be an absolute URL, e.g. https://nexus.local or https://nexus.local/repository/my-docker/v2"
// +kubebuilder:validation:XValidation:rule=`!isURL(self) || url(self).getScheme() in ['https', 'http']`,message="must use https:// (http:// only together with insecureSkipVerify: true)"
// +kubebuilder:validation:XValidation:rule=`!isURL(self) || size(url(self).getHostname()) > 0`,message="must name a host, e.g. https://nexus.local"
// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="must not carry credentials; put them in credentialsSecretRef"
// +kubebuilder:validation:XValidation:rule=`!self.contains('?') && !self.contains('#')`,message="must not have a query or fragment"
// +kubebuilder:validation:XValidation:rule=`!self.contains('/../') && !self.endsWith('/..')`,message="path must not contain '..'"
// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x20\\x7f]')`,message="must not contain whitespace or control characters"
type EndpointURL string

// RegistryMirrorSpec is the desired wiring of the cluster to one private registry.
//
// +kubebuilder:validation:XValidation:rule=`!has(self.endpoint) || !self.endpoint.startsWith('http://') || (has(self.insecureSkipVerify) && self.insecureSkipVerify)`,message="endpoint must use https://; plain http:// is only allowed together with insecureSkipVerify: true",fieldPath=".endpoint"
// +kubebuilder:validation:XValidation:rule=`!has(self.fallbackEndpoints) || self.fallbackEndpoints.all(e, !e.startsWith('http://')) || (has(self.insecureSkipVerify) && self.insecureSkipVerify)`,message="fallbackEndpoints must use https://; plain http:// is only allowed together with insecureSkipVerify: true",fieldPath=".fallbackEndpoints"
// +kubebuilder:validation:XValidation:rule=`!(has(self.caBundle) && has(self.caFrom))`,message="set caBundle or caFrom, not both",fieldPath=".caFrom"
// +kubebuilder:validation:XValidation:rule=`!has(self.clientCertificateSecretRef) || ((!has(self.endpoint) || !self.endpoint.startsWith('http://')) && (!has(self.fallbackEndpoints) || self.fallbackEndpoints.all(e, !e.startsWith('http://'))))`,message="a client certificate needs TLS: use https:// endpoints",fieldPath=".clientCertificateSecretRef"
// +kubebuilder:validation:XValidation:rule=`!has(self.provision) || !has(self.provision.nexus) || !has(self.provision.nexus.proxies) || self.provision.nexus.proxies.all(p, has(self.mirrorOf) && self.mirrorOf.exists(m, m.host == p.upstream))`,message="each provision.nexus.proxies[].upstream must be a host of spec.mirrorOf: add it there (e.g. mirrorOf: [{host: docker.io}]) so nodes pull it through the proxy",fieldPath=".provision.nexus.proxies"
// +kubebuilder:validation:XValidation:rule=`!has(self.mirrorOf) || self.mirrorOf.all(m, m.host != self.host)`,message="mirrorOf must not list the registry's own host",fieldPath=".mirrorOf"
// +kubebuilder:validation:XValidation:rule=`!has(self.skipFallback) || !self.skipFallback || (has(self.mirrorOf) && size(self.mirrorOf) > 0)`,message="skipFallback keeps nodes from contacting the upstreams of mirrorOf; list them in mirrorOf (e.g. host: docker.io) or remove skipFallback",fieldPath=".skipFallback"
// +kubebuilder:validation:XValidation:rule=`!has(self.pullSecrets) || has(self.credentialsSecretRef) || (has(self.provision) && has(self.provision.nexus) && (!has(self.provision.nexus.users) || self.provision.nexus.users == 'Managed'))`,message="pullSecrets needs credentials: set credentialsSecretRef, or let provision.nexus create a pull user (users: Managed)",fieldPath=".pullSecrets"
// +kubebuilder:validation:XValidation:rule=`!(has(self.credentialsSecretRef) && has(self.provision) && has(self.provision.nexus) && has(self.provision.nexus.users) && self.provision.nexus.users == 'Managed')`,message="provision.nexus.users Managed gives this registry's credentials: remove credentialsSecretRef, or set users: None to use it",fieldPath=".credentialsSecretRef"
type RegistryMirrorSpec struct {
	// host is the registry as image references name it, optionally with :port, e.g.
	// nexus.local for images like nexus.local/my-docker/busybox. Nodes get
	// <config_path>/<host>/hosts.toml for it.
	// +required
	Host RegistryHost `json:"host"`

	// endpoint is the URL containerd talks to for this host. It defaults to https://<host>.
	// A path is allowed and is rendered with containerd's override_path. Nexus serves a
	// docker repository in two shapes: with path-based routing (Nexus 3.83.0 and later)
	// at the root, as https://nexus.example, where images carry the repository's name
	// (nexus.example/my-docker/busybox); or at the repository base path
	// https://nexus.example/repository/my-docker/v2, where they do not
	// (nexus.example/busybox). Credentials, queries and fragments are not allowed in the URL.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule=`isURL(self)`,message="must be an absolute URL, e.g. https://nexus.local or https://nexus.local/repository/my-docker/v2"
	// +kubebuilder:validation:XValidation:rule=`!isURL(self) || url(self).getScheme() in ['https', 'http']`,message="must use https:// (http:// only together with insecureSkipVerify: true)"
	// +kubebuilder:validation:XValidation:rule=`!isURL(self) || url(self).getHostname() != ''`,message="must name a host, e.g. https://nexus.local"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="must not carry credentials; put them in credentialsSecretRef"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('?') && !self.contains('#')`,message="must not have a query or fragment"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/../') && !self.endsWith('/..')`,message="path must not contain '..'"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x20\\x7f]')`,message="must not contain whitespace or control characters"
	Endpoint string `json:"endpoint,omitempty"`

	// fallbackEndpoints are further endpoints of the same registry (replicas, another
	// site), tried in this order after endpoint when it fails: the first that answers
	// serves the pull. Each is checked like endpoint. Nodes probe every endpoint and report
	// each in their RegistryNode; status.endpoints counts the nodes that reach each. The
	// manager (ImageSync copies, Nexus provisioning) uses endpoint. Docker Engine reaches
	// only https://<host> (its nodes note it).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	FallbackEndpoints []EndpointURL `json:"fallbackEndpoints,omitempty"`

	// dialTimeout is how long a node's runtime waits for a TCP connection to an endpoint
	// that has another after it (a fallback endpoint, or with mirrorOf the upstream) before
	// it tries that one, instead of the runtime's own connect timeout (30 s for
	// containerd). containerd tries the hosts in order for each request of a pull, so a
	// dead endpoint costs a pull this long for each request that meets it (3 for a
	// one-layer image in containerd 2.4). The last host tried keeps the runtime's own
	// patience. Default 200ms: a connection inside
	// a site or a region takes a few milliseconds; a mirror further away may need more.
	// Written for containerd 2.1 and later (dial_timeout in hosts.toml); nodes whose
	// runtime cannot take it say so in their RegistryNode. Between 100ms and 30s.
	// +optional
	// +kubebuilder:validation:XValidation:rule=`duration(self) >= duration('100ms') && duration(self) <= duration('30s')`,message="must be between 100ms and 30s, e.g. 500ms"
	DialTimeout *metav1.Duration `json:"dialTimeout,omitempty"`

	// caBundle is the PEM-encoded CA certificate(s) that signed the registry's serving
	// certificate, e.g. the private CA behind a self-signed nginx proxy. Empty means the
	// node's system roots. Mutually exclusive with caFrom.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	// +kubebuilder:validation:XValidation:rule=`self.contains('-----BEGIN CERTIFICATE-----')`,message="must be PEM: one or more -----BEGIN CERTIFICATE----- blocks"
	CABundle string `json:"caBundle,omitempty"`

	// caFrom reads the CA bundle from a Secret or ConfigMap key instead of caBundle.
	// +optional
	CAFrom *CASource `json:"caFrom,omitempty"`

	// insecureSkipVerify turns off TLS verification for this registry (containerd
	// skip_verify). Discouraged: give the CA instead. The CAValid condition warns while it is on.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`

	// clientCertificateSecretRef names a kubernetes.io/tls Secret (tls.crt, tls.key) whose
	// certificate nodes present to the registry, for registries that require mutual TLS.
	// The manager copies it into one Secret in its own namespace that only the node agents
	// may read; agents write it next to the CA (client.cert, and client.key with mode 0600)
	// in each runtime's format. It never appears in a ConfigMap, log, event or status.
	// +optional
	ClientCertificateSecretRef *SecretReference `json:"clientCertificateSecretRef,omitempty"`

	// credentialsSecretRef names a Secret of type kubernetes.io/basic-auth or
	// kubernetes.io/dockerconfigjson holding the credentials for this registry. They are used
	// for pull secrets and by ImageSyncs that target this registry; they are never written
	// to nodes. Leave it unset with provision.nexus to have regwire create least-privilege
	// users instead (provision.nexus.users).
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// mirrorOf lists upstream registries (such as docker.io) that this registry mirrors,
	// for example through a Nexus proxy repository. Nodes then try this registry first and
	// fall back to the upstream, unless skipFallback is set. The host _default stands for
	// every registry that no other host configuration names (containerd's _default
	// directory; CRI-O and Docker cannot express it).
	// +optional
	// +listType=map
	// +listMapKey=host
	// +kubebuilder:validation:MaxItems=32
	MirrorOf []UpstreamMirror `json:"mirrorOf,omitempty"`

	// skipFallback makes nodes pull the images of the mirrorOf upstreams from this registry
	// only: when it cannot serve a pull, the pull fails instead of going to the upstream
	// (the air-gap guarantee, OpenShift's NeverContactSource). In containerd's format the
	// mirror becomes the host's server; in CRI-O's the upstream is blocked, leaving its
	// mirrors. Default false: the upstream is the fallback.
	// +optional
	SkipFallback bool `json:"skipFallback,omitempty"`

	// runtimes are the container runtimes whose registry configuration the node agent
	// writes on each selected node. Empty (the default) means the node's own runtime, as
	// its status.nodeInfo.containerRuntimeVersion names it (containerd://, cri-o://,
	// docker://). List several for nodes where more than one runtime pulls images, e.g.
	// [containerd, docker] on a CI node whose jobs run docker. The agent reports a runtime
	// that cannot express the mirror (CRI-O with a non-/v2 path; Docker with mirrorOf)
	// with reason RuntimeUnsupported instead of writing half of it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	Runtimes []ContainerRuntime `json:"runtimes,omitempty"`

	// capabilities are what containerd may do with this registry. Defaults to pull and
	// resolve; push is only useful for nodes that push.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:default={pull,resolve}
	Capabilities []Capability `json:"capabilities,omitempty"`

	// hostAliases are /etc/hosts entries the node agent keeps on every selected node, for
	// registries whose names DNS does not resolve (such as nexus.local). The agent manages
	// one delimited block and never touches other lines. The manager resolves these names
	// the same way when it reaches the registry itself (ImageSync copies, Nexus
	// provisioning).
	// +optional
	// +listType=map
	// +listMapKey=ip
	// +kubebuilder:validation:MaxItems=16
	HostAliases []HostAlias `json:"hostAliases,omitempty"`

	// nodeSelector limits the nodes wired to this registry. Empty selects every node.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the node agent run on tainted nodes (control-plane nodes, for example).
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// pullSecrets creates a kubernetes.io/dockerconfigjson Secret from credentialsSecretRef
	// in every selected namespace, and optionally adds it to ServiceAccounts there.
	// +optional
	PullSecrets *PullSecretsSpec `json:"pullSecrets,omitempty"`

	// imagesInUse copies into this registry every image that Pods of the selected
	// namespaces run (containers, init and ephemeral containers) from a registry mirrorOf
	// names, to the path the nodes pull it from through this mirror: once copied, a lost
	// upstream loses nothing. An image run by digest is copied by digest; one run by tag is
	// copied by tag and followed (checked again every interval). Copies share the manager's
	// budget (--in-use-concurrency); an image that cannot be copied is reported once, in
	// status.imagesInUse and an Event, and tried again with backoff. Upstreams served by a
	// provisioned Nexus proxy are left to it: the proxy keeps what nodes pull through it.
	// +optional
	ImagesInUse *ImagesInUseSpec `json:"imagesInUse,omitempty"`

	// provision creates the registry repository this mirror serves, when the registry
	// supports it (Sonatype Nexus).
	// +optional
	Provision *ProvisionSpec `json:"provision,omitempty"`

	// imageSyncs says which namespaces' ImageSyncs may copy into this mirror, with its
	// credentials, and under which repositories. Unset, only ImageSyncs in the operator's
	// own namespace may: a mirror's push credentials are not every tenant's.
	// +optional
	ImageSyncs *ImageSyncPolicy `json:"imageSyncs,omitempty"`
}

// ImageSyncPolicy says which ImageSyncs may push into a RegistryMirror: those in the
// namespaces it selects, each under the repositories its patterns give that namespace.
type ImageSyncPolicy struct {
	// namespaceSelector selects the namespaces whose ImageSyncs may target this mirror;
	// {} selects every namespace. The operator's own namespace may always, anywhere.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// repositories are the values of an ImageSync's spec.target.repository that the
	// selected namespaces may write. In a pattern, * matches within one path segment, a
	// segment ** any number of segments, and {namespace} the ImageSync's own namespace:
	// my-docker/{namespace}/** lets team-a write my-docker/team-a/app and nothing of
	// team-b's.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Repositories []RepositoryPattern `json:"repositories"`
}

// RepositoryPattern is a pattern of repository paths: segments of lowercase letters,
// digits and separators, *, ** or {namespace}.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=255
// +kubebuilder:validation:XValidation:rule=`self.matches('^(\\*\\*|[a-z0-9._*{}-]+)(/(\\*\\*|[a-z0-9._*{}-]+))*$')`,message="must be a repository path pattern such as my-docker/{namespace}/**: lowercase segments separated by /, where * matches within a segment, ** any segments and {namespace} the ImageSync's namespace"
// +kubebuilder:validation:XValidation:rule=`!self.replace("{namespace}", "").matches("[{}]")`,message="the only placeholder is {namespace}"
type RepositoryPattern string

// CASource reads a CA bundle from exactly one Secret or ConfigMap key.
//
// +kubebuilder:validation:XValidation:rule=`has(self.secretKeyRef) != has(self.configMapKeyRef)`,message="set exactly one of secretKeyRef or configMapKeyRef"
type CASource struct {
	// secretKeyRef selects a key of a Secret holding PEM certificates.
	// +optional
	SecretKeyRef *KeySelector `json:"secretKeyRef,omitempty"`

	// configMapKeyRef selects a key of a ConfigMap holding PEM certificates.
	// +optional
	ConfigMapKeyRef *KeySelector `json:"configMapKeyRef,omitempty"`
}

// UpstreamMirror is an upstream registry that a RegistryMirror mirrors.
type UpstreamMirror struct {
	// host is the upstream as image references name it, e.g. docker.io or ghcr.io, or
	// _default for every registry no other host configuration names.
	// +required
	Host UpstreamHost `json:"host"`

	// path is the URL path on the mirror's endpoint host that serves this upstream's
	// registry API, rendered with containerd's override_path; e.g. /v2/docker-proxy for a
	// Nexus proxy repository with path-based routing, or
	// /repository/docker-proxy/v2 for the repository URL. Empty uses endpoint as it is.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule=`self.startsWith('/')`,message="must start with '/'"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/../') && !self.endsWith('/..')`,message="must not contain '..'"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9/._~-]*$')`,message="may only contain letters, digits, '/', '.', '_', '~' and '-'"
	Path string `json:"path,omitempty"`
}

// HostAlias maps an IP address to host names in nodes' /etc/hosts.
type HostAlias struct {
	// ip is the IPv4 or IPv6 address the hostnames resolve to.
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule=`isIP(self)`,message="must be an IPv4 or IPv6 address, e.g. 172.18.0.3"
	IP string `json:"ip"`

	// hostnames resolve to ip, e.g. nexus.local.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Hostnames []Hostname `json:"hostnames"`
}

// PullSecretsSpec asks for image pull secrets in selected namespaces.
type PullSecretsSpec struct {
	// secretName is the name of the kubernetes.io/dockerconfigjson Secret created in each
	// selected namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName"`

	// namespaceSelector selects the namespaces that get the pull secret. An empty selector
	// ({}) selects every namespace.
	// +required
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`

	// serviceAccounts are the ServiceAccounts in each selected namespace whose
	// imagePullSecrets get the secret; "*" alone means all of them. Empty patches none.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.all(s, s == '*' || s.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))`,message="each entry must be a ServiceAccount name or '*'"
	// +kubebuilder:validation:XValidation:rule=`!self.exists(s, s == '*') || size(self) == 1`,message="'*' selects every ServiceAccount and must stand alone"
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// ProvisionSpec asks regwire to create the registry-side repository.
//
// +kubebuilder:validation:XValidation:rule=`has(self.nexus)`,message="name a registry to provision: nexus"
type ProvisionSpec struct {
	// nexus creates a docker (hosted) repository in Sonatype Nexus Repository.
	// +optional
	Nexus *NexusProvision `json:"nexus,omitempty"`
}

// NexusProvision describes a Nexus docker (hosted) repository to create or update.
// +kubebuilder:validation:XValidation:rule=`!has(self.proxies) || self.proxies.all(p, p.repository != self.repository && (!has(self.group) || p.repository != self.group.repository))`,message="each proxy needs a repository name of its own, not the hosted repository's or the group's",fieldPath=".proxies"
// +kubebuilder:validation:XValidation:rule=`!has(self.proxies) || self.proxies.all(p, self.proxies.exists_one(q, q.repository == p.repository))`,message="two proxies name the same repository: give each upstream a repository of its own",fieldPath=".proxies"
// +kubebuilder:validation:XValidation:rule=`!has(self.group) || self.group.repository != self.repository`,message="the group needs a repository name of its own, not the hosted repository's",fieldPath=".group"
type NexusProvision struct {
	// url is Nexus's base URL for its REST API, e.g. https://nexus.local or
	// http://nexus.nexus.svc:8081.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule=`isURL(self) && url(self).getScheme() in ['https', 'http'] && url(self).getHostname() != ''`,message="must be an http(s) URL such as https://nexus.local"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="must not carry credentials; put them in adminCredentialsSecretRef"
	URL string `json:"url"`

	// adminCredentialsSecretRef names a kubernetes.io/basic-auth Secret with a Nexus user
	// allowed to manage repositories and security realms.
	// +required
	AdminCredentialsSecretRef SecretReference `json:"adminCredentialsSecretRef"`

	// repository is the docker (hosted) repository's name, e.g. my-docker. With Nexus's
	// path-based routing it is the first path component of image names.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`
	Repository string `json:"repository"`

	// blobStore is the Nexus blob store that holds the repository's content.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	BlobStore string `json:"blobStore,omitempty"`

	// writePolicy says whether stored content may be overwritten. Allow (the default) lets
	// mutable tags such as latest be pushed again.
	// +optional
	// +kubebuilder:default=Allow
	WritePolicy WritePolicy `json:"writePolicy,omitempty"`

	// dockerAuth is how the repository asks Docker clients for credentials: Basic (the
	// default) or Token (Nexus's bearer tokens, with the DockerToken realm activated).
	// +optional
	// +kubebuilder:default=Basic
	DockerAuth NexusDockerAuth `json:"dockerAuth,omitempty"`

	// users says whether regwire creates least-privilege Nexus users for the repository,
	// so that the admin credentials serve provisioning only. Managed: a pull user
	// (regwire-<mirror>-pull, which may read the repository; pull secrets are built from
	// it) and a push user (regwire-<mirror>-push, which may also add and edit; ImageSyncs
	// that target this mirror push as it), each with a role of the same name and a
	// generated password kept in a kubernetes.io/basic-auth Secret in the operator's
	// namespace (<mirror>-nexus-pull, <mirror>-nexus-push). Delete a Secret to rotate its
	// password. None: no users; credentialsSecretRef serves pulls and pushes. Unset means
	// Managed when credentialsSecretRef is unset, None when it is set.
	// +optional
	Users NexusUsers `json:"users,omitempty"`

	// proxies are docker (proxy) repositories regwire keeps in front of the upstream
	// registries the mirror serves (spec.mirrorOf), one per upstream: Nexus fetches an
	// image at its first pull and serves it from its store afterwards, also once the
	// upstream is out of reach. Nodes pull an upstream's images through its proxy: an
	// empty spec.mirrorOf[].path becomes /v2/<repository> (path-based routing, as for the
	// hosted repository; containerd and CRI-O both express it), or the repository's base
	// path /repository/<repository>/v2 when endpoint is a base path itself.
	// +optional
	// +listType=map
	// +listMapKey=upstream
	// +kubebuilder:validation:MaxItems=32
	Proxies []NexusProxy `json:"proxies,omitempty"`

	// group joins the hosted repository and the proxies into one docker (group)
	// repository, for clients that want one URL for all (docker login, then pull
	// <host>/<group>/library/nginx). Nexus asks the members in order: the hosted
	// repository, then the proxies as listed. Anonymous users never get read on it:
	// reading a group reads each member, the hosted repository included.
	// +optional
	Group *NexusGroup `json:"group,omitempty"`

	// anonymousRead says what users without credentials may pull: Proxies (the default)
	// or None. See NexusAnonymousRead.
	// +optional
	AnonymousRead NexusAnonymousRead `json:"anonymousRead,omitempty"`
}

// NexusProxy is a docker (proxy) repository in front of one upstream registry.
// +kubebuilder:validation:XValidation:rule=`self.upstream != '_default'`,message="a proxy needs one upstream registry: name a host of spec.mirrorOf such as docker.io, not _default"
type NexusProxy struct {
	// upstream is the host of spec.mirrorOf this repository serves, e.g. docker.io.
	// +required
	Upstream UpstreamHost `json:"upstream"`

	// repository is the proxy repository's name, e.g. docker-hub.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-z0-9_-][a-z0-9._-]*$`
	Repository string `json:"repository"`

	// remoteURL is the upstream registry's API, e.g. https://registry-1.docker.io.
	// Defaults: https://registry-1.docker.io for docker.io, https://<upstream> for any
	// other.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule=`isURL(self) && url(self).getScheme() in ['https', 'http'] && url(self).getHostname() != ''`,message="must be an http(s) URL such as https://registry-1.docker.io"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="must not carry credentials; put them in credentialsSecretRef"
	RemoteURL string `json:"remoteURL,omitempty"`

	// credentialsSecretRef names a kubernetes.io/basic-auth Secret with an account at the
	// upstream (Docker Hub's raises its pull limits). Nexus keeps the password and never
	// shows it; regwire sends it again when the Secret changes.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// negativeCacheTTL is how long Nexus remembers that the upstream lacks an image
	// before asking again (whole minutes; default 24h, Nexus's own).
	// +optional
	NegativeCacheTTL *metav1.Duration `json:"negativeCacheTTL,omitempty"`
}

// NexusGroup is a docker (group) repository joining the provisioned repositories.
type NexusGroup struct {
	// repository is the group repository's name, e.g. docker-all.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-z0-9_-][a-z0-9._-]*$`
	Repository string `json:"repository"`
}

// RegistryMirrorStatus is the observed state of a RegistryMirror.
type RegistryMirrorStatus struct {
	// conditions: Ready, NodesReady, PullSecretsReady, CAValid, ClientCertificateReady and
	// Provisioned.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// nodes counts the nodes wired to this registry.
	// +optional
	Nodes *NodesStatus `json:"nodes,omitempty"`

	// pullSecrets counts the namespaces holding the pull secret.
	// +optional
	PullSecrets *PullSecretsStatus `json:"pullSecrets,omitempty"`

	// endpoints counts, for each endpoint in priority order (endpoint, then
	// fallbackEndpoints), the selected nodes that reach it; set when there are fallbacks.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=9
	Endpoints []EndpointStatus `json:"endpoints,omitempty"`

	// caNotAfter is when the first certificate of the CA bundle expires.
	// +optional
	CANotAfter *metav1.Time `json:"caNotAfter,omitempty"`

	// imagesInUse says, with spec.imagesInUse, how many of the images Pods run are at the
	// mirror where the nodes' runtimes ask for them.
	// +optional
	ImagesInUse *ImagesInUseStatus `json:"imagesInUse,omitempty"`
}

// ImagesInUseSpec selects the Pods whose images a mirror keeps.
type ImagesInUseSpec struct {
	// namespaceSelector selects the namespaces whose Pods' images are copied; {} selects
	// every namespace.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// interval is how often an image run by tag is checked again for a new digest, e.g.
	// 1h. At least 1m.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule=`self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$')`,message="must be a duration such as 30m, 1h or 1h30m"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) >= duration('1m')`,message="must be at least 1m"
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// ImagesInUseStatus counts the images in use a mirror keeps.
type ImagesInUseStatus struct {
	// images are the distinct images Pods of the selected namespaces run from registries
	// mirrorOf names.
	// +optional
	Images int32 `json:"images"`

	// atMirror are those found at the mirror, at the path the nodes' runtimes ask.
	// +optional
	AtMirror int32 `json:"atMirror"`

	// proxied are those left to a Nexus proxy repository (provision.nexus.proxies).
	// +optional
	Proxied int32 `json:"proxied,omitempty"`

	// failing lists up to 20 images not at the mirror, with why; each is tried again with
	// backoff.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Failing []ImageInUseFailure `json:"failing,omitempty"`
}

// ImageInUseFailure is an image in use that could not be copied to the mirror.
type ImageInUseFailure struct {
	// image as Pods name it.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image"`

	// message says why, cut to 1024 bytes.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
}

// EndpointStatus is how many nodes reach one of a mirror's endpoints.
type EndpointStatus struct {
	// url of the endpoint.
	// +required
	URL string `json:"url"`

	// reachableNodes is the number of selected nodes whose last probe reached it.
	// +optional
	ReachableNodes int32 `json:"reachableNodes"`
}

// NodesStatus counts the nodes that applied a RegistryMirror.
type NodesStatus struct {
	// desired is the number of nodes the mirror selects.
	// +optional
	Desired int32 `json:"desired"`

	// ready is the number of selected nodes that applied the current configuration and
	// reached the registry.
	// +optional
	Ready int32 `json:"ready"`

	// summary is "ready/desired", for display.
	// +optional
	Summary string `json:"summary,omitempty"`

	// failing lists up to 20 nodes that are not ready, with the reason, sorted by reason
	// then name: the same nodes from one report to the next while they stay failing.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	Failing []NodeFailure `json:"failing,omitempty"`

	// failingReasons counts the nodes that are not ready by reason, all of them (failing
	// lists only the first few), sorted by reason.
	// +optional
	// +listType=map
	// +listMapKey=reason
	// +kubebuilder:validation:MaxItems=64
	FailingReasons []ReasonCount `json:"failingReasons,omitempty"`
}

// ReasonCount is how many nodes fail for one reason.
type ReasonCount struct {
	// reason is a CamelCase cause, e.g. ProbeFailed.
	// +required
	Reason ConditionReason `json:"reason"`

	// count is the number of nodes failing for it.
	// +required
	Count int32 `json:"count"`
}

// NodeFailure says why one node is not ready.
type NodeFailure struct {
	// name of the node.
	// +required
	Name string `json:"name"`

	// reason is a CamelCase cause, e.g. ProbeFailed.
	// +required
	Reason ConditionReason `json:"reason"`

	// message explains the failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// PullSecretsStatus counts the namespaces that hold a RegistryMirror's pull secret.
type PullSecretsStatus struct {
	// namespaces is the number of selected namespaces holding the current pull secret.
	// +optional
	Namespaces int32 `json:"namespaces"`

	// failed is the number of selected namespaces where the pull secret could not be
	// written, all of them (failing lists only the first few).
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// failing lists the first 20 namespaces, by name, where the pull secret could not be
	// written.
	// +optional
	// +listType=map
	// +listMapKey=namespace
	// +kubebuilder:validation:MaxItems=20
	Failing []NamespaceFailure `json:"failing,omitempty"`
}

// NamespaceFailure says why one namespace lacks the pull secret.
type NamespaceFailure struct {
	// namespace that lacks the pull secret.
	// +required
	Namespace string `json:"namespace"`

	// message explains the failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// RegistryMirror wires every selected node and namespace of the cluster to one private
// registry: containerd hosts.toml and CA on nodes, /etc/hosts aliases, pull secrets, and
// optionally the registry-side repository.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rm,categories=regwire
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes.summary`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RegistryMirror struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired wiring.
	// +required
	Spec RegistryMirrorSpec `json:"spec"`

	// status is the observed wiring.
	// +optional
	Status RegistryMirrorStatus `json:"status,omitempty"`
}

// RegistryMirrorList is a list of RegistryMirrors.
//
// +kubebuilder:object:root=true
type RegistryMirrorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RegistryMirror `json:"items"`
}

// ManagesNexusUsers says whether regwire creates this mirror's Nexus pull and push users:
// provision.nexus.users Managed, or unset without credentialsSecretRef.
func (s *RegistryMirrorSpec) ManagesNexusUsers() bool {
	if s.Provision == nil || s.Provision.Nexus == nil {
		return false
	}
	switch s.Provision.Nexus.Users {
	case NexusUsersManaged:
		return true
	case NexusUsersNone:
		return false
	default:
		return s.CredentialsSecretRef == nil
	}
}
