package v1alpha1

import "time"

// The annotations of a ClusterReport that say who may check in as its
// cluster through the bridge (docs/bridge.md, "Cluster identity"). They hold
// hashes, never a credential.
const (
	// AnnotationCredentialHash is the SHA-256 (hex) of the cluster's
	// credential, which the bridge issued when the cluster registered.
	AnnotationCredentialHash = "trainyard.dev/credential-sha256"
	// AnnotationPreviousCredentialHash and AnnotationPreviousCredentialExpires
	// keep the credential replaced by a rotation valid until then (RFC 3339),
	// so that an agent rolls to the new one without a failed check-in.
	AnnotationPreviousCredentialHash    = "trainyard.dev/previous-credential-sha256"
	AnnotationPreviousCredentialExpires = "trainyard.dev/previous-credential-expires"
	// AnnotationRotateCredential asks the bridge to issue a new credential
	// at the cluster's next check-in (any value; the bridge removes it).
	AnnotationRotateCredential = "trainyard.dev/rotate-credential"
	// AnnotationCredentialRevoked revokes every credential of the cluster
	// (any value, say when and why): its check-ins answer 401 until it
	// registers again with a valid registration token.
	AnnotationCredentialRevoked = "trainyard.dev/credential-revoked"
	// AnnotationRegisteredWith names the registration token (Secret/key)
	// the cluster last registered with.
	AnnotationRegisteredWith = "trainyard.dev/registered-with"
	// AnnotationCredentialUnused marks a credential no check-in has
	// presented yet, with when it was issued (RFC 3339): a registration
	// whose answer was lost may be retried with the same token within the
	// bridge's window, and gets a fresh credential (the unused one stops
	// working). The first check-in with the credential removes it.
	AnnotationCredentialUnused = "trainyard.dev/credential-unused"
	// AnnotationReissueHash and AnnotationReissueExpires open a cluster
	// for one registration (`kubectl trainyard cluster reissue`): the
	// SHA-256 (hex) of a single-use reissue token, valid until the time
	// (RFC 3339), at most MaxReissueLifetime away. A revoked cluster
	// registers again only with such a token: a registration token, which
	// usually sits next to a stolen credential, does not take it back. The
	// registration removes both.
	AnnotationReissueHash    = "trainyard.dev/reissue-sha256"
	AnnotationReissueExpires = "trainyard.dev/reissue-expires"
)

// MaxReissueLifetime bounds how long a reissue token is valid.
const MaxReissueLifetime = 24 * time.Hour

// IdentityAnnotations are all of the above: a cluster's direct-mode
// ServiceAccount may write none of them (the admission webhook refuses it).
var IdentityAnnotations = []string{
	AnnotationCredentialHash, AnnotationPreviousCredentialHash, AnnotationPreviousCredentialExpires,
	AnnotationRotateCredential, AnnotationCredentialRevoked, AnnotationRegisteredWith, AnnotationCredentialUnused,
	AnnotationReissueHash, AnnotationReissueExpires,
}

// ClusterServiceAccountPrefix names the hub ServiceAccount of one workload
// cluster's agent in direct mode: trainyard-cluster-<report name>. The
// admission webhook lets it write that ClusterReport only.
const ClusterServiceAccountPrefix = "trainyard-cluster-"
