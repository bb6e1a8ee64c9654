package osv

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apivalidation "k8s.io/apimachinery/pkg/util/validation"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// ToAdvisory turns an OSV record into an Advisory of component (trainyard's
// name for the record's packages), limited to trains when any are given.
// What trainyard cannot use is left out, each with a warning: ranges over
// commits (GIT), ranges or listed versions that are not semantic versions,
// and CVSS v4 vectors (their score is not computed). A record left with
// nothing affected is an error.
func ToAdvisory(d *Document, component string, trains []string) (*trainyardv1.Advisory, []string, error) {
	var warnings []string
	a := &trainyardv1.Advisory{
		TypeMeta:   metav1.TypeMeta{APIVersion: trainyardv1.GroupVersion.String(), Kind: "Advisory"},
		ObjectMeta: metav1.ObjectMeta{Name: Name(d.ID)},
		Spec:       trainyardv1.AdvisorySpec{ID: d.ID, Aliases: d.Aliases, Summary: d.Summary, Details: d.Details},
	}
	if d.Withdrawn != "" {
		t, err := time.Parse(time.RFC3339, d.Withdrawn)
		if err != nil {
			return nil, nil, fmt.Errorf("withdrawn: %q is not an RFC 3339 time", d.Withdrawn)
		}
		a.Spec.Withdrawn = &metav1.Time{Time: t}
	}
	for _, s := range d.Severity {
		switch s.Type {
		case string(trainyardv1.SeverityCVSSv3):
			if _, err := CVSS3Score(s.Score); err != nil {
				warnings = append(warnings, fmt.Sprintf("severity %s left out: %v", s.Type, err))
				continue
			}
			// The score is left out: the webhook computes it from the vector.
			a.Spec.Severity = append(a.Spec.Severity, trainyardv1.AdvisorySeverity{Type: trainyardv1.SeverityCVSSv3, Vector: s.Score})
		default:
			warnings = append(warnings, fmt.Sprintf("severity %s left out: its score is not computed here; add it with its score by hand", s.Type))
		}
	}
	for _, r := range d.References {
		a.Spec.References = append(a.Spec.References, trainyardv1.AdvisoryReference{Type: r.Type, URL: r.URL})
	}
	for i, af := range d.Affected {
		c := trainyardv1.AffectedComponent{Component: component, Trains: trains}
		if af.Package != (Package{}) {
			c.Package = &trainyardv1.AdvisoryPackage{Ecosystem: af.Package.Ecosystem, Name: af.Package.Name, PURL: af.Package.PURL}
		}
		for j, r := range af.Ranges {
			if r.Type != RangeSemver && r.Type != RangeEcosystem {
				warnings = append(warnings, fmt.Sprintf("affected[%d].ranges[%d] left out: a %s range is over commits, not versions", i, j, r.Type))
				continue
			}
			if r.Type == RangeEcosystem {
				warnings = append(warnings, fmt.Sprintf("affected[%d].ranges[%d]: an ECOSYSTEM range, read as SEMVER", i, j))
			}
			var events []trainyardv1.RangeEvent
			ok := true
			for _, e := range r.Events {
				if v := e.version(); !(e.Introduced == "0" || e.Limit == "*") {
					if _, err := ordering.Parse(v); err != nil {
						ok = false
						warnings = append(warnings, fmt.Sprintf("affected[%d].ranges[%d] left out: %q is not a semantic version", i, j, v))
						break
					}
				}
				events = append(events, trainyardv1.RangeEvent{Introduced: e.Introduced, Fixed: e.Fixed, LastAffected: e.LastAffected, Limit: e.Limit})
			}
			if ok {
				c.Ranges = append(c.Ranges, trainyardv1.AffectedRange{Type: RangeSemver, Events: events})
			}
		}
		for _, v := range af.Versions {
			if _, err := ordering.Parse(v); err != nil {
				warnings = append(warnings, fmt.Sprintf("affected[%d].versions: %q left out: not a semantic version", i, v))
				continue
			}
			c.Versions = append(c.Versions, v)
		}
		if len(c.Ranges) == 0 && len(c.Versions) == 0 {
			continue
		}
		a.Spec.Affected = append(a.Spec.Affected, c)
	}
	if len(a.Spec.Affected) == 0 {
		return nil, warnings, fmt.Errorf("%s: no affected versions trainyard can order", d.ID)
	}
	return a, warnings, nil
}

// FromAdvisory is the OSV record of an Advisory: ToAdvisory's inverse for
// every field the Advisory keeps.
func FromAdvisory(a *trainyardv1.Advisory) *Document {
	d := &Document{ID: a.Spec.ID, Aliases: a.Spec.Aliases, Summary: a.Spec.Summary, Details: a.Spec.Details}
	if a.Spec.Withdrawn != nil {
		d.Withdrawn = a.Spec.Withdrawn.UTC().Format(time.RFC3339)
	}
	for _, s := range a.Spec.Severity {
		d.Severity = append(d.Severity, Severity{Type: string(s.Type), Score: s.Vector})
	}
	for _, r := range a.Spec.References {
		d.References = append(d.References, Reference{Type: r.Type, URL: r.URL})
	}
	for i := range a.Spec.Affected {
		d.Affected = append(d.Affected, AffectedOf(&a.Spec.Affected[i]))
	}
	return d
}

// AffectedOf is the OSV form of an Advisory's affected component: what
// evaluates its versions, and what FromAdvisory writes.
func AffectedOf(c *trainyardv1.AffectedComponent) Affected {
	af := Affected{Versions: c.Versions}
	if c.Package != nil {
		af.Package = Package{Ecosystem: c.Package.Ecosystem, Name: c.Package.Name, PURL: c.Package.PURL}
	}
	for _, r := range c.Ranges {
		rr := Range{Type: r.Type}
		for _, e := range r.Events {
			rr.Events = append(rr.Events, Event{Introduced: e.Introduced, Fixed: e.Fixed, LastAffected: e.LastAffected, Limit: e.Limit})
		}
		af.Ranges = append(af.Ranges, rr)
	}
	return af
}

// SeverityOf is an advisory's base score and its rating (Rating): its first
// severity's score, or for CVSS v3 the score its vector gives; ok is false
// (and the rating "Unknown") when it has none.
func SeverityOf(s *trainyardv1.AdvisorySpec) (score float64, rating string, ok bool) {
	for _, sv := range s.Severity {
		if sv.Score != "" {
			if f, err := strconv.ParseFloat(sv.Score, 64); err == nil {
				return f, Rating(f), true
			}
		}
		if sv.Type == trainyardv1.SeverityCVSSv3 {
			if f, err := CVSS3Score(sv.Vector); err == nil {
				return f, Rating(f), true
			}
		}
	}
	return 0, "Unknown", false
}

// FixedVersions are the versions an advisory's ranges name as fixed, each
// once, in the order they appear.
func FixedVersions(s *trainyardv1.AdvisorySpec) []string {
	var out []string
	for _, c := range s.Affected {
		for _, r := range c.Ranges {
			for _, e := range r.Events {
				if e.Fixed != "" && !slices.Contains(out, e.Fixed) {
					out = append(out, e.Fixed)
				}
			}
		}
	}
	return out
}

// Name is an object name for an advisory ID: lower case, and any character
// a DNS-1123 subdomain does not allow replaced by '-'.
func Name(id string) string {
	b := []byte(strings.ToLower(id))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '-'
		}
	}
	n := strings.Trim(string(b), "-.")
	if len(n) > apivalidation.DNS1123SubdomainMaxLength {
		n = strings.Trim(n[:apivalidation.DNS1123SubdomainMaxLength], "-.")
	}
	return n
}
