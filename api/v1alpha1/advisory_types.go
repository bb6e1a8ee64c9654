package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdvisorySpec is the part of an OSV record (https://ossf.github.io/osv-schema/)
// that says which releases of which components a vulnerability affects.
// `kubectl trainyard advisory import` will write one from an OSV document.
type AdvisorySpec struct {
	// id is the advisory's identifier (GHSA-..., CVE-..., GO-...).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// aliases are other identifiers of the same vulnerability.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	Aliases []string `json:"aliases,omitempty"`
	// summary is one line.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Summary string `json:"summary,omitempty"`
	// details, in Markdown as OSV has them.
	// +optional
	// +kubebuilder:validation:MaxLength=16384
	Details string `json:"details,omitempty"`
	// severity: CVSS vectors and their scores.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=4
	Severity []AdvisorySeverity `json:"severity,omitempty"`
	// references: links to the advisory, the fix, reports.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	References []AdvisoryReference `json:"references,omitempty"`
	// withdrawn: when set, the advisory no longer applies; it exposes
	// nobody and changes no recommendation.
	// +optional
	Withdrawn *metav1.Time `json:"withdrawn,omitempty"`
	// affected lists the components, and their versions, it applies to.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Affected []AffectedComponent `json:"affected"`
	// expedite lets the nearest fixed release skip the soaks and rings of a
	// rollout, on the record.
	// +optional
	Expedite bool `json:"expedite,omitempty"`
}

// SeverityType is a scoring system of OSV's severity.
// +kubebuilder:validation:Enum=CVSS_V3;CVSS_V4
type SeverityType string

// Scoring systems.
const (
	SeverityCVSSv3 SeverityType = "CVSS_V3"
	SeverityCVSSv4 SeverityType = "CVSS_V4"
)

// AdvisorySeverity is a CVSS vector and its base score.
type AdvisorySeverity struct {
	// type of the vector.
	// +required
	Type SeverityType `json:"type"`
	// vector, such as CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Vector string `json:"vector"`
	// score is the base score, 0.0 to 10.0. For CVSS_V3 it is computed
	// from the vector when left out, and must match it when given.
	// +optional
	// +kubebuilder:validation:Pattern=`^(10(\.0)?|[0-9](\.[0-9])?)$`
	Score string `json:"score,omitempty"`
}

// AdvisoryReference is a link with its kind.
type AdvisoryReference struct {
	// type, as OSV has it: ADVISORY, ARTICLE, DETECTION, DISCUSSION,
	// REPORT, FIX, INTRODUCED, PACKAGE, EVIDENCE, WEB.
	// +required
	// +kubebuilder:validation:Enum=ADVISORY;ARTICLE;DETECTION;DISCUSSION;REPORT;FIX;INTRODUCED;GIT;PACKAGE;EVIDENCE;WEB
	Type string `json:"type"`
	// url of the reference.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	URL string `json:"url"`
}

// AffectedComponent is one component's affected versions: a version in any
// of the ranges or in versions is affected.
// +kubebuilder:validation:XValidation:rule="has(self.ranges) || has(self.versions)",message="give ranges, versions or both"
type AffectedComponent struct {
	// component, as ComponentReleases and ClusterReports name it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Component string `json:"component"`
	// trains limits the advisory to these trains; empty: every train.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Trains []string `json:"trains,omitempty"`
	// ranges of affected versions, as OSV's SEMVER ranges.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Ranges []AffectedRange `json:"ranges,omitempty"`
	// package is the package of the OSV record this was imported from (its
	// ecosystem and name), kept for the record.
	// +optional
	Package *AdvisoryPackage `json:"package,omitempty"`
	// versions affected, listed one by one.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=64
	Versions []string `json:"versions,omitempty"`
}

// AdvisoryPackage names a package as OSV does.
type AdvisoryPackage struct {
	// ecosystem, such as Go, npm or PyPI.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Ecosystem string `json:"ecosystem,omitempty"`
	// name in that ecosystem.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name,omitempty"`
	// purl, the package URL.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	PURL string `json:"purl,omitempty"`
}

// AffectedRange is an OSV range: events over semantic versions.
type AffectedRange struct {
	// type of the versions: SEMVER.
	// +required
	// +kubebuilder:validation:Enum=SEMVER
	Type string `json:"type"`
	// events: introduced (0: from the first version), fixed, lastAffected,
	// limit, in any order.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Events []RangeEvent `json:"events"`
}

// RangeEvent is exactly one of its four fields.
// +kubebuilder:validation:XValidation:rule="[has(self.introduced), has(self.fixed), has(self.lastAffected), has(self.limit)].filter(x, x).size() == 1",message="exactly one of introduced, fixed, lastAffected and limit"
type RangeEvent struct {
	// introduced: the first affected version ("0": every version from the first).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Introduced string `json:"introduced,omitempty"`
	// fixed: the first version no longer affected.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Fixed string `json:"fixed,omitempty"`
	// lastAffected: the last affected version, where no fix is known.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	LastAffected string `json:"lastAffected,omitempty"`
	// limit: versions from it on are outside the range ("*": no limit).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Limit string `json:"limit,omitempty"`
}

// AdvisoryStatus is the advisory's exposure across the fleet.
type AdvisoryStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// exposed counts the clusters that run an affected version.
	// +optional
	Exposed *Exposure `json:"exposed,omitempty"`
	// expedited are the fixed releases this advisory's expedite opened the
	// rollout rings for: what its exposed clusters are recommended, per
	// train (the train's object name).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Expedited []ExpeditedFix `json:"expedited,omitempty"`
	// conditions: Ready, and Exposed (true while a cluster runs an
	// affected version; False with reason Resolved once none does any
	// more).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Exposure is how many clusters run an affected version, and which.
type Exposure struct {
	// clusters exposed, in all.
	Clusters int32 `json:"clusters"`
	// byTrain: the exposed clusters per train.
	// +optional
	// +listType=map
	// +listMapKey=train
	ByTrain []TrainExposure `json:"byTrain,omitempty"`
	// clusterIDs: the first exposed clusters, by ID (at most 50).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	ClusterIDs []string `json:"clusterIDs,omitempty"`
}

// ExpeditedFix is a fixed release whose rollout an advisory expedites.
type ExpeditedFix struct {
	// train the release is on.
	Train string `json:"train"`
	// version of the release.
	Version string `json:"version"`
	// since is when the advisory first expedited it.
	Since metav1.Time `json:"since"`
}

// TrainExposure is the exposed clusters of one train.
type TrainExposure struct {
	// train name.
	Train string `json:"train"`
	// clusters exposed on it.
	Clusters int32 `json:"clusters"`
}

// Advisory is a vulnerability of some releases: which clusters run them,
// and what each should move to.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=adv,categories=trainyard
// +kubebuilder:printcolumn:name="ID",type=string,JSONPath=`.spec.id`
// +kubebuilder:printcolumn:name="Severity",type=string,JSONPath=`.spec.severity[0].score`
// +kubebuilder:printcolumn:name="Exposed",type=integer,JSONPath=`.status.exposed.clusters`
// +kubebuilder:printcolumn:name="Withdrawn",type=date,JSONPath=`.spec.withdrawn`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Advisory struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the advisory, as OSV has it.
	// +required
	Spec AdvisorySpec `json:"spec"`
	// status is its exposure, as the controller computes it.
	// +optional
	Status AdvisoryStatus `json:"status,omitempty"`
}

// AdvisoryList is a list of Advisories.
// +kubebuilder:object:root=true
type AdvisoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Advisory `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Advisory{}, &AdvisoryList{})
}
