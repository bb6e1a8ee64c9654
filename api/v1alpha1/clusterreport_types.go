package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReportedComponent is one component a cluster runs.
type ReportedComponent struct {
	// name of the component, a DNS-1123 label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="name must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name"`

	// train the cluster follows for this component. Defaults to "stable".
	// +optional
	// +kubebuilder:default=stable
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="train must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	Train string `json:"train,omitempty"`

	// version the cluster runs, 1 to 64 printable characters without
	// whitespace or '/'.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[!-.0-~]+$')",message="version must be printable characters without whitespace or '/'"
	Version string `json:"version"`

	// type of the workload (for example Deployment, DaemonSet, HelmRelease).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Type string `json:"type,omitempty"`

	// image of the component's first container, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// readiness of the component's workload, as the agent saw it. Agents
	// that send none (Deis agents) leave its state Unknown, never NotReady.
	// +optional
	Readiness *WorkloadReadiness `json:"readiness,omitempty"`
}

// WorkloadReadiness is how many of a workload's replicas (a Deployment's or
// StatefulSet's, a DaemonSet's scheduled pods) are ready.
type WorkloadReadiness struct {
	// ready replicas.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Ready int32 `json:"ready"`
	// desired replicas.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Desired int32 `json:"desired"`
	// since is when the workload became ready or not ready, by the agent's
	// clock (a Deployment's Available condition, or when the agent first
	// saw it so).
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// IsReady tells whether the workload is ready: every desired replica is (a
// workload scaled to zero is ready; during a surge ready may exceed desired).
func (r *WorkloadReadiness) IsReady() bool { return r.Ready >= r.Desired }

// ClusterReportSpec is what a cluster reported at its last check-in.
type ClusterReportSpec struct {
	// clusterID identifies the cluster: a UUID (as Deis agents send) or a
	// DNS-1123 label. The object's name is the clusterID in lower case.
	// Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$')",message="clusterID must be a UUID or a DNS-1123 label"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterID is immutable"
	ClusterID string `json:"clusterID"`

	// components the cluster runs, at most 256, each name once.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Components []ReportedComponent `json:"components,omitempty"`

	// properties describe the cluster (Kubernetes version, provider, node
	// count, ...): at most 64 keys of up to 63 characters, values of up to
	// 1024 characters.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) >= 1 && size(k) <= 63)",message="property keys must be 1 to 63 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 1024)",message="property values must be at most 1024 characters"
	Properties map[string]string `json:"properties,omitempty"`
}

// AnnotationCheckInsRecorded named the writer (the bridge, or an agent in
// direct mode) that records a report's check-ins. Reports created before
// issue 32 carry it; nothing reads it, and new reports do without it: it was
// informational, and 46 bytes of every report that every list of the fleet
// sends (a report with credential annotations is the bridge's).
const AnnotationCheckInsRecorded = "trainyard.dev/check-ins-recorded-by"

// Field selectors (the CRD's selectableFields) for the questions a client
// asks of the fleet, so that it lists just the reports a question is about
// (kubectl get creport --field-selector status.summary.updateAvailable!=0)
// instead of reading the fleet. They are the status summary's counts: the
// report controller's one status write keeps them, so a new release, a
// retraction or an advisory that changes many reports costs one write per
// report, not two (labels, being metadata, cost a write apart: issue 32).
//
// A report the controller has not reconciled yet has no summary, and the
// API server matches its fields as "": FieldUpdateAvailable!=0 selects it
// too, so a client that must not miss an outdated report reads it and
// finds in its status what it is. Exposed is omitted while 0, so
// FieldExposed!=0 also needs FieldExposed!= ("exposed" selects both).
// FieldTotal= selects the reports not reconciled yet (kubectl users; the
// plugin needs none of them on their own).
const (
	FieldUpdateAvailable = "status.summary.updateAvailable"
	FieldRetracted       = "status.summary.retracted"
	FieldUnknown         = "status.summary.unknown"
	FieldExposed         = "status.summary.exposed"
	FieldTotal           = "status.summary.total"
)

// LabelStale is kept by the report controller on every ClusterReport while
// the cluster has not checked in within the stale threshold (absent
// otherwise): kubectl get creport -l trainyard.dev/stale. Staleness moves
// one cluster at a time, with the clock, so its label's write apart is
// rare; the status has no scalar field for it to select on.
const LabelStale = "trainyard.dev/stale"

// StatusLabels are the labels the report controller owns.
var StatusLabels = []string{LabelStale}

// RetiredStatusLabels are status labels an earlier manager kept (outdated,
// retracted, unknown, exposed), which a new release or advisory flipped on
// every report it touched, in a write of its own. The report controller
// removes them, once per report, with its first label patch.
var RetiredStatusLabels = []string{"trainyard.dev/outdated", "trainyard.dev/retracted", "trainyard.dev/unknown", "trainyard.dev/exposed"}

// ComponentState says whether a cluster's component is current.
// +kubebuilder:validation:Enum=UpToDate;UpdateAvailable;Retracted;Unknown
type ComponentState string

const (
	// StateUpToDate: the installed version is the train's latest.
	StateUpToDate ComponentState = "UpToDate"
	// StateUpdateAvailable: the train has a newer latest.
	StateUpdateAvailable ComponentState = "UpdateAvailable"
	// StateRetracted: the installed version has been retracted.
	StateRetracted ComponentState = "Retracted"
	// StateUnknown: no such train, or the train does not know the version.
	StateUnknown ComponentState = "Unknown"
)

// StateOf is a component's state on a train that exists: latest is the
// train's latest version ("" when it has none), known whether the train
// has a release of the installed version, retracted whether that release
// is retracted.
func StateOf(installed, latest string, known, retracted bool) ComponentState {
	switch {
	case !known:
		return StateUnknown // the train does not know this version
	case retracted:
		return StateRetracted
	case latest != "" && CanonicalVersion(latest) == CanonicalVersion(installed):
		return StateUpToDate
	case latest != "":
		return StateUpdateAvailable
	}
	return StateUnknown
}

// ReadyState says whether a component's workload is ready.
// +kubebuilder:validation:Enum=Ready;NotReady;Unknown
type ReadyState string

const (
	// Ready: every desired replica is ready.
	Ready ReadyState = "Ready"
	// NotReady: some desired replica is not.
	NotReady ReadyState = "NotReady"
	// ReadyUnknown: the agent reports no readiness (Deis agents).
	ReadyUnknown ReadyState = "Unknown"
)

// ComponentStatus is the computed state of one reported component: what
// the status adds to the spec's component of that name (its train is the
// spec's, see ClusterReport.TrainOf).
type ComponentStatus struct {
	// name of the component.
	Name string `json:"name"`
	// installed is the version this state was computed for: the version
	// the cluster runs, once the status has caught up with the spec.
	Installed string `json:"installed"`
	// latest is the train's latest version, if the train has one. It is
	// stored only where it says more than the rest of the entry: absent, it
	// is installed while the state is UpToDate, and recommended while the
	// state is UpdateAvailable (read it with GetLatest).
	// +optional
	Latest string `json:"latest,omitempty"`
	// state: UpToDate, UpdateAvailable, Retracted or Unknown.
	State ComponentState `json:"state"`
	// recommended is the version to upgrade to: the highest this cluster can
	// reach through releases that are not retracted and whose risks do not
	// apply to it.
	// +optional
	Recommended string `json:"recommended,omitempty"`
	// since is when the installed version was first reported: the start of
	// its soak on this cluster. Absent, it is the report's firstSeen: the
	// cluster has run this version since its first check-in (read it with
	// SinceOr).
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// ready: Ready or NotReady; absent when the agent reports no readiness
	// (Deis agents), which reads as Unknown.
	// +optional
	Ready ReadyState `json:"ready,omitempty"`
	// readySince is when the workload took its ready state: the agent's
	// time when it sends one (never later than the check-in), else when
	// trainyard saw the change.
	// +optional
	ReadySince *metav1.Time `json:"readySince,omitempty"`
	// ring is the cluster's rollout ring on this component's train.
	// +optional
	Ring string `json:"ring,omitempty"`
	// The rest is what a component rarely has (a path to follow, risks,
	// history, a ring's hold, advisories): it sits behind one pointer, so a
	// report's component costs 136 bytes in a controller's cache, not 232
	// (issue 32). It is inline: the JSON is the same. Read it with the
	// nil-safe getters (GetPath...); write it through Details().
	*ComponentStatusDetails `json:",inline"`
}

// ComponentStatusDetails are the fields of a ComponentStatus that most
// components do not have.
type ComponentStatusDetails struct {
	// path is the hops from the installed version to recommended (the
	// fewest, ties to the highest versions), the last being recommended.
	// Absent while recommended is set, it is the one hop to recommended
	// (read it with GetPath).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Path []string `json:"path,omitempty"`
	// conditional are higher versions held back by risks that apply to this
	// cluster, or that cannot be evaluated on it.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Conditional []ConditionalUpdate `json:"conditional,omitempty"`
	// history is the component's last version changes, oldest first (at
	// most MaxVersionChanges).
	// +optional
	// +kubebuilder:validation:MaxItems=20
	History []VersionChange `json:"history,omitempty"`
	// heldBack is a newer release the cluster could go to but for its ring.
	// +optional
	HeldBack *HeldBack `json:"heldBack,omitempty"`
	// advisories that apply to the installed version: it is affected, and
	// no risk acceptance in force names the advisory for this cluster.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=16
	Advisories []ComponentAdvisory `json:"advisories,omitempty"`
}

// GetPath is the path, nil when there are no details.
func (d *ComponentStatusDetails) GetPath() []string {
	if d == nil {
		return nil
	}
	return d.Path
}

// GetConditional is the conditional updates, nil when there are no details.
func (d *ComponentStatusDetails) GetConditional() []ConditionalUpdate {
	if d == nil {
		return nil
	}
	return d.Conditional
}

// GetHistory is the version changes, nil when there are no details.
func (d *ComponentStatusDetails) GetHistory() []VersionChange {
	if d == nil {
		return nil
	}
	return d.History
}

// GetHeldBack is the ring's hold, nil when there are no details.
func (d *ComponentStatusDetails) GetHeldBack() *HeldBack {
	if d == nil {
		return nil
	}
	return d.HeldBack
}

// GetAdvisories is the advisories, nil when there are no details.
func (d *ComponentStatusDetails) GetAdvisories() []ComponentAdvisory {
	if d == nil {
		return nil
	}
	return d.Advisories
}

// Details returns the component's details for writing, creating them when
// it has none. Compact drops them again when they end up empty.
func (c *ComponentStatus) Details() *ComponentStatusDetails {
	if c.ComponentStatusDetails == nil {
		c.ComponentStatusDetails = &ComponentStatusDetails{}
	}
	return c.ComponentStatusDetails
}

// GetLatest is the train's latest version as the controller computed it,
// stored or not (see latest).
func (c *ComponentStatus) GetLatest() string {
	switch {
	case c.Latest != "":
		return c.Latest
	case c.State == StateUpToDate:
		return c.Installed
	case c.State == StateUpdateAvailable:
		return c.Recommended // StateOf: UpdateAvailable has a latest
	}
	return ""
}

// GetPath is the hops to recommended, stored or not (see path); nil when
// there is no recommendation. It shadows ComponentStatusDetails.GetPath.
func (c *ComponentStatus) GetPath() []string {
	if p := c.ComponentStatusDetails.GetPath(); len(p) > 0 {
		return p
	}
	if c.Recommended != "" {
		return []string{c.Recommended} // a recommendation always has a path
	}
	return nil
}

// SinceOr is since, or firstSeen (the report's) when it is not stored.
func (c *ComponentStatus) SinceOr(firstSeen *metav1.Time) *metav1.Time {
	if c.Since != nil {
		return c.Since
	}
	return firstSeen
}

// OmitDerived drops what the getters derive from the rest of the entry and
// the report's firstSeen (GetLatest, GetPath, SinceOr), then empty details:
// the form the controller stores. A report's bytes are what every list of
// the fleet sends; these were 120 of a new 3-component report's (issue 32).
func (c *ComponentStatus) OmitDerived(firstSeen *metav1.Time) {
	if (c.State == StateUpToDate && c.Latest == c.Installed) || (c.State == StateUpdateAvailable && c.Latest == c.Recommended) {
		c.Latest = ""
	}
	if d := c.ComponentStatusDetails; d != nil && len(d.Path) == 1 && d.Path[0] == c.Recommended {
		d.Path = nil
	}
	if c.Since != nil && firstSeen != nil && c.Since.Equal(firstSeen) {
		c.Since = nil
	}
	c.Compact()
}

// Compact drops empty details, so that a status computed anew equals
// (equality.Semantic) the same status read back from JSON, which has none.
func (c *ComponentStatus) Compact() {
	d := c.ComponentStatusDetails
	if d != nil && len(d.Path) == 0 && len(d.Conditional) == 0 && len(d.History) == 0 && d.HeldBack == nil && len(d.Advisories) == 0 {
		c.ComponentStatusDetails = nil
	}
}

// MaxComponentAdvisories is how many advisories a report's component lists.
const MaxComponentAdvisories = 16

// ComponentAdvisory is an advisory that applies to what a component runs.
type ComponentAdvisory struct {
	// id of the advisory (its spec.id).
	ID string `json:"id"`
	// since is when trainyard first found the installed version exposed to it.
	Since metav1.Time `json:"since"`
	// expedite: the advisory lets its fix skip the component's rollout ring.
	// +optional
	Expedite bool `json:"expedite,omitempty"`
}

// MaxVersionChanges is how many version changes a report keeps per
// component.
const MaxVersionChanges = 20

// VersionChange is one change of the version a cluster runs of a component.
type VersionChange struct {
	// from is the version it ran before.
	From string `json:"from"`
	// to is the version it runs since.
	To string `json:"to"`
	// at is when trainyard saw the change (the reconcile of the check-in
	// that reported it).
	At metav1.Time `json:"at"`
}

// ConditionalUpdate is a version a cluster could go to, but for its risks.
type ConditionalUpdate struct {
	// version held back.
	Version string `json:"version"`
	// risks that hold it back, and why.
	// +kubebuilder:validation:MaxItems=16
	Risks []AppliedRisk `json:"risks"`
}

// AppliedRisk is a release's risk as it stands for one cluster.
type AppliedRisk struct {
	// name of the risk.
	Name string `json:"name"`
	// message of the risk.
	Message string `json:"message"`
	// url of the details.
	// +optional
	URL string `json:"url,omitempty"`
	// reason: the rule applies to this cluster, or cannot be evaluated on it.
	Reason string `json:"reason"`
}

// ComponentSummary counts the reported components by state.
type ComponentSummary struct {
	// total number of reported components.
	Total int32 `json:"total"`
	// upToDate components.
	UpToDate int32 `json:"upToDate"`
	// updateAvailable components.
	UpdateAvailable int32 `json:"updateAvailable"`
	// retracted components.
	Retracted int32 `json:"retracted"`
	// unknown components.
	Unknown int32 `json:"unknown"`
	// exposed components: an advisory applies to what they run.
	// +optional
	Exposed int32 `json:"exposed,omitempty"`
}

// Count adds one component in state to the summary (Unknown for any state
// it does not know).
func (s *ComponentSummary) Count(state ComponentState) {
	s.Total++
	switch state {
	case StateUpToDate:
		s.UpToDate++
	case StateUpdateAvailable:
		s.UpdateAvailable++
	case StateRetracted:
		s.Retracted++
	default:
		s.Unknown++
	}
}

// ClusterReportStatus is the cluster's check-in record and computed state.
type ClusterReportStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// firstSeen is the cluster's first check-in.
	// +optional
	FirstSeen *metav1.Time `json:"firstSeen,omitempty"`

	// lastSeen is the cluster's latest check-in.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`

	// checkIns counts the cluster's check-ins.
	// +optional
	CheckIns int64 `json:"checkIns,omitempty"`

	// components is the state of every reported component.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Components []ComponentStatus `json:"components,omitempty"`

	// summary counts the components by state.
	// +optional
	Summary *ComponentSummary `json:"summary,omitempty"`

	// conditions: Ready, Reconciling, Stalled, UpToDate, Stale and
	// RunningRetracted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterReport is one cluster's check-in and its computed update status.
// Its name is the cluster ID in lower case.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=creport,categories=trainyard
// +kubebuilder:selectablefield:JSONPath=`.status.summary.updateAvailable`
// +kubebuilder:selectablefield:JSONPath=`.status.summary.retracted`
// +kubebuilder:selectablefield:JSONPath=`.status.summary.unknown`
// +kubebuilder:selectablefield:JSONPath=`.status.summary.exposed`
// +kubebuilder:selectablefield:JSONPath=`.status.summary.total`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.clusterID.lowerAscii()",message="metadata.name must be spec.clusterID in lower case"
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterID`,priority=1
// +kubebuilder:printcolumn:name="Components",type=integer,JSONPath=`.status.summary.total`
// +kubebuilder:printcolumn:name="Up-To-Date",type=integer,JSONPath=`.status.summary.upToDate`
// +kubebuilder:printcolumn:name="Updates",type=integer,JSONPath=`.status.summary.updateAvailable`
// +kubebuilder:printcolumn:name="Retracted",type=integer,JSONPath=`.status.summary.retracted`,priority=1
// +kubebuilder:printcolumn:name="Exposed",type=integer,JSONPath=`.status.summary.exposed`,priority=1
// +kubebuilder:printcolumn:name="Stale",type=string,JSONPath=`.status.conditions[?(@.type=="Stale")].status`
// +kubebuilder:printcolumn:name="Last-Seen",type=date,JSONPath=`.status.lastSeen`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the cluster reported.
	// +required
	Spec ClusterReportSpec `json:"spec"`

	// status is filled in by check-ins and the controllers.
	// +optional
	Status ClusterReportStatus `json:"status,omitempty"`
}

// TrainOf is the train the report's component follows, as its spec says
// (the default train when the spec names none, or no longer has the
// component).
func (r *ClusterReport) TrainOf(component string) string {
	for i := range r.Spec.Components {
		if c := &r.Spec.Components[i]; c.Name == component && c.Train != "" {
			return c.Train
		}
	}
	return DefaultTrain
}

// StatusOf is the status of the report's component of that name, nil when
// the status has none (read only: it points into the report).
func (r *ClusterReport) StatusOf(component string) *ComponentStatus {
	for i := range r.Status.Components {
		if r.Status.Components[i].Name == component {
			return &r.Status.Components[i]
		}
	}
	return nil
}

// StatusCurrent tells whether the status describes the spec as it stands
// (the controller has computed it for the latest generation). Only then do
// a status component and the spec's train of that name go together: right
// after a component moves to another train, the status still describes the
// old one.
func (r *ClusterReport) StatusCurrent() bool { return r.Status.ObservedGeneration == r.Generation }

// ReadyOf is a component status's readiness, Unknown when it has none.
func (c *ComponentStatus) ReadyOf() ReadyState {
	if c.Ready == "" {
		return ReadyUnknown
	}
	return c.Ready
}

// ClusterReportList is a list of ClusterReports.
// +kubebuilder:object:root=true
type ClusterReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterReport `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterReport{}, &ClusterReportList{})
}
