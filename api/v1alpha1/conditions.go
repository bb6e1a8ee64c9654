package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow kstatus, so Argo CD,
// Flux and kstatus-based tools read the health of every trainyard object.
const (
	// ConditionReady is True when the object's status reflects its spec.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller is working on a change.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a human (bad spec, bad data).
	ConditionStalled = "Stalled"

	// ConditionSemver on a ComponentRelease is False when its version does
	// not parse as a semantic version (it can then never be latest on a
	// Semver train).
	ConditionSemver = "Semver"

	// ConditionRetracted on a ComponentRelease is True when the release is
	// retracted (spec.retracted is set).
	ConditionRetracted = "Retracted"

	// ConditionUpToDate on a ClusterReport is True when every reported
	// component runs its train's latest release.
	ConditionUpToDate = "UpToDate"
	// ConditionStale on a ClusterReport is True when the cluster has not
	// checked in within the stale threshold.
	ConditionStale = "Stale"
	// ConditionRunningRetracted on a ClusterReport is True when a component
	// runs a retracted release.
	ConditionRunningRetracted = "RunningRetracted"
	// ReasonRecovered is the Stale condition's reason once a stale cluster
	// has checked in again (what notifications announce as a recovery).
	ReasonRecovered = "Recovered"
)

const (
	// ConditionExposed is True on an Advisory while a cluster runs an
	// affected version, with no risk acceptance in force for it.
	ConditionExposed = "Exposed"
	// ReasonResolved is the Exposed condition's reason once an advisory
	// that exposed clusters exposes none any more.
	ReasonResolved = "Resolved"
	// ConditionAffected on a ComponentRelease is True when an advisory
	// affects its version (the message names them); it is present only
	// while its component has advisories.
	ConditionAffected = "Affected"
	// ConditionVerified on a ComponentRelease a TrustPolicy covers is True
	// when its signature bundle verifies (the message names the key or the
	// identity); False says why not. Absent when no policy covers it.
	ConditionVerified = "Verified"
)
