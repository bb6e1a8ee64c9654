package validation

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/osv"
)

// Advisory checks what the CRD schema cannot: that components and trains
// are names, that every version of a range or list is a semantic version
// (a range over versions trainyard cannot order would silently match
// nothing), and that a CVSS v3 score is the one its vector means.
func Advisory(a *trainyardv1.Advisory) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if strings.TrimSpace(a.Spec.ID) == "" {
		errs = append(errs, field.Required(p.Child("id"), "the advisory's identifier, for example \"GHSA-h62f-wm92-2cmw\""))
	}
	for i, s := range a.Spec.Severity {
		errs = append(errs, severity(p.Child("severity").Index(i), s)...)
	}
	if len(a.Spec.Affected) == 0 {
		errs = append(errs, field.Required(p.Child("affected"), "at least one component and its affected versions"))
	}
	for i, c := range a.Spec.Affected {
		ap := p.Child("affected").Index(i)
		errs = append(errs, Label(ap.Child("component"), c.Component)...)
		for j, t := range c.Trains {
			errs = append(errs, Label(ap.Child("trains").Index(j), t)...)
		}
		if len(c.Ranges) == 0 && len(c.Versions) == 0 {
			errs = append(errs, field.Required(ap, "give ranges, versions or both"))
		}
		for j, v := range c.Versions {
			errs = append(errs, semverOf(ap.Child("versions").Index(j), v)...)
		}
		for j, r := range c.Ranges {
			errs = append(errs, affectedRange(ap.Child("ranges").Index(j), r)...)
		}
	}
	return errs
}

func affectedRange(p *field.Path, r trainyardv1.AffectedRange) field.ErrorList {
	var errs field.ErrorList
	if r.Type != osv.RangeSemver {
		errs = append(errs, field.NotSupported(p.Child("type"), r.Type, []string{osv.RangeSemver}))
	}
	if len(r.Events) == 0 {
		errs = append(errs, field.Required(p.Child("events"), "at least an introduced event"))
	}
	introduced := false
	for k, e := range r.Events {
		ep := p.Child("events").Index(k)
		n := 0
		for _, f := range []struct{ name, v string }{{"introduced", e.Introduced}, {"fixed", e.Fixed}, {"lastAffected", e.LastAffected}, {"limit", e.Limit}} {
			if f.v == "" {
				continue
			}
			n++
			switch {
			case f.name == "introduced" && f.v == "0", f.name == "limit" && f.v == "*":
			default:
				errs = append(errs, semverOf(ep.Child(f.name), f.v)...)
			}
		}
		if n != 1 {
			errs = append(errs, field.Invalid(ep, fmt.Sprintf("%d fields", n), "must have exactly one of introduced, fixed, lastAffected and limit"))
		}
		introduced = introduced || e.Introduced != ""
	}
	if len(r.Events) > 0 && !introduced {
		errs = append(errs, field.Required(p.Child("events"), "an introduced event (\"0\": from the first version): without one the range affects nothing"))
	}
	return errs
}

func semverOf(p *field.Path, v string) field.ErrorList {
	if errs := Version(p, v); len(errs) > 0 {
		return errs
	}
	if _, err := ordering.Parse(v); err != nil {
		return field.ErrorList{field.Invalid(p, v, "must be a semantic version such as \"1.2.3\" or \"v1.2.3\"")}
	}
	return nil
}

func severity(p *field.Path, s trainyardv1.AdvisorySeverity) field.ErrorList {
	switch s.Type {
	case trainyardv1.SeverityCVSSv3:
		score, err := osv.CVSS3Score(s.Vector)
		if err != nil {
			return field.ErrorList{field.Invalid(p.Child("vector"), s.Vector, strings.TrimPrefix(err.Error(), strconv.Quote(s.Vector)+": "))}
		}
		if s.Score == "" {
			return nil
		}
		if given, err := strconv.ParseFloat(s.Score, 64); err != nil || given != score {
			return field.ErrorList{field.Invalid(p.Child("score"), s.Score, fmt.Sprintf("the vector's base score is %.1f", score))}
		}
	case trainyardv1.SeverityCVSSv4:
		if !strings.HasPrefix(s.Vector, "CVSS:4.0/") {
			return field.ErrorList{field.Invalid(p.Child("vector"), s.Vector, "must start with CVSS:4.0/")}
		}
		if s.Score == "" {
			return field.ErrorList{field.Required(p.Child("score"), "the base score (it is not computed from a CVSS v4 vector)")}
		}
	default:
		return field.ErrorList{field.NotSupported(p.Child("type"), string(s.Type), []string{string(trainyardv1.SeverityCVSSv3), string(trainyardv1.SeverityCVSSv4)})}
	}
	return nil
}
