package v1alpha1

// ConditionReason is the CamelCase cause in a condition's reason (and in the reason of a
// node's or a namespace's failure). Every reason regwire sets is a constant below.
type ConditionReason string

// Condition types.
const (
	// ConditionReady summarises the object: True when everything it asks for is in place.
	ConditionReady = "Ready"

	// ConditionReconciling and ConditionStalled follow the kstatus convention that Flux,
	// Argo CD and kpt read (abnormal-true: present only while True). Reconciling: Ready is
	// not True yet and the controller is still working on it (nodes converging, a first
	// sync running, a registry that may come back); its reason and message are Ready's.
	// Stalled: Ready is False for a reason no retry can fix, only a change by a person (an
	// invalid spec, CA or certificate, rejected credentials, a conflicting mirror).
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"

	// ConditionCAValid (RegistryMirror): the CA bundle parses, holds at least one
	// certificate, and none has expired.
	ConditionCAValid = "CAValid"
	// ConditionNodesReady (RegistryMirror): every selected node has applied the mirror's
	// current configuration and reached its registry.
	ConditionNodesReady = "NodesReady"
	// ConditionPullSecretsReady (RegistryMirror): the pull secret exists and is current in
	// every selected namespace.
	ConditionPullSecretsReady = "PullSecretsReady"
	// ConditionClientCertificateReady (RegistryMirror): the client certificate asked for
	// in spec.clientCertificateSecretRef is valid and delivered to the node agents.
	ConditionClientCertificateReady = "ClientCertificateReady"
	// ConditionProvisioned (RegistryMirror): the registry repository asked for in
	// spec.provision exists as specified.
	ConditionProvisioned = "Provisioned"

	// ConditionSynced (ImageSync): the last sync copied every selected tag.
	ConditionSynced = "Synced"
)

// Reasons shared by the kinds.
const (
	// ReasonReconciled: the controller did everything it was asked to.
	ReasonReconciled ConditionReason = "Reconciled"
	// ReasonPending: a condition Ready depends on has not been evaluated yet.
	ReasonPending ConditionReason = "Pending"
	// ReasonInvalidSpec: the spec passed the API server's checks but not the controller's;
	// the message names the field and the fix.
	ReasonInvalidSpec ConditionReason = "InvalidSpec"
	// ReasonNotRequested: the spec does not ask for this part.
	ReasonNotRequested ConditionReason = "NotRequested"
	// ReasonCredentialsNotFound: a credentials Secret the spec names does not exist.
	ReasonCredentialsNotFound ConditionReason = "CredentialsNotFound"
	// ReasonCredentialsInvalid: a credentials Secret holds no usable credentials for the
	// registry; the message says what is missing.
	ReasonCredentialsInvalid ConditionReason = "CredentialsInvalid"
	// ReasonSecretNamespaceNotAllowed: a RegistryMirror names a Secret outside the
	// namespaces the manager reads them from (its own, and --secret-namespaces).
	ReasonSecretNamespaceNotAllowed ConditionReason = "SecretNamespaceNotAllowed"
)

// RegistryMirror reasons: CAValid.
const (
	// ReasonCAValid: the CA bundle holds valid certificates.
	ReasonCAValid ConditionReason = "CAValid"
	// ReasonCAInvalid: the CA bundle does not parse or holds no certificate.
	ReasonCAInvalid ConditionReason = "CAInvalid"
	// ReasonCAExpired: a certificate in the CA bundle has expired.
	ReasonCAExpired ConditionReason = "CAExpired"
	// ReasonCAExpiringSoon: the CA bundle is valid, but a certificate expires within 30 days.
	ReasonCAExpiringSoon ConditionReason = "CAExpiringSoon"
	// ReasonCASourceNotFound: caFrom names a Secret, ConfigMap or key that does not exist.
	ReasonCASourceNotFound ConditionReason = "CASourceNotFound"
	// ReasonSystemRoots: no CA given; nodes verify the registry with their system roots.
	ReasonSystemRoots ConditionReason = "SystemRoots"
	// ReasonInsecureSkipVerify: TLS verification is off for this registry.
	ReasonInsecureSkipVerify ConditionReason = "InsecureSkipVerify"
)

// RegistryMirror reasons: NodesReady, status.nodes.failing, and deletion.
const (
	// ReasonNodesReady: every selected node applied the configuration and reached the registry.
	ReasonNodesReady ConditionReason = "NodesReady"
	// ReasonNodesNotReady: some selected nodes have not; status.nodes.failing says which.
	ReasonNodesNotReady ConditionReason = "NodesNotReady"
	// ReasonNoNodesSelected: no node matches spec.nodeSelector and spec.tolerations.
	ReasonNoNodesSelected ConditionReason = "NoNodesSelected"
	// ReasonNotPublished: the mirror is withheld from the nodes until its CA problem is
	// fixed; nodes keep the last good configuration.
	ReasonNotPublished ConditionReason = "NotPublished"
	// ReasonAgentNotReporting: the regwire agent on a node has not reported.
	ReasonAgentNotReporting ConditionReason = "AgentNotReporting"
	// ReasonApplying: a node has not applied the current generation yet, or not probed it.
	ReasonApplying ConditionReason = "Applying"
	// ReasonHostConflict: another RegistryMirror claims the same host and wins.
	ReasonHostConflict ConditionReason = "HostConflict"
	// ReasonRuntimeUnsupported: the node's container runtime cannot express what the mirror
	// asks for (a CRI-O mirror path other than /v2/<namespace>, _default outside containerd,
	// mirrorOf or insecure registries on Docker Engine); nothing is written for it.
	ReasonRuntimeUnsupported ConditionReason = "RuntimeUnsupported"
	// ReasonConfigPathNotSet: the node's containerd does not read the registry host
	// directory regwire writes (no config_path for its CRI registry); the message names the
	// file and the line to add.
	ReasonConfigPathNotSet ConditionReason = "ConfigPathNotSet"
	// ReasonForeignConfigWins: a file regwire does not own configures the same registry and
	// the runtime uses it instead (a registries.conf.d drop-in sorting after regwire's);
	// the message names the file.
	ReasonForeignConfigWins ConditionReason = "ForeignConfigWins"
	// ReasonMirrorRefusesAnonymousPulls: the mirror answers 401 or 403 to a pull of a
	// mirrorOf upstream's image without credentials, which is how containerd and CRI-O reach
	// it (they send a pull secret's credentials only to the registry it names); such pulls
	// go to the upstream, or fail with skipFallback.
	ReasonMirrorRefusesAnonymousPulls ConditionReason = "MirrorRefusesAnonymousPulls"
	// ReasonWaitingForNodes: the mirror is being deleted and waits until every node has
	// removed its files.
	ReasonWaitingForNodes ConditionReason = "WaitingForNodes"
)

// RegistryMirror reasons: ClientCertificateReady.
const (
	// ReasonClientCertificateReady: the certificate and key are valid and the agents have
	// them.
	ReasonClientCertificateReady ConditionReason = "ClientCertificateReady"
	// ReasonClientCertificateNotFound: the Secret or one of its keys does not exist.
	ReasonClientCertificateNotFound ConditionReason = "ClientCertificateNotFound"
	// ReasonClientCertificateInvalid: tls.crt and tls.key do not form a key pair, or the
	// certificate has expired.
	ReasonClientCertificateInvalid ConditionReason = "ClientCertificateInvalid"
)

// RegistryMirror reasons: PullSecretsReady.
const (
	// ReasonPullSecretsReady: the pull secret is current in every selected namespace.
	ReasonPullSecretsReady ConditionReason = "PullSecretsReady"
	// ReasonPullSecretsFailing: some namespaces could not get the pull secret;
	// status.pullSecrets.failing says which and why.
	ReasonPullSecretsFailing ConditionReason = "PullSecretsFailing"
)

// RegistryMirror reasons: Provisioned.
const (
	// ReasonRepositoryCreated, ReasonRepositoryUpdated and ReasonRepositoryUpToDate: the
	// Nexus repository of spec.provision was created, changed to match, or already matched.
	ReasonRepositoryCreated  ConditionReason = "RepositoryCreated"
	ReasonRepositoryUpdated  ConditionReason = "RepositoryUpdated"
	ReasonRepositoryUpToDate ConditionReason = "RepositoryUpToDate"
	// ReasonNexusUnreachable: Nexus's REST API did not answer (DNS, TCP, TLS).
	ReasonNexusUnreachable ConditionReason = "NexusUnreachable"
	// ReasonNexusAuthFailed: Nexus refused the admin credentials (401) or their rights (403).
	ReasonNexusAuthFailed ConditionReason = "NexusAuthFailed"
	// ReasonProvisionFailed: Nexus answered with an error; the message carries its text.
	ReasonProvisionFailed ConditionReason = "ProvisionFailed"
	// ReasonUserSecretConflict: a Secret that regwire does not own has the name of a
	// managed Nexus user's Secret (<mirror>-nexus-pull or -push in the operator's
	// namespace); the message names it.
	ReasonUserSecretConflict ConditionReason = "UserSecretConflict"
	// ReasonPathRoutingUnsupported: Nexus does not keep path-based routing for the
	// repository (it is older than 3.83.0); the message names the version found, the one
	// needed, and the alternative endpoint.
	ReasonPathRoutingUnsupported ConditionReason = "PathRoutingUnsupported"
	// ReasonAnonymousAccessUnusable: anonymousRead Proxies cannot work with Nexus's
	// anonymous access as it is set (it runs as another user than the built-in anonymous,
	// which alone gets anonymous docker tokens); the message says what to change.
	ReasonAnonymousAccessUnusable ConditionReason = "AnonymousAccessUnusable"
	// ReasonHostedReadableAnonymously: provisioning is as specified, but Nexus's anonymous
	// user may read the hosted repository through roles regwire did not give it (e.g. the
	// built-in nx-anonymous); the message names them.
	ReasonHostedReadableAnonymously ConditionReason = "HostedReadableAnonymously"
)

// ImageSync reasons: Ready and Synced.
const (
	// ReasonSyncing: a copy is under way.
	ReasonSyncing ConditionReason = "Syncing"
	// ReasonSyncSucceeded: every selected tag is digest-equal in source and target.
	ReasonSyncSucceeded ConditionReason = "SyncSucceeded"
	// ReasonSyncFailed: at least one selected tag could not be copied; see status.images.
	ReasonSyncFailed ConditionReason = "SyncFailed"
	// ReasonSuspended: spec.suspend is true; nothing is copied.
	ReasonSuspended ConditionReason = "Suspended"
	// ReasonTargetNotAllowed: the target RegistryMirror's spec.imageSyncs does not allow
	// this ImageSync's namespace, or its repository; nothing is sent to either registry.
	ReasonTargetNotAllowed ConditionReason = "TargetNotAllowed"
	// ReasonTargetNotFound: target.registryMirrorRef names no RegistryMirror.
	ReasonTargetNotFound ConditionReason = "TargetNotFound"
	// ReasonTargetNotProvisioned: the target RegistryMirror provisions its Nexus repository
	// and has not done so (yet); copies wait for it, as Nexus refuses pushes to a
	// repository it does not hold.
	ReasonTargetNotProvisioned ConditionReason = "TargetNotProvisioned"
	// ReasonSourceNotFound: the source registry has no such repository, tag or blob (404).
	ReasonSourceNotFound ConditionReason = "SourceNotFound"
	// ReasonSourceAuthFailed: the source registry refused the credentials (401, 403).
	ReasonSourceAuthFailed ConditionReason = "SourceAuthFailed"
	// ReasonSignatureNotVerified: spec.verify is set and a selected tag has no cosign
	// signature that one of the keys verifies; nothing of it was copied.
	ReasonSignatureNotVerified ConditionReason = "SignatureNotVerified"
	// ReasonVerifyKeyInvalid: a key spec.verify names is missing or is not a PEM public key.
	ReasonVerifyKeyInvalid ConditionReason = "VerifyKeyInvalid"
	// ReasonSourceRateLimited: the source publishes a pull limit (Docker Hub) with no more
	// pulls left than the manager's --rate-limit-floor; tags that need a pull wait, and
	// the message says until when at the latest.
	ReasonSourceRateLimited ConditionReason = "SourceRateLimited"
	// ReasonSourceUnreachable: the source registry did not answer (DNS, TCP, TLS).
	ReasonSourceUnreachable ConditionReason = "SourceUnreachable"
	// ReasonTargetAuthFailed: the target registry refused the credentials (401, 403).
	ReasonTargetAuthFailed ConditionReason = "TargetAuthFailed"
	// ReasonTargetUnreachable: the target registry did not answer (DNS, TCP, TLS), or its
	// CA could not be read.
	ReasonTargetUnreachable ConditionReason = "TargetUnreachable"
)

// RegistryNode reasons: Ready and status.mirrors.
const (
	// ReasonApplied: the node applied every RegistryMirror that selects it.
	ReasonApplied ConditionReason = "Applied"
	// ReasonApplyFailed: the agent could not apply at least one mirror; see status.mirrors.
	ReasonApplyFailed ConditionReason = "ApplyFailed"
	// ReasonProbeFailed: a registry could not be reached from the node.
	ReasonProbeFailed ConditionReason = "ProbeFailed"
)

// EventReason is the reason of an Event that no condition carries.
type EventReason string

// Event reasons.
const (
	// ReasonImageInUseMirrored (an Event's reason on a RegistryMirror): an image Pods run
	// was copied to the mirror (spec.imagesInUse).
	ReasonImageInUseMirrored EventReason = "ImageInUseMirrored"
	// ReasonImageInUseNotMirrored (an Event's reason on a RegistryMirror): an image Pods
	// run could not be copied to the mirror; said once per new reason, tried again with
	// backoff.
	ReasonImageInUseNotMirrored EventReason = "ImageInUseNotMirrored"
	// ReasonPruned (an Event's reason): the sync removed tags the ImageSync wrote and no
	// longer selects.
	ReasonPruned EventReason = "Pruned"
	// ReasonPruneFailed (an Event's reason): tags to prune could not be removed.
	ReasonPruneFailed EventReason = "PruneFailed"
)
