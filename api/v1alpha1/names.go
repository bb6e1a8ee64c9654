package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TrainName is the name of the ReleaseTrain of (component, train). Both are
// DNS-1123 labels, so the single dot separates them unambiguously.
func TrainName(component, train string) string {
	if train == "" {
		train = DefaultTrain
	}
	return component + "." + train
}

// SplitTrainName is TrainName's inverse.
func SplitTrainName(name string) (component, train string, ok bool) {
	return strings.Cut(name, ".")
}

// nonAlnum matches the runs of characters other than lowercase letters and digits.
var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// ReleaseName is the canonical object name of the ComponentRelease of
// (component, train, version): <component>.<train>.<version>. A version that
// cannot stand in a name as it is ("1.0.0+build", "1.0.0-RC1") is made
// DNS-safe and followed by a short hash of the exact version, so that two
// versions never share a name. One name per triple lets the API server
// itself refuse a second release of the same version, even under concurrent
// creates.
func ReleaseName(component, train, version string) string {
	base := TrainName(component, train) + "."
	if len(validation.IsDNS1123Subdomain(base+version)) == 0 {
		return base + version
	}
	sum := sha256.Sum256([]byte(version))
	safe := strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(version), "-"), "-")
	if safe == "" {
		safe = "v"
	}
	return base + safe + "-" + hex.EncodeToString(sum[:])[:8]
}

// ClusterReportName is the object name of a cluster's report: its ID in
// lower case (a UUID or a DNS-1123 label).
func ClusterReportName(clusterID string) string {
	return strings.ToLower(clusterID)
}
