// Package ordering decides which release of a train is the latest, under the
// train's ordering policy (Semver or ReleaseTime), pre-release policy and
// version range. It is pure: no API access, no clock.
package ordering

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Parse parses a semantic version; a single leading "v" is allowed. Unlike
// semver.NewVersion it does not coerce "1.2" into "1.2.0": a release is
// either a real semantic version or it is not.
func Parse(version string) (*semver.Version, error) {
	return semver.StrictNewVersion(strings.TrimPrefix(version, "v"))
}

// Parsed is the API form of a parsed version, or nil when it does not parse.
func Parsed(version string) *trainyardv1.ParsedVersion {
	sv, err := Parse(version)
	if err != nil {
		return nil
	}
	return &trainyardv1.ParsedVersion{
		Major: sv.Major(), Minor: sv.Minor(), Patch: sv.Patch(),
		Prerelease: sv.Prerelease(), Metadata: sv.Metadata(),
	}
}

// Policy is a train's choice of what can be latest.
type Policy struct {
	Ordering    trainyardv1.Ordering
	Prereleases trainyardv1.PrereleasePolicy
	// Range, when not nil, must be satisfied by the latest release.
	Range *semver.Constraints
}

// PolicyOf builds the policy of a train spec. An unparsable versionRange is
// an error: the train is stalled until a human fixes it.
func PolicyOf(spec trainyardv1.ReleaseTrainSpec) (Policy, error) {
	p := Policy{Ordering: spec.Ordering, Prereleases: spec.Prereleases}
	if p.Ordering == "" {
		p.Ordering = trainyardv1.OrderingSemver
	}
	if p.Prereleases == "" {
		p.Prereleases = trainyardv1.PrereleasesInclude
	}
	if strings.TrimSpace(spec.VersionRange) != "" {
		c, err := ParseRange(spec.VersionRange)
		if err != nil {
			return p, err
		}
		p.Range = c
	}
	return p, nil
}

// ParseRange parses a versionRange. Pre-releases inside the range satisfy
// it: whether they may be latest is the prereleases policy's business.
func ParseRange(r string) (*semver.Constraints, error) {
	c, err := semver.NewConstraint(r)
	if err != nil {
		return nil, fmt.Errorf("versionRange %q is not a semantic-version constraint: %v", r, err)
	}
	c.IncludePrerelease = true
	return c, nil
}

// Candidate is one release as the ordering sees it.
type Candidate struct {
	Name      string
	Version   string
	Released  int64 // Unix nanoseconds of spec.released; 0 when unset
	Retracted bool
	semver    *semver.Version
}

// NewCandidate parses the candidate's version once.
func NewCandidate(name, version string, released int64, retracted bool) Candidate {
	sv, _ := Parse(version)
	return Candidate{Name: name, Version: version, Released: released, Retracted: retracted, semver: sv}
}

// IsSemver tells whether the candidate's version parsed.
func (c Candidate) IsSemver() bool { return c.semver != nil }

// Eligible tells whether c may be latest under p.
func (p Policy) Eligible(c Candidate) bool {
	if c.Retracted {
		return false
	}
	if c.semver == nil {
		// A non-semver version has no place in a semantic ordering or range;
		// ordered by release time alone (as the old Deis service did) it does.
		return p.Ordering == trainyardv1.OrderingReleaseTime && p.Range == nil
	}
	if p.Prereleases == trainyardv1.PrereleasesExclude && c.semver.Prerelease() != "" {
		return false
	}
	return p.Range == nil || p.Range.Check(c.semver)
}

// Compare orders two eligible candidates under p: positive when a is newer.
func (p Policy) Compare(a, b Candidate) int {
	if p.Ordering == trainyardv1.OrderingReleaseTime {
		if c := cmp.Compare(a.Released, b.Released); c != 0 {
			return c
		}
	}
	if c := compareSemver(a.semver, b.semver); c != 0 {
		return c
	}
	// Equal precedence (1.0.0 and v1.0.0, or build metadata only): the name
	// decides, so that the choice never depends on list order.
	return cmp.Compare(a.Name, b.Name)
}

// compareSemver orders versions; a non-semver one sorts below any semver.
func compareSemver(a, b *semver.Version) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(b)
}

// Latest returns the index of the latest candidate under p, or -1 when none
// is eligible.
func (p Policy) Latest(cs []Candidate) int {
	best := -1
	for i, c := range cs {
		if !p.Eligible(c) {
			continue
		}
		if best < 0 || p.Compare(c, cs[best]) > 0 {
			best = i
		}
	}
	return best
}

// Canonical is the form in which versions are compared for equality (see
// v1alpha1.CanonicalVersion): "3.0.0" and "v3.0.0" are one version.
func Canonical(version string) string { return trainyardv1.CanonicalVersion(version) }
