package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// MaxRings bounds spec.rollout.rings of a ReleaseTrain.
const MaxRings = 8

// MaxRolloutHalts is how many halts status.rollout.halts keeps.
const MaxRolloutHalts = 5

// RolloutPolicy rolls each new latest release of a train out to the fleet in
// rings: a cluster's recommendation is the newest release its ring has
// opened. The first ring opens when a release becomes latest; each later
// ring opens once enough of the ring before it runs the release and is
// ready, for long enough, and an approval exists where one is required.
type RolloutPolicy struct {
	// rings in the order they open, 1 to 8, each name once. A cluster is in
	// the first ring whose clusterSelector matches its ClusterReport's
	// labels; a cluster that matches none is in the last ring. A ring with
	// no clusters is skipped, never waited for.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Rings []Ring `json:"rings"`

	// halt says when clusters that are not ready halt the rollout.
	// +optional
	Halt *HaltPolicy `json:"halt,omitempty"`

	// suspend pauses the rollout: no ring opens (gates are still evaluated
	// and shown).
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// Ring is one wave of a rollout.
type Ring struct {
	// name of the ring, a DNS-1123 label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="name must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name"`

	// clusterSelector selects the ring's ClusterReports by label. Without
	// one, the ring selects no cluster by itself (the last ring still takes
	// every cluster no ring selects).
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// after are the gates the ring waits for before it opens.
	// +optional
	After *RingGate `json:"after,omitempty"`

	// maxConcurrent: how many of the ring's clusters may be shown the new
	// release and not yet run it ready, a number or a percentage of the
	// ring ("25%"). The clusters are shown it in a stable order (a hash of
	// the train and the cluster ID); as they run it ready, the next ones
	// are. Unset: the whole ring at once.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="maxConcurrent must be at least 1, or a percentage from 1% to 100%"
	MaxConcurrent *intstr.IntOrString `json:"maxConcurrent,omitempty"`
}

// RingGate is what a ring waits for. Reports, not release status, decide:
// a cluster counts once its report shows it running the release and its
// workload ready (or readiness unknown, as with Deis agents, which report
// none).
type RingGate struct {
	// soak: how long the share of the previous ring (minReportingPercent)
	// must have run the release, ready, before this ring opens. For the
	// first ring, counted from when the release became latest.
	// +optional
	Soak *metav1.Duration `json:"soak,omitempty"`

	// minReportingPercent of the previous non-empty ring's clusters that
	// must run the release, ready. 0: any share.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MinReportingPercent int32 `json:"minReportingPercent,omitempty"`

	// approval: a PromotionApproval naming this train, this ring and the
	// release must be in force.
	// +optional
	Approval bool `json:"approval,omitempty"`
}

// HaltPolicy halts a rollout when too many clusters that moved to the
// release are not ready for too long.
type HaltPolicy struct {
	// maxNotReadyPercent: the rollout halts when more than this share of an
	// opened ring's clusters run the release and have not been ready for
	// notReadyFor. Defaults to 20.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxNotReadyPercent *int32 `json:"maxNotReadyPercent,omitempty"`

	// notReadyFor: how long a cluster must have been not ready to count.
	// Defaults to 10m.
	// +optional
	NotReadyFor *metav1.Duration `json:"notReadyFor,omitempty"`
}

// RingState is where a ring stands for the rolling release.
// +kubebuilder:validation:Enum=Waiting;Soaking;Open;Halted
type RingState string

const (
	// RingWaiting: a gate other than the soak has not passed (the previous
	// ring's share, an approval) or the rollout is suspended.
	RingWaiting RingState = "Waiting"
	// RingSoaking: the previous ring's share runs the release; the soak
	// has not passed yet.
	RingSoaking RingState = "Soaking"
	// RingOpen: the ring's clusters are recommended the release.
	RingOpen RingState = "Open"
	// RingHalted: the rollout is halted; the ring opens nothing more.
	RingHalted RingState = "Halted"
)

// RolloutPhase is where a rollout stands.
// +kubebuilder:validation:Enum=Progressing;Complete;Halted;Suspended
type RolloutPhase string

const (
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutComplete    RolloutPhase = "Complete"
	RolloutHalted      RolloutPhase = "Halted"
	RolloutSuspended   RolloutPhase = "Suspended"
)

// RingStatus is one ring's progress.
type RingStatus struct {
	// name of the ring.
	Name string `json:"name"`
	// state: Waiting, Soaking, Open or Halted.
	State RingState `json:"state"`
	// since is when the ring took this state.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// reason is the state's cause in one word: NoLatest, WaitingForRing,
	// WaitingForShare, Soaking, WaitingForApproval, Suspended, Halted,
	// Opened, Skipped or Baseline.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message says why, in one line.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// version is the newest release the ring has opened: its clusters are
	// recommended nothing newer.
	// +optional
	Version string `json:"version,omitempty"`
	// previous is the release the ring had opened before version: what its
	// clusters outside the shown slice are recommended.
	// +optional
	Previous string `json:"previous,omitempty"`
	// opened is when the ring opened version.
	// +optional
	Opened *metav1.Time `json:"opened,omitempty"`
	// approvedBy names the PromotionApproval that let the ring open.
	// +optional
	ApprovedBy string `json:"approvedBy,omitempty"`
	// clusters in the ring.
	Clusters int32 `json:"clusters"`
	// onVersion: clusters of the ring that run the rolling release, ready.
	OnVersion int32 `json:"onVersion"`
	// notReady: clusters of the ring that run the rolling release, not ready.
	// +optional
	NotReady int32 `json:"notReady,omitempty"`
	// shownBasisPoints is the share of the ring (in the stable hash order)
	// shown the release, in hundredths of a percent (10000: all of it).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	ShownBasisPoints int32 `json:"shownBasisPoints,omitempty"`
	// nextEvaluation is when a time-bound gate of the ring changes next.
	// +optional
	NextEvaluation *metav1.Time `json:"nextEvaluation,omitempty"`
}

// RolloutHalt is one halt of a rollout, on the record.
type RolloutHalt struct {
	// version that was rolling.
	Version string `json:"version"`
	// reason: Retracted or NotReady.
	Reason string `json:"reason"`
	// message says what halted it.
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
	// at is when the rollout halted.
	At metav1.Time `json:"at"`
	// resumed is when the halt ended (nil: still halted).
	// +optional
	Resumed *metav1.Time `json:"resumed,omitempty"`
	// superseded: the halt ended because another cause, or a newer
	// release's rollout, took over; the rollout did not resume.
	// +optional
	Superseded bool `json:"superseded,omitempty"`
}

// RolloutStatus is the state of a train's rollout.
type RolloutStatus struct {
	// version is the rolling release: the newest that became the train's
	// latest since the rollout was configured.
	// +optional
	Version string `json:"version,omitempty"`
	// started is when the rollout of version started.
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// phase: Progressing, Complete, Halted or Suspended.
	Phase RolloutPhase `json:"phase"`
	// message says why, in one line.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// rings in spec order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Rings []RingStatus `json:"rings,omitempty"`
	// halts are the last halts, oldest first.
	// +optional
	// +kubebuilder:validation:MaxItems=5
	Halts []RolloutHalt `json:"halts,omitempty"`
	// nextEvaluation is the earliest of the rings' nextEvaluation.
	// +optional
	NextEvaluation *metav1.Time `json:"nextEvaluation,omitempty"`
}

// HeldBack is a newer release a cluster could go to, but for its rollout
// ring.
type HeldBack struct {
	// version held back: the recommendation the cluster would have without
	// its ring.
	Version string `json:"version"`
	// ring the cluster is in.
	Ring string `json:"ring"`
	// reason, for people.
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// until is when the ring's next time-bound gate changes (nil: not
	// bound to a time: a share, an approval or a halt).
	// +optional
	Until *metav1.Time `json:"until,omitempty"`
}
