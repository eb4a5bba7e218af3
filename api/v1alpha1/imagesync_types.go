package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ImageRepository is an image repository reference without a tag or digest, e.g.
// docker.io/library/busybox or nexus.local/my-docker/busybox.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=512
// +kubebuilder:validation:XValidation:rule=`!self.contains('://')`,message="must not include a scheme: write docker.io/library/busybox, not https://docker.io/library/busybox"
// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="must name a repository without a digest; select tags with tags, tagPattern or semver"
// +kubebuilder:validation:XValidation:rule=`!self.split('/')[size(self.split('/')) - 1].contains(':') || (size(self.split('/')) == 1 && self.matches('^[a-z0-9.-]+:[0-9]+$'))`,message="must name a repository without a tag (docker.io/library/busybox, not busybox:1.36); select tags with tags, tagPattern or semver"
// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x20\\x7f]')`,message="must not contain whitespace or control characters"
// +kubebuilder:validation:XValidation:rule=`self.matches('^([a-z0-9.-]+(:[0-9]+)?|\\[[0-9a-f:.]+\\](:[0-9]+)?)(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$')`,message="must be a repository reference such as docker.io/library/busybox or nexus.local/my-docker/busybox, with lowercase path components"
type ImageRepository string

// RepositoryScope says what spec.source.image names.
//
// +kubebuilder:validation:Enum=Image;Prefix
type RepositoryScope string

const (
	// RepositoryScopeImage copies the one repository image names.
	RepositoryScopeImage RepositoryScope = "Image"
	// RepositoryScopePrefix copies every repository at or below image's path (a registry
	// host alone: every repository of the registry).
	RepositoryScopePrefix RepositoryScope = "Prefix"
)

// Platform is an image platform, os/arch or os/arch/variant.
//
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$')`,message="must be os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm64/v8"
type Platform string

// RegistryHostAnnotation on a kubernetes.io/basic-auth Secret names the registry hosts
// (comma-separated, e.g. ghcr.io or registry.example:5000) its credentials are for. An
// ImageSync sends a basic-auth Secret's credentials only to a host it names, and a
// dockerconfigjson Secret's only to the host of its entry: a user who may create ImageSyncs
// but not read Secrets cannot point a copy at their own registry and receive a password.
const RegistryHostAnnotation = "regwire.dev/registry-host"

// ImageSyncSpec is what to copy, from where, to where and how often.
//
// +kubebuilder:validation:XValidation:rule=`!has(self.prune) || !has(self.source.repositories) || self.source.repositories == 'Image'`,message="prune works on one repository: remove prune, or use repositories: Image",fieldPath=".prune"
type ImageSyncSpec struct {
	// source is the repository to copy from and the tags to select.
	// +required
	Source ImageSource `json:"source"`

	// target is the repository to copy to.
	// +required
	Target ImageTarget `json:"target"`

	// platforms limits multi-platform images to these platforms; the target then gets a new
	// index whose digest differs from the source's. Empty copies every platform and keeps
	// index digests unchanged.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	Platforms []Platform `json:"platforms,omitempty"`

	// referrers also copies what refers to each image: OCI 1.1 referrers (signatures,
	// SBOMs, attestations) and cosign's sha256-<digest>.sig/.att/.sbom tags.
	// +optional
	Referrers bool `json:"referrers,omitempty"`

	// interval is how often the source is checked for new or changed tags, e.g. 30m or 6h.
	// At least 1m. The first sync runs at creation; later ones run an interval apart at a
	// phase of the ImageSync's own (a hash of its UID), so that many ImageSyncs spread over
	// their interval instead of copying at once; status.nextSyncTime says when.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule=`self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$')`,message="must be a duration such as 30m, 1h or 1h30m"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) >= duration('1m')`,message="must be at least 1m"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// suspend stops scheduled syncs; the status keeps the last results.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// verify copies a selected tag only when a cosign signature of its digest (the
	// sha256-<hex>.sig tag cosign sign writes) verifies with one of keys, offline: no
	// transparency log and no certificate authority are asked. A tag that does not verify —
	// unsigned, badly signed, signed by another key — fails with SignatureNotVerified
	// naming it, and nothing of it reaches the target; the signature of one that does goes
	// with it. Signature tags are not selected on their own.
	// +optional
	Verify *VerifySpec `json:"verify,omitempty"`

	// prune removes from the target the tags this ImageSync wrote that it no longer selects
	// (deselected, excluded, older than newest, or gone from the source). Only tags in its
	// ownership record (kept by the operator, in its own namespace, not in the registry)
	// are candidates, and only while they still point at the digest it wrote; a digest that
	// another tag of the repository or another ImageSync's record still holds stays, since
	// registries delete manifests by digest. Removals are Events and metrics. Unset keeps
	// everything (the default: a registry is not a cache).
	// +optional
	Prune *PruneSpec `json:"prune,omitempty"`
}

// VerifySpec is what an ImageSync's tags must be signed with.
type VerifySpec struct {
	// keys are PEM public keys (as cosign generate-key-pair writes cosign.pub) in Secrets or
	// ConfigMaps of the ImageSync's namespace; a signature any of them verifies will do.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Keys []PublicKeySource `json:"keys"`
}

// PublicKeySource is a key of a Secret or ConfigMap holding a PEM public key.
//
// +kubebuilder:validation:XValidation:rule=`has(self.secretKeyRef) != has(self.configMapKeyRef)`,message="set exactly one of secretKeyRef or configMapKeyRef"
type PublicKeySource struct {
	// secretKeyRef selects a key of a Secret in the ImageSync's namespace.
	// +optional
	SecretKeyRef *LocalKeySelector `json:"secretKeyRef,omitempty"`

	// configMapKeyRef selects a key of a ConfigMap in the ImageSync's namespace.
	// +optional
	ConfigMapKeyRef *LocalKeySelector `json:"configMapKeyRef,omitempty"`
}

// LocalKeySelector selects a key of an object in the same namespace.
type LocalKeySelector struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key within the object, e.g. cosign.pub.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// PruneSpec says how an ImageSync prunes the tags it wrote.
type PruneSpec struct {
	// keepLast of the tags no longer selected stay, the most recently written first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	KeepLast int32 `json:"keepLast,omitempty"`

	// dryRun only says, in status.prune.wouldRemove, what would be removed.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// PruneStatus is what the last sync's prune did.
type PruneStatus struct {
	// removed counts the tags the last sync removed from the target.
	// +optional
	Removed int32 `json:"removed,omitempty"`

	// wouldRemove lists, with dryRun, the tags the last sync would have removed (up to 20).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	WouldRemove []string `json:"wouldRemove,omitempty"`

	// kept counts the tags no longer selected that stay: within keepLast, still held by
	// another tag or another ImageSync, or rewritten by someone else since.
	// +optional
	Kept int32 `json:"kept,omitempty"`

	// error says why tags could not be removed, e.g. a registry refusing deletes.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
}

// NewestOrder is how newest orders tags.
//
// +kubebuilder:validation:Enum=Version;Created
type NewestOrder string

const (
	// NewestByVersion keeps the highest semantic versions.
	NewestByVersion NewestOrder = "Version"
	// NewestByCreated keeps the images created last.
	NewestByCreated NewestOrder = "Created"
)

// TagsLeftOut counts tags a selection left out, by reason.
type TagsLeftOut struct {
	// excluded are selected tags that spec.source.exclude matches.
	// +optional
	Excluded int32 `json:"excluded,omitempty"`
	// older are tags below the newest N kept (spec.source.newest): lower versions, or
	// images created earlier with newestBy: Created.
	// +optional
	Older int32 `json:"older,omitempty"`
	// notVersions are selected tags newest cannot order: they are not semantic versions.
	// +optional
	NotVersions int32 `json:"notVersions,omitempty"`
}

// ImageSource is the repository to copy from and the tags to select. A tag is selected when
// it is listed in tags, or matches tagPattern, or satisfies semver; then exclude leaves
// out what it matches, and newest keeps the N highest versions of what remains.
//
// tagPattern and semver are checked by the controller (CEL cannot parse them): an invalid
// one sets Ready=False with reason InvalidSpec and a message naming the field.
//
// +kubebuilder:validation:XValidation:rule=`has(self.tags) || has(self.tagPattern) || has(self.semver)`,message="select tags with at least one of tags, tagPattern or semver (tagPattern '.*' selects every tag)"
// +kubebuilder:validation:XValidation:rule=`!has(self.newestBy) || has(self.newest)`,message="newestBy goes with newest: set newest, e.g. 5",fieldPath=".newestBy"
// +kubebuilder:validation:XValidation:rule=`!has(self.repositoryPattern) || (has(self.repositories) && self.repositories == 'Prefix')`,message="repositoryPattern goes with repositories: Prefix",fieldPath=".repositoryPattern"
type ImageSource struct {
	// image is the source repository without tag, e.g. docker.io/library/busybox; with
	// repositories: Prefix, the prefix of the repositories to copy, e.g.
	// registry.example/team, or a registry host alone.
	// +required
	Image ImageRepository `json:"image"`

	// repositories says what image names: Image (the default) the one repository; Prefix
	// every repository of the source registry whose path is image's path or starts with it
	// and a slash (found in the registry's catalog, GET /v2/_catalog: a registry without
	// one, such as Docker Hub, is an error naming it). Each is copied to the target with the
	// prefix replaced by the target repository: registry.example/team/app/api goes to
	// my-docker/app/api with target repository my-docker (the prefix stripped), to
	// my-docker/team/app/api with my-docker/team (kept). Tag selection applies to each
	// repository; status then counts repositories and lists only the failing few.
	// +optional
	Repositories RepositoryScope `json:"repositories,omitempty"`

	// repositoryPattern, with repositories: Prefix, keeps only the repositories whose path
	// below the prefix matches this regular expression (RE2 syntax, anchored at both
	// ends), e.g. (app|tools)/.* . Checked by the controller.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	RepositoryPattern string `json:"repositoryPattern,omitempty"`

	// tags are tags to copy, e.g. ["1.36", "latest"].
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:XValidation:rule=`self.all(t, t.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'))`,message="each tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, e.g. 1.36 or latest"
	Tags []string `json:"tags,omitempty"`

	// tagPattern is a regular expression (RE2 syntax, anchored at both ends) selecting tags,
	// e.g. 1\.3[0-9]\..* . Checked by the controller.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	TagPattern string `json:"tagPattern,omitempty"`

	// semver is a semantic version range selecting tags, e.g. ">=1.36 <2" or "~1.36".
	// Tags that are not semantic versions are ignored. Checked by the controller.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Semver string `json:"semver,omitempty"`

	// exclude is a regular expression (RE2 syntax, anchored at both ends) of tags to leave
	// out, whatever selected them, e.g. .*-(rc|beta).*|latest (zot's excludeRegex,
	// skopeo's and regsync's deny lists). Checked by the controller.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Exclude string `json:"exclude,omitempty"`

	// newest keeps only the N highest semantic versions of the tags selected and not
	// excluded, e.g. 5 for the last five releases; tags that are not versions are then
	// left out. status.tagsLeftOut counts what was left out and why.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Newest int32 `json:"newest,omitempty"`

	// newestBy says how newest orders the tags: Version (the default: the highest
	// semantic versions) or Created (the images created last, read from each image's
	// config: a manifest and a config read per tag, so use it with a narrow selection;
	// tags need not be versions).
	// +optional
	NewestBy NewestOrder `json:"newestBy,omitempty"`

	// credentialsSecretRef names a kubernetes.io/basic-auth or
	// kubernetes.io/dockerconfigjson Secret in this namespace for the source registry.
	// Empty means anonymous.
	// +optional
	CredentialsSecretRef *LocalSecretReference `json:"credentialsSecretRef,omitempty"`

	// caBundle is PEM CA certificate(s) for the source registry; empty means system roots.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	// +kubebuilder:validation:XValidation:rule=`self.contains('-----BEGIN CERTIFICATE-----')`,message="must be PEM: one or more -----BEGIN CERTIFICATE----- blocks"
	CABundle string `json:"caBundle,omitempty"`

	// insecure skips TLS verification of the source registry. Discouraged.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// ImageTarget is the repository to copy to: either a repository of a RegistryMirror
// (whose endpoint, CA and credentials are then used), or a full image repository.
//
// +kubebuilder:validation:XValidation:rule=`has(self.image) != has(self.registryMirrorRef)`,message="set exactly one of image, or registryMirrorRef with repository"
// +kubebuilder:validation:XValidation:rule=`has(self.registryMirrorRef) == has(self.repository)`,message="repository goes with registryMirrorRef: set both, or use image alone",fieldPath=".repository"
// +kubebuilder:validation:XValidation:rule=`!has(self.registryMirrorRef) || !(has(self.credentialsSecretRef) || has(self.caBundle) || has(self.insecure))`,message="with registryMirrorRef the RegistryMirror's credentials and CA are used: remove credentialsSecretRef, caBundle and insecure"
type ImageTarget struct {
	// registryMirrorRef names the RegistryMirror to copy into.
	// +optional
	RegistryMirrorRef *RegistryMirrorReference `json:"registryMirrorRef,omitempty"`

	// repository is the repository path under the RegistryMirror's host, e.g.
	// my-docker/busybox for nexus.local/my-docker/busybox. With a mirror whose endpoint is
	// a Nexus repository base path (/repository/my-docker/v2), the path is the image name
	// alone (busybox): the base path already names the Nexus repository.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$')`,message="must be a lowercase repository path such as my-docker/busybox, without host or tag"
	Repository string `json:"repository,omitempty"`

	// image is a full target repository without tag, e.g. registry.example/team/busybox.
	// +optional
	Image ImageRepository `json:"image,omitempty"`

	// credentialsSecretRef names a Secret in this namespace for the target registry (with
	// image only).
	// +optional
	CredentialsSecretRef *LocalSecretReference `json:"credentialsSecretRef,omitempty"`

	// caBundle is PEM CA certificate(s) for the target registry (with image only).
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	// +kubebuilder:validation:XValidation:rule=`self.contains('-----BEGIN CERTIFICATE-----')`,message="must be PEM: one or more -----BEGIN CERTIFICATE----- blocks"
	CABundle string `json:"caBundle,omitempty"`

	// insecure skips TLS verification of the target registry (with image only). Discouraged.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// RegistryMirrorReference names a RegistryMirror.
type RegistryMirrorReference struct {
	// name of the RegistryMirror.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ImageSyncStatus is the observed state of an ImageSync.
type ImageSyncStatus struct {
	// conditions: Ready and Synced.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// targetImage is the resolved target repository, e.g. nexus.local/my-docker/busybox.
	// +optional
	TargetImage string `json:"targetImage,omitempty"`

	// tagsSummary is "synced/selected" tags, for display (of every repository, with
	// spec.source.repositories: Prefix).
	// +optional
	TagsSummary string `json:"tagsSummary,omitempty"`

	// repositories counts the repositories the last sync found below the prefix, with
	// spec.source.repositories: Prefix; unset otherwise.
	// +optional
	Repositories *RepositoryCounts `json:"repositories,omitempty"`

	// tagsLeftOut counts the source's tags the last sync left out, by reason: excluded,
	// older than the newest N, or not versions (with newest). Unset when it left out none
	// of those.
	// +optional
	TagsLeftOut *TagsLeftOut `json:"tagsLeftOut,omitempty"`

	// prune is what the last sync's prune did, with spec.prune.
	// +optional
	Prune *PruneStatus `json:"prune,omitempty"`

	// lastSyncTime is when the last sync finished.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// nextSyncTime is when the next scheduled sync starts.
	// +optional
	NextSyncTime *metav1.Time `json:"nextSyncTime,omitempty"`

	// images is the result of the last sync for each selected tag. With
	// spec.source.repositories: Prefix it lists only the failing few (up to 20), each
	// tag named path:tag by its repository's path below the prefix, and a repository that
	// failed as a whole (its tags not listed) by its path alone.
	// +optional
	// +listType=map
	// +listMapKey=tag
	// +kubebuilder:validation:MaxItems=1000
	Images []ImageStatus `json:"images,omitempty"`
}

// RepositoryCounts counts the repositories of a prefix sync.
type RepositoryCounts struct {
	// found below the prefix (and matching repositoryPattern).
	// +required
	Found int32 `json:"found"`
	// synced: every selected tag up to date in the target.
	// +required
	Synced int32 `json:"synced"`
	// failed: the repository, or one of its tags, failed.
	// +required
	Failed int32 `json:"failed"`
}

// ImageStatus is the result of syncing one tag.
type ImageStatus struct {
	// tag that was synced.
	// +required
	Tag string `json:"tag"`

	// sourceDigest is the digest of the tag in the source.
	// +optional
	SourceDigest string `json:"sourceDigest,omitempty"`

	// targetDigest is the digest of the tag in the target. It differs from sourceDigest
	// only when platforms filtered a multi-platform image.
	// +optional
	TargetDigest string `json:"targetDigest,omitempty"`

	// syncedAt is when the tag was last found or made digest-equal in the target.
	// +optional
	SyncedAt *metav1.Time `json:"syncedAt,omitempty"`

	// bytes is how many bytes the last sync of this tag transferred.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`

	// error is why the last sync of this tag failed, cut to 1024 bytes; empty on success.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`

	// copying is the progress of a copy of this tag under way; unset otherwise. It is
	// updated at most every few seconds.
	// +optional
	Copying *CopyProgress `json:"copying,omitempty"`
}

// CopyProgress is how far a tag's copy has come.
type CopyProgress struct {
	// completedBytes of the tag's blobs and manifests are in the target (sent, mounted or
	// found there).
	// +required
	// +kubebuilder:validation:Minimum=0
	CompletedBytes int64 `json:"completedBytes"`

	// totalBytes the copy needs, as far as known: it grows while the manifests of a
	// multi-platform image are read.
	// +required
	// +kubebuilder:validation:Minimum=0
	TotalBytes int64 `json:"totalBytes"`
}

// ImageSync copies selected tags of an image repository into a private registry on a
// schedule, keeping digests (and multi-platform indexes) intact.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=is,categories=regwire
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source.image`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.targetImage`
// +kubebuilder:printcolumn:name="Tags",type=string,JSONPath=`.status.tagsSummary`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ImageSync struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to copy.
	// +required
	Spec ImageSyncSpec `json:"spec"`

	// status is what the last syncs did.
	// +optional
	Status ImageSyncStatus `json:"status,omitempty"`
}

// ImageSyncList is a list of ImageSyncs.
//
// +kubebuilder:object:root=true
type ImageSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImageSync `json:"items"`
}
