package validation_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

func TestNotificationRule(t *testing.T) {
	ok := trainyardv1.NotificationRuleSpec{TargetRef: trainyardv1.LocalObjectReference{Name: "slack"}, Components: []string{"router"},
		Clusters:     []string{"0b6a2c4e-5f0a-4b7e-9f0e-2d1c3b4a5e6f", "edge-1"},
		DigestWindow: &metav1.Duration{Duration: time.Minute}}
	if errs := validation.NotificationRule(&trainyardv1.NotificationRule{Spec: ok}); len(errs) > 0 {
		t.Fatalf("a good rule is refused: %v", errs)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*trainyardv1.NotificationRuleSpec)
		want   string
	}{
		{"no target", func(s *trainyardv1.NotificationRuleSpec) { s.TargetRef.Name = "" }, "spec.targetRef.name: Required value"},
		{"bad component", func(s *trainyardv1.NotificationRuleSpec) { s.Components = []string{"Router"} }, "spec.components[0]: Invalid value: \"Router\""},
		{"bad cluster", func(s *trainyardv1.NotificationRuleSpec) { s.Clusters = []string{"a b"} }, "spec.clusters[0]: Invalid value: \"a b\": must be a UUID or a DNS-1123 label"},
		{"bad severity", func(s *trainyardv1.NotificationRuleSpec) { s.MinSeverity = "loud" }, "spec.minSeverity: Unsupported value: \"loud\""},
		{"bad type", func(s *trainyardv1.NotificationRuleSpec) {
			s.EventTypes = []trainyardv1.EventType{"dev.trainyard.other"}
		}, "spec.eventTypes[0]: Unsupported value"},
		{"bad selector", func(s *trainyardv1.NotificationRuleSpec) {
			s.ReleaseSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"a/b/c": "x"}}
		}, "spec.releaseSelector.matchLabels"},
		{"window too short", func(s *trainyardv1.NotificationRuleSpec) { s.DigestWindow.Duration = time.Millisecond }, "spec.digestWindow: Invalid value: \"1ms\": must be from 1s to 1h0m0s"},
	} {
		s := *ok.DeepCopy()
		tc.mutate(&s)
		errs := validation.NotificationRule(&trainyardv1.NotificationRule{Spec: s})
		if !strings.Contains(errs.ToAggregate().Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, errs, tc.want)
		}
	}
}

func TestNotificationTarget(t *testing.T) {
	ok := trainyardv1.NotificationTargetSpec{Type: trainyardv1.TargetSlack, SecretRef: trainyardv1.LocalObjectReference{Name: "slack-url"}}
	if errs := validation.NotificationTarget(&trainyardv1.NotificationTarget{Spec: ok}); len(errs) > 0 {
		t.Fatalf("a good target is refused: %v", errs)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*trainyardv1.NotificationTargetSpec)
		want   string
	}{
		{"no secret", func(s *trainyardv1.NotificationTargetSpec) { s.SecretRef.Name = "" }, "spec.secretRef.name: Required value"},
		{"timeout", func(s *trainyardv1.NotificationTargetSpec) { s.Timeout = &metav1.Duration{Duration: 2 * time.Minute} }, "spec.timeout: Invalid value: \"2m0s\""},
		{"retryFor", func(s *trainyardv1.NotificationTargetSpec) { s.RetryFor = &metav1.Duration{Duration: time.Second} }, "spec.retryFor: Invalid value: \"1s\": must be from 1m0s to 168h0m0s"},
		{"queue", func(s *trainyardv1.NotificationTargetSpec) { s.QueueLimit = 1000 }, "spec.queueLimit: Invalid value: 1000"},
	} {
		s := ok
		tc.mutate(&s)
		errs := validation.NotificationTarget(&trainyardv1.NotificationTarget{Spec: s})
		if !strings.Contains(errs.ToAggregate().Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, errs, tc.want)
		}
	}
}

func TestPromotionPolicy(t *testing.T) {
	train := func(p *trainyardv1.PromotionPolicy) *trainyardv1.ReleaseTrain {
		return &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "api.stable"},
			Spec: trainyardv1.ReleaseTrainSpec{Component: "api", Train: "stable", Promotion: p}}
	}
	if errs := validation.ReleaseTrain(train(&trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: time.Hour},
		Window: &trainyardv1.PromotionWindow{Hours: "09:00-17:00", TimeZone: "Europe/Berlin"}}), nil); len(errs) > 0 {
		t.Fatalf("a good policy is refused: %v", errs)
	}
	for _, tc := range []struct {
		p    *trainyardv1.PromotionPolicy
		want string
	}{
		{&trainyardv1.PromotionPolicy{From: "stable"}, "spec.promotion.from: Invalid value: \"stable\": a train cannot promote from itself"},
		{&trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: -time.Second}}, "spec.promotion.soak: Invalid value: \"-1s\""},
		{&trainyardv1.PromotionPolicy{From: "beta", Window: &trainyardv1.PromotionWindow{TimeZone: "Mars/Olympus"}}, "spec.promotion.window: Invalid value"},
	} {
		if errs := validation.ReleaseTrain(train(tc.p), nil); !strings.Contains(errs.ToAggregate().Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.p, errs, tc.want)
		}
	}
}
