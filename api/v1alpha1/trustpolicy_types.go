package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrustPolicySpec says which releases must be signed, and by whom, before
// they can become latest (issue 31). Everything it trusts is in Secrets of
// its namespace: nothing is fetched from the network unless
// spec.registry.enabled says so.
// +kubebuilder:validation:XValidation:rule="(has(self.keys) && size(self.keys) > 0) || has(self.keyless)",message="trust keys, keyless identities, or both"
// +kubebuilder:validation:XValidation:rule="!has(self.keyless) || self.transparencyLog.threshold > 0 || self.signedTimestamps.threshold > 0",message="keyless signatures need a time source: transparencyLog.threshold or signedTimestamps.threshold above 0 (their certificates are short-lived)"
type TrustPolicySpec struct {
	// components the policy covers (empty: every component).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Components []string `json:"components,omitempty"`
	// trains the policy covers (empty: every train).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Trains []string `json:"trains,omitempty"`

	// keys are trusted public keys (PEM, as `cosign generate-key-pair`
	// writes cosign.pub), each in a Secret of the policy's namespace.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Keys []SecretKeyRef `json:"keys,omitempty"`

	// keyless trusts certificates a trusted root's CA issued to the given
	// identities (Fulcio, or a private Sigstore).
	// +optional
	Keyless *KeylessTrust `json:"keyless,omitempty"`

	// transparencyLog: how many transparency-log entries must verify
	// (under the trusted root's logs). Stated explicitly: 0 means none is
	// required.
	// +required
	TransparencyLog Threshold `json:"transparencyLog"`
	// signedTimestamps: how many RFC 3161 timestamps from the trusted
	// root's timestamping authorities must verify. 0 means none.
	// +required
	SignedTimestamps Threshold `json:"signedTimestamps"`

	// registry lets the controller fetch signatures that releases do not
	// carry (spec.signatureBundle) from the image's registry: the cosign
	// `.sig` tag and OCI referrers. Off by default: no network.
	// +optional
	Registry *RegistrySignatures `json:"registry,omitempty"`
}

// SecretKeyRef names one key of a Secret in the same namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
	// sha256 pins the value (its SHA-256, lower-case hex): a value that
	// does not match is not trusted. Whoever can edit Secrets in the
	// namespace (Kubernetes' edit role can) could otherwise replace a key;
	// the pin is in the TrustPolicy, which only admins may edit.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SHA256 string `json:"sha256,omitempty"`
}

// KeylessTrust is a trusted root and the identities it may certify.
type KeylessTrust struct {
	// trustedRoot is a Sigstore trusted_root.json in a Secret (for the
	// public good instance: `cosign trusted-root create`, or the TUF
	// repository's target, copied in by hand). Never downloaded.
	// +required
	TrustedRoot SecretKeyRef `json:"trustedRoot"`
	// identities that may sign: any one matching is enough.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Identities []OIDCIdentity `json:"identities"`
}

// OIDCIdentity is a signer's OIDC issuer and subject, each exact or a
// regular expression (as Flux's matchOIDCIdentity).
// +kubebuilder:validation:XValidation:rule="has(self.issuer) != has(self.issuerRegExp)",message="exactly one of issuer and issuerRegExp"
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectRegExp)",message="exactly one of subject and subjectRegExp"
type OIDCIdentity struct {
	// issuer, exact (https://token.actions.githubusercontent.com).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Issuer string `json:"issuer,omitempty"`
	// issuerRegExp, a regular expression (RE2).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	IssuerRegExp string `json:"issuerRegExp,omitempty"`
	// subject, exact: the certificate's SAN (a workflow's URL, an e-mail).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Subject string `json:"subject,omitempty"`
	// subjectRegExp, a regular expression (RE2).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// Threshold is how many of something must verify.
type Threshold struct {
	// threshold: 0 to 8.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=8
	Threshold int32 `json:"threshold"`
}

// RegistrySignatures is the opt-in fetch of signatures from registries.
type RegistrySignatures struct {
	// enabled turns the fetch on.
	Enabled bool `json:"enabled"`
	// timeout of one fetch (default 10s, at most 60s).
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// pullSecret names a kubernetes.io/dockerconfigjson Secret of the
	// namespace for private registries.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PullSecret string `json:"pullSecret,omitempty"`
}

// TrustPolicyStatus is what the controller made of the policy.
type TrustPolicyStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// verified and failed count the covered releases by outcome.
	// +optional
	Verified int32 `json:"verified,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// conditions: Ready (the keys and root load; the message names what
	// does not).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrustPolicy says which releases must be signed, and by whom, to become
// latest.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=trainyard
// +kubebuilder:printcolumn:name="Components",type=string,JSONPath=`.spec.components`
// +kubebuilder:printcolumn:name="Verified",type=integer,JSONPath=`.status.verified`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrustPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the policy trusts and covers.
	// +required
	Spec TrustPolicySpec `json:"spec"`
	// status is what the controller made of it.
	// +optional
	Status TrustPolicyStatus `json:"status,omitempty"`
}

// TrustPolicyList is a list of TrustPolicies.
// +kubebuilder:object:root=true
type TrustPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrustPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TrustPolicy{}, &TrustPolicyList{})
}
