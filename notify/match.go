package notify

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Matches tells whether a rule selects an event. A selector that does not
// parse selects nothing (the webhook refuses such rules).
func Matches(spec *trainyardv1.NotificationRuleSpec, e *Event) bool {
	if spec.Suspend {
		return false
	}
	if len(spec.EventTypes) > 0 && !slices.Contains(spec.EventTypes, e.Type) {
		return false
	}
	minSev := spec.MinSeverity
	if minSev == "" {
		minSev = trainyardv1.SeverityInfo
	}
	if e.Severity.Rank() < minSev.Rank() {
		return false
	}
	if len(spec.Components) > 0 || len(spec.Trains) > 0 {
		if !slices.ContainsFunc(e.concerns, func(ct componentTrain) bool {
			return (len(spec.Components) == 0 || slices.Contains(spec.Components, ct.component)) &&
				(len(spec.Trains) == 0 || slices.Contains(spec.Trains, ct.train))
		}) {
			return false
		}
	}
	isCluster := strings.HasPrefix(e.Subject, "clusterreports/")
	if isCluster {
		if len(spec.Clusters) > 0 && !slices.ContainsFunc(spec.Clusters, func(c string) bool {
			return strings.EqualFold(c, e.Cluster)
		}) {
			return false
		}
		if !selects(spec.ClusterSelector, e.labels) {
			return false
		}
	} else if !selects(spec.ReleaseSelector, e.labels) {
		return false
	}
	return true
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}
