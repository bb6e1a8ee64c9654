package validation_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

func TestRolloutPolicyNamesEachMistake(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	bad := int32(101)
	for _, tc := range []struct {
		name string
		p    trainyardv1.RolloutPolicy
		want string // "" for valid
	}{
		{"valid", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
			{Name: "canary", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}}, MaxConcurrent: num(2)},
			{Name: "everyone", After: &trainyardv1.RingGate{Soak: &metav1.Duration{Duration: time.Hour}, MinReportingPercent: 80, Approval: true}, MaxConcurrent: pct("25%")},
		}}, ""},
		{"no rings", trainyardv1.RolloutPolicy{}, "spec.rollout.rings: Required value"},
		{"duplicate", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a"}, {Name: "a"}}}, "spec.rollout.rings[1].name: Duplicate value"},
		{"bad name", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "A_b"}}}, "spec.rollout.rings[0].name: Invalid value"},
		{"bad selector", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a", ClusterSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "ring", Operator: "Near"}}}}}}, "spec.rollout.rings[0].clusterSelector: Invalid value"},
		{"percent", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a", After: &trainyardv1.RingGate{MinReportingPercent: 101}}}},
			"spec.rollout.rings[0].after.minReportingPercent: Invalid value: 101"},
		{"zero concurrent", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a", MaxConcurrent: num(0)}}}, "spec.rollout.rings[0].maxConcurrent: Invalid value: 0"},
		{"bad percentage", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a", MaxConcurrent: pct("0%")}}}, `spec.rollout.rings[0].maxConcurrent: Invalid value: "0%"`},
		{"halt", trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "a"}}, Halt: &trainyardv1.HaltPolicy{MaxNotReadyPercent: &bad}},
			"spec.rollout.halt.maxNotReadyPercent: Invalid value: 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := validation.RolloutPolicy(field.NewPath("spec", "rollout"), &tc.p)
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Fatalf("valid policy refused: %v", errs)
			case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
				t.Fatalf("errors %v, want one with %q", errs, tc.want)
			}
		})
	}
}

func TestReadinessCountsAreBounded(t *testing.T) {
	errs := validation.Readiness(field.NewPath("r"), &trainyardv1.WorkloadReadiness{Ready: -1, Desired: validation.MaxReplicas + 1})
	if len(errs) != 2 || !strings.Contains(errs.ToAggregate().Error(), "r.ready") || !strings.Contains(errs.ToAggregate().Error(), "r.desired") {
		t.Fatalf("got %v", errs)
	}
	if errs := validation.Readiness(field.NewPath("r"), &trainyardv1.WorkloadReadiness{Ready: 3, Desired: 2}); len(errs) != 0 {
		t.Fatalf("a surge (ready above desired) refused: %v", errs)
	}
}

func TestARolloutNeedsSemverOrdering(t *testing.T) {
	train := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "app.stable"},
		Spec: trainyardv1.ReleaseTrainSpec{Component: "app", Train: "stable", Ordering: trainyardv1.OrderingReleaseTime,
			Rollout: &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "all"}}}}}
	errs := validation.ReleaseTrain(train, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "a rollout needs ordering Semver") {
		t.Fatalf("got %v", errs)
	}
	train.Spec.Ordering = ""
	if errs := validation.ReleaseTrain(train, nil); len(errs) != 0 {
		t.Fatalf("Semver (the default) refused: %v", errs)
	}
}
