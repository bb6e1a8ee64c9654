package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GateName names a promotion gate.
// +kubebuilder:validation:Enum=Soak;Adoption;NotRetracted;HealthyClusters;Window
type GateName string

const (
	// GateSoak: the candidate has been the source train's latest for spec.promotion.soak.
	GateSoak GateName = "Soak"
	// GateAdoption: enough non-stale clusters following the source train run it.
	GateAdoption GateName = "Adoption"
	// GateNotRetracted: the candidate is not retracted (never waived).
	GateNotRetracted GateName = "NotRetracted"
	// GateHealthyClusters: no cluster running it is Stale or runs a retracted release.
	GateHealthyClusters GateName = "HealthyClusters"
	// GateWindow: now is within the allowed days and hours.
	GateWindow GateName = "Window"
)

// GateState is a gate's verdict.
// +kubebuilder:validation:Enum=Pass;Fail;Pending
type GateState string

const (
	GatePass    GateState = "Pass"
	GateFail    GateState = "Fail"
	GatePending GateState = "Pending"
)

// PromotionPolicy promotes releases from another train of the same
// component to this one once every gate passes.
type PromotionPolicy struct {
	// from is the source train (for example "beta").
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="from must be a DNS-1123 label: a train name such as beta"
	From string `json:"from"`

	// soak: how long the candidate must have been the source train's latest.
	// +optional
	Soak *metav1.Duration `json:"soak,omitempty"`

	// adoption: how many non-stale clusters following the source train must run the candidate.
	// +optional
	Adoption *AdoptionGate `json:"adoption,omitempty"`

	// healthyClusters: no cluster running the candidate may be Stale or run a retracted release.
	// +optional
	HealthyClusters bool `json:"healthyClusters,omitempty"`

	// window: promote only on these days and hours.
	// +optional
	Window *PromotionWindow `json:"window,omitempty"`

	// suspend stops promoting (gates are still evaluated and shown).
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// AdoptionGate asks for both a share and a number of clusters.
type AdoptionGate struct {
	// minPercent of the source train's non-stale clusters, 0 to 100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MinPercent int32 `json:"minPercent,omitempty"`
	// minClusters: at least this many non-stale clusters.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinClusters int32 `json:"minClusters,omitempty"`
}

// PromotionWindow is when promotions may happen.
type PromotionWindow struct {
	// days allowed (Mon, Tue, Wed, Thu, Fri, Sat, Sun); empty: every day.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	Days []Weekday `json:"days,omitempty"`
	// hours allowed, "HH:MM-HH:MM" (end excluded; may wrap midnight); empty: all day.
	// +optional
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$`
	Hours string `json:"hours,omitempty"`
	// timeZone of days and hours, an IANA name; default UTC.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
}

// Weekday is a day's three-letter English name.
// +kubebuilder:validation:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
type Weekday string

// PromotionPhase is where a candidate stands.
// +kubebuilder:validation:Enum=Pending;Promoted;Blocked
type PromotionPhase string

const (
	// PromotionPending: some gate has not passed yet.
	PromotionPending PromotionPhase = "Pending"
	// PromotionPromoted: the release exists on this train.
	PromotionPromoted PromotionPhase = "Promoted"
	// PromotionBlocked: the candidate was retracted; it is never promoted.
	PromotionBlocked PromotionPhase = "Blocked"
)

// GateStatus is one gate's verdict on a candidate.
type GateStatus struct {
	// name of the gate.
	Name GateName `json:"name"`
	// state: Pass, Fail or Pending.
	State GateState `json:"state"`
	// reason, for people.
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// since is when the gate took this state.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// waivedBy names the PromotionApproval that waived the gate.
	// +optional
	WaivedBy string `json:"waivedBy,omitempty"`
}

// PromotionCandidate is a release of the source train and its gates.
type PromotionCandidate struct {
	// version of the candidate.
	Version string `json:"version"`
	// release is the candidate's ComponentRelease on the source train.
	Release string `json:"release"`
	// phase: Pending, Promoted or Blocked.
	Phase PromotionPhase `json:"phase"`
	// message says why, in one line.
	// +optional
	Message string `json:"message,omitempty"`
	// gates, each with its state.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=5
	Gates []GateStatus `json:"gates,omitempty"`
	// nextEvaluation is when a time-bound gate (soak, window) changes next.
	// +optional
	NextEvaluation *metav1.Time `json:"nextEvaluation,omitempty"`
	// promoted is when the release was created on this train.
	// +optional
	Promoted *metav1.Time `json:"promoted,omitempty"`
}

// PromotionStatus is the state of a train's promotion.
type PromotionStatus struct {
	// candidates: the source train's latest, and candidates blocked for good
	// (the last 10).
	// +optional
	// +listType=map
	// +listMapKey=version
	// +kubebuilder:validation:MaxItems=11
	Candidates []PromotionCandidate `json:"candidates,omitempty"`
}

// PromotionApprovalSpec waives gates of one candidate until an expiry, or,
// naming a ring, lets that ring of the train's rollout open for a version.
// +kubebuilder:validation:XValidation:rule="has(self.ring) != has(self.waive)",message="name either the gates to waive (a promotion) or the ring to open (a rollout), not both"
type PromotionApprovalSpec struct {
	// train is the ReleaseTrain promoted to or rolled out (its object name,
	// <component>.<train>).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Train string `json:"train"`
	// version of the candidate, or of the release rolling out.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`
	// ring of spec.rollout that may open for version (its after.approval).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Ring string `json:"ring,omitempty"`
	// waive these gates (NotRetracted cannot be waived).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:XValidation:rule="self != 'NotRetracted'",message="a retracted release is never promoted: NotRetracted cannot be waived"
	Waive []GateName `json:"waive,omitempty"`
	// expires: the approval waives nothing after this time.
	// +required
	Expires metav1.Time `json:"expires"`
	// reason is recorded in the train's status.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
}

// PromotionApproval lets a person waive gates of one candidate, or open a
// ring of a rollout, recorded in the train's status.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=papproval,categories=trainyard
// +kubebuilder:printcolumn:name="Train",type=string,JSONPath=`.spec.train`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Ring",type=string,JSONPath=`.spec.ring`
// +kubebuilder:printcolumn:name="Waive",type=string,JSONPath=`.spec.waive`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.spec.expires`
type PromotionApproval struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what is waived, for what, until when.
	// +required
	Spec PromotionApprovalSpec `json:"spec"`
}

// PromotionApprovalList is a list of PromotionApprovals.
// +kubebuilder:object:root=true
type PromotionApprovalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PromotionApproval `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PromotionApproval{}, &PromotionApprovalList{})
}

// RiskAcceptanceSpec accepts named risks of releases for some clusters
// until an expiry: their targets move from conditional into the
// recommendation.
// +kubebuilder:validation:XValidation:rule="has(self.clusters) || has(self.clusterSelector)",message="name the clusters: clusters, clusterSelector or both"
type RiskAcceptanceSpec struct {
	// risks accepted, by name.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Risks []string `json:"risks"`
	// component whose releases' risks are accepted; empty: any.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Component string `json:"component,omitempty"`
	// clusters, by ID.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	Clusters []string `json:"clusters,omitempty"`
	// clusterSelector selects ClusterReports by label.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	// expires: the acceptance accepts nothing after this time.
	// +required
	Expires metav1.Time `json:"expires"`
	// reason is for people reading it later.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
}

// RiskAcceptance lets a platform team accept known risks of releases on
// some clusters, for a while, on the record.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=raccept,categories=trainyard
// +kubebuilder:printcolumn:name="Risks",type=string,JSONPath=`.spec.risks`
// +kubebuilder:printcolumn:name="Component",type=string,JSONPath=`.spec.component`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.spec.expires`
type RiskAcceptance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which risks, for which clusters, until when.
	// +required
	Spec RiskAcceptanceSpec `json:"spec"`
}

// RiskAcceptanceList is a list of RiskAcceptances.
// +kubebuilder:object:root=true
type RiskAcceptanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RiskAcceptance `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RiskAcceptance{}, &RiskAcceptanceList{})
}
