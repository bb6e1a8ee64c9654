package v1alpha1

// Size limits. The CRD schema enforces them (the markers below repeat these
// numbers, since markers cannot refer to constants); they are exported so the
// webhook, the bridge and the docs use one set of numbers.
const (
	// MaxNameLength is the longest component, train or component-type name
	// (a DNS-1123 label).
	MaxNameLength = 63
	// MaxVersionLength is the longest version string.
	MaxVersionLength = 64
	// MaxDescriptionLength bounds spec.description and spec.fixes of a release.
	MaxDescriptionLength = 8192
	// MaxImageLength bounds container image references.
	MaxImageLength = 512
	// MaxDataEntries bounds spec.data of a release.
	MaxDataEntries = 32
	// MaxDataKeyLength bounds a key of spec.data or spec.properties.
	MaxDataKeyLength = 63
	// MaxDataValueLength bounds a value of spec.data.
	MaxDataValueLength = 2048
	// MaxReasonLength bounds a retraction reason.
	MaxReasonLength = 1024
	// MaxClusterComponents bounds spec.components of a ClusterReport.
	MaxClusterComponents = 256
	// MaxClusterProperties bounds spec.properties of a ClusterReport.
	MaxClusterProperties = 64
	// MaxPropertyValueLength bounds a value of spec.properties.
	MaxPropertyValueLength = 1024
	// MaxClusterIDLength is the longest cluster ID (a DNS-1123 label or a UUID).
	MaxClusterIDLength = 63
	// MaxVersionRangeLength bounds spec.versionRange of a ReleaseTrain.
	MaxVersionRangeLength = 256
	// MaxHistoryLimit is the largest spec.historyLimit of a ReleaseTrain.
	MaxHistoryLimit = 100
	// DefaultHistoryLimit is spec.historyLimit when unset.
	DefaultHistoryLimit = 10
	// MaxAdoptionVersions is how many versions fleet adoption lists by name;
	// clusters on any other version are counted together.
	MaxAdoptionVersions = 10
)

// DefaultTrain is the train of a release or reported component that names none.
const DefaultTrain = "stable"
