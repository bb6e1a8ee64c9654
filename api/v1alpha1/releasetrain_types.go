package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Ordering decides which release of a train is the latest.
// +kubebuilder:validation:Enum=Semver;ReleaseTime
type Ordering string

const (
	// OrderingSemver: the highest semantic version is the latest.
	OrderingSemver Ordering = "Semver"
	// OrderingReleaseTime: the most recently released version is the latest
	// (as the Deis workflow-manager service did); ties are broken by semantic
	// version, then by name.
	OrderingReleaseTime Ordering = "ReleaseTime"
)

// PrereleasePolicy decides whether pre-release versions can be latest.
// +kubebuilder:validation:Enum=Include;Exclude
type PrereleasePolicy string

const (
	// PrereleasesInclude: pre-releases compete like any version. The train is
	// the channel, so on a "beta" train the betas count.
	PrereleasesInclude PrereleasePolicy = "Include"
	// PrereleasesExclude: a pre-release is never latest.
	PrereleasesExclude PrereleasePolicy = "Exclude"
)

// ReleaseTrainSpec chooses how the latest release of one (component, train)
// is picked.
type ReleaseTrainSpec struct {
	// component is the component this train carries. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="component must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="component is immutable"
	Component string `json:"component"`

	// train is the train's name, such as "stable" or "beta". Defaults to
	// "stable". Immutable.
	// +optional
	// +kubebuilder:default=stable
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="train must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="train is immutable"
	Train string `json:"train,omitempty"`

	// ordering picks the latest release: Semver (the highest semantic
	// version, the default) or ReleaseTime (the newest spec.released).
	// +optional
	// +kubebuilder:default=Semver
	Ordering Ordering `json:"ordering,omitempty"`

	// prereleases says whether pre-release versions can be latest: Include
	// (the default; the train itself is the channel) or Exclude.
	// +optional
	// +kubebuilder:default=Include
	Prereleases PrereleasePolicy `json:"prereleases,omitempty"`

	// versionRange is a semantic-version constraint (for example ">=1.2, <2"
	// or "~1.4") that a release must satisfy to be latest, to pin a train to
	// a major or minor line. Empty means any version.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	VersionRange string `json:"versionRange,omitempty"`

	// historyLimit is how many past latest releases status.history keeps.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	HistoryLimit *int32 `json:"historyLimit,omitempty"`

	// promotion promotes releases to this train from another train of the
	// same component once they pass its gates (soak, adoption, healthy
	// clusters, a time window); a retracted release is never promoted.
	// +optional
	Promotion *PromotionPolicy `json:"promotion,omitempty"`

	// rollout rolls each new latest release out to the fleet in rings: a
	// cluster is recommended the newest release its ring has opened.
	// +optional
	Rollout *RolloutPolicy `json:"rollout,omitempty"`
}

// ReleaseRef names one release of a train.
type ReleaseRef struct {
	// version of the release.
	Version string `json:"version"`
	// released is the release's spec.released.
	// +optional
	Released *metav1.Time `json:"released,omitempty"`
	// name of the ComponentRelease object.
	Name string `json:"name"`
	// since is when the release became the train's latest (in history: each
	// entry's turn as latest began then).
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// VersionAdoption counts the clusters that run one version.
type VersionAdoption struct {
	// version reported by the clusters.
	Version string `json:"version"`
	// clusters running it.
	Clusters int32 `json:"clusters"`
}

// FleetAdoption counts which versions of a train the fleet runs.
type FleetAdoption struct {
	// clusters that report this component on this train.
	Clusters int32 `json:"clusters"`
	// upToDate is how many of them run the latest release.
	UpToDate int32 `json:"upToDate"`
	// behind is how many of them run something else.
	Behind int32 `json:"behind"`
	// summary is "<upToDate>/<clusters>", for the printer column.
	// +optional
	Summary string `json:"summary,omitempty"`
	// versions lists the most used versions, most clusters first, at most 10.
	// +optional
	// +listType=map
	// +listMapKey=version
	// +kubebuilder:validation:MaxItems=10
	Versions []VersionAdoption `json:"versions,omitempty"`
	// otherVersions counts the clusters on versions not listed in versions.
	// +optional
	OtherVersions int32 `json:"otherVersions,omitempty"`
}

// ReleaseTrainStatus is the derived latest-per-train view.
type ReleaseTrainStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// latest is the train's current latest release.
	// +optional
	Latest *ReleaseRef `json:"latest,omitempty"`

	// previous is the release that was latest before the current one.
	// +optional
	Previous *ReleaseRef `json:"previous,omitempty"`

	// releaseCount is how many ComponentReleases the train has, retracted
	// ones included.
	// +optional
	ReleaseCount int32 `json:"releaseCount,omitempty"`

	// history lists the releases that have been latest, newest first (the
	// current latest is the first entry), at most spec.historyLimit entries.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	History []ReleaseRef `json:"history,omitempty"`

	// adoption counts the fleet's clusters on each version of this train.
	// +optional
	Adoption *FleetAdoption `json:"adoption,omitempty"`

	// promotion shows each candidate of spec.promotion and its gates.
	// +optional
	Promotion *PromotionStatus `json:"promotion,omitempty"`

	// rollout shows each ring of spec.rollout and its gates.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`

	// conditions: Ready, Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ReleaseTrain is the latest-per-train view of one (component, train). Its
// name is <component>.<train>. The controller creates one for every
// (component, train) that has releases; create it yourself first to choose
// the ordering policy.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rtrain,categories=trainyard
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.component + '.' + self.spec.train",message="metadata.name must be <spec.component>.<spec.train>"
// +kubebuilder:printcolumn:name="Component",type=string,JSONPath=`.spec.component`
// +kubebuilder:printcolumn:name="Train",type=string,JSONPath=`.spec.train`
// +kubebuilder:printcolumn:name="Latest",type=string,JSONPath=`.status.latest.version`
// +kubebuilder:printcolumn:name="Previous",type=string,JSONPath=`.status.previous.version`,priority=1
// +kubebuilder:printcolumn:name="Releases",type=integer,JSONPath=`.status.releaseCount`
// +kubebuilder:printcolumn:name="Up-To-Date",type=string,JSONPath=`.status.adoption.summary`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.status.rollout.phase`,priority=1
// +kubebuilder:printcolumn:name="Ordering",type=string,JSONPath=`.spec.ordering`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReleaseTrain struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the train's policy.
	// +required
	Spec ReleaseTrainSpec `json:"spec"`

	// status is filled in by the controllers.
	// +optional
	Status ReleaseTrainStatus `json:"status,omitempty"`
}

// ReleaseTrainList is a list of ReleaseTrains.
// +kubebuilder:object:root=true
type ReleaseTrainList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReleaseTrain `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ReleaseTrain{}, &ReleaseTrainList{})
}
