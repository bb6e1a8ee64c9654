package validation

import (
	"strings"
	"testing"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// What a cluster or a publisher writes in a free-text field reaches
// administrators' terminals: control characters are refused, with the
// field, the character and its place named.
func TestTextFieldsRefuseControlCharacters(t *testing.T) {
	attack := "aws\x1b[1A\x1b[2K\x1b]0;owned\a\x1b]52;c;Y3VybA==\a"
	c1 := "gce\u009b31m" // CSI as one C1 character
	report := func(mutate func(*trainyardv1.ClusterReport)) *trainyardv1.ClusterReport {
		r := &trainyardv1.ClusterReport{Spec: trainyardv1.ClusterReportSpec{ClusterID: "c-1",
			Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "1.0.0"}}}}
		r.Name = "c-1"
		mutate(r)
		return r
	}
	release := func(mutate func(*trainyardv1.ComponentRelease)) *trainyardv1.ComponentRelease {
		r := &trainyardv1.ComponentRelease{Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0"}}
		r.Name = trainyardv1.ReleaseName("router", "stable", "1.0.0")
		mutate(r)
		return r
	}
	for name, c := range map[string]struct {
		errs  func() string
		field string
	}{
		"property": {func() string {
			return ClusterReport(report(func(r *trainyardv1.ClusterReport) { r.Spec.Properties = map[string]string{"provider": attack} }), nil).ToAggregate().Error()
		}, "spec.properties[provider]"},
		"component type (C1)": {func() string {
			return ClusterReport(report(func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Type = c1 }), nil).ToAggregate().Error()
		}, "spec.components[0].type"},
		"component image": {func() string {
			return ClusterReport(report(func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Image = "nginx\n:latest" }), nil).ToAggregate().Error()
		}, "spec.components[0].image"},
		"release image": {func() string {
			return ComponentRelease(release(func(r *trainyardv1.ComponentRelease) { r.Spec.Image = attack }), nil).ToAggregate().Error()
		}, "spec.image"},
		"retraction reason": {func() string {
			return ComponentRelease(release(func(r *trainyardv1.ComponentRelease) {
				r.Spec.Retracted = &trainyardv1.Retraction{Reason: "bad\rbuild"}
			}), nil).ToAggregate().Error()
		}, "spec.retracted.reason"},
		"risk message": {func() string {
			return ComponentRelease(release(func(r *trainyardv1.ComponentRelease) {
				r.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "r", Message: "breaks \u202eetc", Rule: "true"}}
			}), nil).ToAggregate().Error()
		}, "spec.risks[0].message"},
		"description (multi-line, but no ESC)": {func() string {
			return ComponentRelease(release(func(r *trainyardv1.ComponentRelease) { r.Spec.Description = "line one\nline two\x1b[2J" }), nil).ToAggregate().Error()
		}, "spec.description"},
	} {
		got := c.errs()
		if !strings.Contains(got, c.field+": Invalid value") || !strings.Contains(got, "must not contain control characters") {
			t.Errorf("%s: %q, want an Invalid value at %s naming control characters", name, got, c.field)
		}
		if strings.ContainsAny(got, "\x1b\a\u009b\u202e") {
			t.Errorf("%s: the message repeats the control characters: %q", name, got)
		}
	}
	// Multi-line text keeps its lines and tabs; other text its Unicode.
	ok := release(func(r *trainyardv1.ComponentRelease) {
		r.Spec.Description = "Fixes:\n\t- the router's TLS\n\t- Zürich's 日本 nodes"
		r.Spec.Data = map[string]string{"notes": "a\nb"}
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "CVE-2026-1234 — use 1.0.1"}
	})
	if errs := ComponentRelease(ok, nil); len(errs) > 0 {
		t.Errorf("printable text refused: %v", errs)
	}
}
