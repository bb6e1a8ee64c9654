package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
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

// CanonicalVersion is the one spelling of a version that names, indexes and
// equality use: a semantic version (a single leading "v" allowed, no
// coercion of "1.2" into "1.2.0") as "v" + MAJOR.MINOR.PATCH[-PRE][+BUILD],
// so that "3.0.0" and "v3.0.0" are one version; anything else as it is.
func CanonicalVersion(version string) string {
	if sv, err := semver.StrictNewVersion(strings.TrimPrefix(version, "v")); err == nil {
		return "v" + sv.String()
	}
	return version
}

// nonAlnum matches the runs of characters other than lowercase letters and digits.
var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// hashedMark separates a hashed name's readable part from its hash. A plain
// name never contains it, so the two forms never meet.
const hashedMark = "--"

// ReleaseName is the object name of the ComponentRelease of (component,
// train, version): <component>.<train>.<canonical version>. One name per
// semantic version lets the API server itself refuse a second release of it,
// whichever spelling each create uses and however they race ("3.0.0" and
// "v3.0.0" are both <component>.<train>.v3.0.0).
//
// A canonical version that cannot stand in a name as it is (upper case, "+",
// "..") or that contains "--" is written as its lower-cased DNS-safe form,
// "--", and 16 hex digits of the SHA-256 of the canonical version. Every
// hashed name contains "--" and no plain one does, so two versions share a
// name only if SHA-256 collides; even then the bridge compares the stored
// version and refuses with 409 rather than answer for another version.
func ReleaseName(component, train, version string) string {
	base := TrainName(component, train) + "."
	canon := CanonicalVersion(version)
	if !strings.Contains(canon, hashedMark) && len(validation.IsDNS1123Subdomain(base+canon)) == 0 {
		return base + canon
	}
	sum := sha256.Sum256([]byte(canon))
	safe := strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(canon), "-"), "-")
	if len(safe) > 48 {
		safe = strings.TrimRight(safe[:48], "-")
	}
	if safe == "" {
		safe = "v"
	}
	return base + safe + hashedMark + hex.EncodeToString(sum[:8])
}

// ClusterReportName is the object name of a cluster's report: its ID in
// lower case (a UUID or a DNS-1123 label).
func ClusterReportName(clusterID string) string {
	return strings.ToLower(clusterID)
}
