package validation

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	apivalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// NotificationTarget validates a target: its Secret's name, and durations
// within their bounds (the schema cannot compare durations).
func NotificationTarget(t *trainyardv1.NotificationTarget) field.ErrorList {
	p := specPath
	var errs field.ErrorList
	errs = append(errs, secretName(p.Child("secretRef", "name"), t.Spec.SecretRef.Name)...)
	errs = append(errs, durationWithin(p.Child("timeout"), t.Spec.Timeout, time.Second, time.Minute)...)
	errs = append(errs, durationWithin(p.Child("retryFor"), t.Spec.RetryFor, time.Minute, 168*time.Hour)...)
	if q := t.Spec.QueueLimit; q < 0 || q > trainyardv1.MaxQueueLimit {
		errs = append(errs, field.Invalid(p.Child("queueLimit"), q, fmt.Sprintf("must be 1 to %d (0: the default, %d)", trainyardv1.MaxQueueLimit, trainyardv1.DefaultQueueLimit)))
	}
	return errs
}

// NotificationRule validates a rule: names that can match, selectors that
// parse, a digest window within bounds.
func NotificationRule(r *trainyardv1.NotificationRule) field.ErrorList {
	p := specPath
	var errs field.ErrorList
	if n := r.Spec.TargetRef.Name; n == "" {
		errs = append(errs, field.Required(p.Child("targetRef", "name"), "the NotificationTarget to send to"))
	} else {
		for _, msg := range apivalidation.IsDNS1123Subdomain(n) {
			errs = append(errs, field.Invalid(p.Child("targetRef", "name"), n, msg))
		}
	}
	for _, list := range []struct {
		name  string
		items []string
		check func(*field.Path, string) field.ErrorList
	}{{"components", r.Spec.Components, Label}, {"trains", r.Spec.Trains, Label}, {"clusters", r.Spec.Clusters, ClusterID}} {
		lp := p.Child(list.name)
		if len(list.items) > trainyardv1.MaxRuleSelectors {
			errs = append(errs, field.TooMany(lp, len(list.items), trainyardv1.MaxRuleSelectors))
			continue
		}
		for i, it := range list.items {
			errs = append(errs, list.check(lp.Index(i), it)...)
		}
	}
	if s := r.Spec.MinSeverity; s != "" && s.Rank() == 0 {
		errs = append(errs, field.NotSupported(p.Child("minSeverity"), s, []string{"info", "warning", "critical"}))
	}
	for i, t := range r.Spec.EventTypes {
		known := false
		for _, k := range trainyardv1.EventTypes {
			known = known || k == t
		}
		if !known {
			errs = append(errs, field.NotSupported(p.Child("eventTypes").Index(i), t, eventTypeNames()))
		}
	}
	opts := metav1validation.LabelSelectorValidationOptions{}
	if s := r.Spec.ClusterSelector; s != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s, opts, p.Child("clusterSelector"))...)
	}
	if s := r.Spec.ReleaseSelector; s != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s, opts, p.Child("releaseSelector"))...)
	}
	errs = append(errs, durationWithin(p.Child("digestWindow"), r.Spec.DigestWindow, time.Second, time.Hour)...)
	return errs
}

func eventTypeNames() []string {
	out := make([]string, len(trainyardv1.EventTypes))
	for i, t := range trainyardv1.EventTypes {
		out[i] = string(t)
	}
	return out
}

func secretName(p *field.Path, n string) field.ErrorList {
	if n == "" {
		return field.ErrorList{field.Required(p, "the Secret holding the receiver's url (and signingKey)")}
	}
	var errs field.ErrorList
	for _, msg := range apivalidation.IsDNS1123Subdomain(n) {
		errs = append(errs, field.Invalid(p, n, msg))
	}
	return errs
}

func durationWithin(p *field.Path, d *metav1.Duration, lo, hi time.Duration) field.ErrorList {
	if d == nil {
		return nil
	}
	if d.Duration < lo || d.Duration > hi {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), fmt.Sprintf("must be from %s to %s", lo, hi))}
	}
	return nil
}
