package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ComponentReleaseSpec is one published version of a component on a train.
type ComponentReleaseSpec struct {
	// component is the name of the released component, a DNS-1123 label
	// (for example "controller" or "router"). Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="component must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="component is immutable"
	Component string `json:"component"`

	// train is the release train (channel) this version is published on,
	// a DNS-1123 label such as "stable" or "beta". Defaults to "stable". Immutable.
	// +optional
	// +kubebuilder:default=stable
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="train must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="train is immutable"
	Train string `json:"train,omitempty"`

	// version is the released version, 1 to 64 printable characters without
	// whitespace or '/'. A semantic version (a leading "v" is allowed) takes
	// part in Semver ordering; any other string is stored but never latest on
	// a Semver train. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[!-.0-~]+$')",message="version must be printable characters without whitespace or '/'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="version is immutable"
	Version string `json:"version"`

	// released is when this version was released. The admission webhook sets
	// it to the time of creation when empty. Trains ordered by ReleaseTime
	// use it.
	// +optional
	Released *metav1.Time `json:"released,omitempty"`

	// description is a human-readable summary of the release.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Description string `json:"description,omitempty"`

	// fixes lists what the release fixes, free text.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Fixes string `json:"fixes,omitempty"`

	// image is the container image of this release, if it has one. Where
	// a TrustPolicy covers the release, it must name its digest
	// (registry/app@sha256:…): a tag can be moved, a digest cannot.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// signatureBundle is a Sigstore bundle (the JSON `cosign sign-blob
	// --bundle --new-bundle-format` or `cosign sign --new-bundle-format`
	// writes) that signs the image's digest. Where a TrustPolicy covers
	// the release, it decides whether the release can become latest.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	SignatureBundle string `json:"signatureBundle,omitempty"`

	// data holds extra string attributes of the release, kept verbatim and
	// served back by the bridge. At most 32 keys of up to 63 characters,
	// values of up to 2048 characters.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) >= 1 && size(k) <= 63)",message="data keys must be 1 to 63 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 2048)",message="data values must be at most 2048 characters"
	Data map[string]string `json:"data,omitempty"`

	// retracted marks the release as withdrawn. A retracted release is never
	// its train's latest, and clusters running it are flagged.
	// +optional
	Retracted *Retraction `json:"retracted,omitempty"`

	// upgradeFrom says which installed versions may move to this release
	// directly, a semantic-version constraint (">=1.4.0"); empty: any older
	// version. Clusters on others get a path of several hops.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	UpgradeFrom string `json:"upgradeFrom,omitempty"`

	// risks known for this release. A cluster a risk's rule applies to (or
	// cannot be evaluated on) is not recommended this release; it is listed
	// as a conditional update with the risk.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Risks []UpgradeRisk `json:"risks,omitempty"`

	// promotedFrom names the ComponentRelease this one was promoted from
	// (set by the manager's promotion). Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="promotedFrom is immutable"
	PromotedFrom string `json:"promotedFrom,omitempty"`
}

// UpgradeRisk is a known problem of a release on some clusters.
type UpgradeRisk struct {
	// name of the risk, for people and for risk acceptances.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// message says what goes wrong.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
	// url of the details.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	URL string `json:"url,omitempty"`
	// rule is a CEL expression over `cluster` (id, labels, properties,
	// components: maps of strings) that is true where the risk applies, with
	// compareVersions(a, b) for semantic versions; for example
	// compareVersions(cluster.properties.kubernetesVersion, "1.29") < 0.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Rule string `json:"rule"`
}

// Retraction says why and since when a release is withdrawn.
type Retraction struct {
	// reason tells users why the release was withdrawn.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`

	// since is when the release was retracted.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// ParsedVersion is a version broken into its semantic-version parts.
type ParsedVersion struct {
	// major version number.
	Major uint64 `json:"major"`
	// minor version number.
	Minor uint64 `json:"minor"`
	// patch version number.
	Patch uint64 `json:"patch"`
	// prerelease is the pre-release part without its leading '-', if any.
	// +optional
	Prerelease string `json:"prerelease,omitempty"`
	// metadata is the build metadata without its leading '+', if any.
	// +optional
	Metadata string `json:"metadata,omitempty"`
}

// ComponentReleaseStatus is what the controllers observed of a release.
type ComponentReleaseStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// semver is the parsed semantic version, absent when the version does not
	// parse as one.
	// +optional
	Semver *ParsedVersion `json:"semver,omitempty"`

	// latest is true when this release is its train's latest.
	// +optional
	Latest bool `json:"latest"`

	// conditions: Ready, Reconciling, Stalled, Semver and Retracted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ComponentRelease is one published version of a component on a release
// train. Its name is conventionally <component>.<train>.<version>.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=crel,categories=trainyard
// +kubebuilder:printcolumn:name="Component",type=string,JSONPath=`.spec.component`
// +kubebuilder:printcolumn:name="Train",type=string,JSONPath=`.spec.train`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Latest",type=boolean,JSONPath=`.status.latest`
// +kubebuilder:printcolumn:name="Retracted",type=string,JSONPath=`.spec.retracted.reason`,priority=1
// +kubebuilder:printcolumn:name="Released",type=date,JSONPath=`.spec.released`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ComponentRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the published release.
	// +required
	Spec ComponentReleaseSpec `json:"spec"`

	// status is filled in by the controllers.
	// +optional
	Status ComponentReleaseStatus `json:"status,omitempty"`
}

// ComponentReleaseList is a list of ComponentReleases.
// +kubebuilder:object:root=true
type ComponentReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ComponentRelease `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ComponentRelease{}, &ComponentReleaseList{})
}
