package validation

import (
	"fmt"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// MaxReplicas bounds a reported readiness's counts.
const MaxReplicas = 1000000

var percentage = regexp.MustCompile(`^([1-9][0-9]?|100)%$`)

// RolloutPolicy validates spec.rollout of a ReleaseTrain: 1 to MaxRings
// rings, each named once, with selectors that parse, gates in range and a
// maxConcurrent that is a positive number or a percentage.
func RolloutPolicy(p *field.Path, ro *trainyardv1.RolloutPolicy) field.ErrorList {
	var errs field.ErrorList
	rp := p.Child("rings")
	switch n := len(ro.Rings); {
	case n == 0:
		errs = append(errs, field.Required(rp, "name at least one ring"))
	case n > trainyardv1.MaxRings:
		errs = append(errs, field.TooMany(rp, n, trainyardv1.MaxRings))
	}
	seen := map[string]int{}
	for i, r := range ro.Rings {
		ip := rp.Index(i)
		errs = append(errs, Label(ip.Child("name"), r.Name)...)
		if j, dup := seen[r.Name]; dup {
			errs = append(errs, field.Duplicate(ip.Child("name"), fmt.Sprintf("%s (also at index %d): name each ring once", r.Name, j)))
		} else {
			seen[r.Name] = i
		}
		if r.ClusterSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(r.ClusterSelector); err != nil {
				errs = append(errs, field.Invalid(ip.Child("clusterSelector"), r.ClusterSelector, err.Error()))
			}
		}
		if a := r.After; a != nil {
			if a.MinReportingPercent < 0 || a.MinReportingPercent > 100 {
				errs = append(errs, field.Invalid(ip.Child("after", "minReportingPercent"), a.MinReportingPercent, "must be between 0 and 100"))
			}
			if a.Soak != nil && a.Soak.Duration < 0 {
				errs = append(errs, field.Invalid(ip.Child("after", "soak"), a.Soak.Duration.String(), "must not be negative"))
			}
		}
		if m := r.MaxConcurrent; m != nil {
			switch {
			case m.Type == intstr.Int && m.IntVal < 1:
				errs = append(errs, field.Invalid(ip.Child("maxConcurrent"), m.IntVal, "must be at least 1, or a percentage from 1% to 100%"))
			case m.Type == intstr.String && !percentage.MatchString(m.StrVal):
				errs = append(errs, field.Invalid(ip.Child("maxConcurrent"), m.StrVal, "must be at least 1, or a percentage from 1% to 100%"))
			}
		}
	}
	if h := ro.Halt; h != nil {
		if m := h.MaxNotReadyPercent; m != nil && (*m < 0 || *m > 100) {
			errs = append(errs, field.Invalid(p.Child("halt", "maxNotReadyPercent"), *m, "must be between 0 and 100"))
		}
		if d := h.NotReadyFor; d != nil && d.Duration < 0 {
			errs = append(errs, field.Invalid(p.Child("halt", "notReadyFor"), d.Duration.String(), "must not be negative"))
		}
	}
	return errs
}

// Readiness validates a reported component's readiness.
func Readiness(p *field.Path, r *trainyardv1.WorkloadReadiness) field.ErrorList {
	var errs field.ErrorList
	if r.Ready < 0 || r.Ready > MaxReplicas {
		errs = append(errs, field.Invalid(p.Child("ready"), r.Ready, fmt.Sprintf("must be between 0 and %d", MaxReplicas)))
	}
	if r.Desired < 0 || r.Desired > MaxReplicas {
		errs = append(errs, field.Invalid(p.Child("desired"), r.Desired, fmt.Sprintf("must be between 0 and %d", MaxReplicas)))
	}
	return errs
}
