package validation_test

import (
	"strings"
	"testing"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// issue30 is the issue's fixture: introduced 1.0.0, fixed 1.2.1.
func issue30() *trainyardv1.Advisory {
	return &trainyardv1.Advisory{Spec: trainyardv1.AdvisorySpec{
		ID:       "GHSA-xxxx-yyyy-zzzz",
		Severity: []trainyardv1.AdvisorySeverity{{Type: trainyardv1.SeverityCVSSv3, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Score: "9.8"}},
		Affected: []trainyardv1.AffectedComponent{{Component: "router", Trains: []string{"stable"},
			Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER", Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}}}}},
	}}
}

func TestAdvisoryNamesEachMistake(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*trainyardv1.Advisory)
		want   string // "" for valid
	}{
		{"valid", func(*trainyardv1.Advisory) {}, ""},
		{"score computed when left out", func(a *trainyardv1.Advisory) { a.Spec.Severity[0].Score = "" }, ""},
		{"versions alone", func(a *trainyardv1.Advisory) {
			a.Spec.Affected[0].Ranges, a.Spec.Affected[0].Versions = nil, []string{"v1.0.0", "1.1.0"}
		}, ""},
		{"from the start, with a limit", func(a *trainyardv1.Advisory) {
			a.Spec.Affected[0].Ranges[0].Events = []trainyardv1.RangeEvent{{Introduced: "0"}, {Limit: "*"}}
		}, ""},
		{"no id", func(a *trainyardv1.Advisory) { a.Spec.ID = " " }, "spec.id: Required value"},
		{"wrong score", func(a *trainyardv1.Advisory) { a.Spec.Severity[0].Score = "7.5" },
			`spec.severity[0].score: Invalid value: "7.5": the vector's base score is 9.8`},
		{"bad vector", func(a *trainyardv1.Advisory) { a.Spec.Severity[0].Vector = "CVSS:3.1/AV:N" },
			"spec.severity[0].vector: Invalid value"},
		{"v4 without score", func(a *trainyardv1.Advisory) {
			a.Spec.Severity[0] = trainyardv1.AdvisorySeverity{Type: trainyardv1.SeverityCVSSv4, Vector: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}
		}, "spec.severity[0].score: Required value"},
		{"component not a name", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Component = "Router_1" },
			"spec.affected[0].component: Invalid value"},
		{"train not a name", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Trains = []string{"Stable!"} },
			"spec.affected[0].trains[0]: Invalid value"},
		{"neither ranges nor versions", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges = nil },
			"spec.affected[0]: Required value: give ranges, versions or both"},
		{"a version that is not semver", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges[0].Events[1].Fixed = "1.2" },
			`spec.affected[0].ranges[0].events[1].fixed: Invalid value: "1.2": must be a semantic version`},
		{"two kinds in one event", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges[0].Events[0].Fixed = "1.0.5" },
			"spec.affected[0].ranges[0].events[0]: Invalid value: \"2 fields\": must have exactly one"},
		{"no introduced", func(a *trainyardv1.Advisory) {
			a.Spec.Affected[0].Ranges[0].Events = []trainyardv1.RangeEvent{{Fixed: "1.2.1"}}
		}, "spec.affected[0].ranges[0].events: Required value: an introduced event"},
		{"a GIT range", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges[0].Type = "GIT" },
			`spec.affected[0].ranges[0].type: Unsupported value: "GIT"`},
		{"no affected", func(a *trainyardv1.Advisory) { a.Spec.Affected = nil }, "spec.affected: Required value"},
	} {
		a := issue30()
		tc.change(a)
		errs := validation.Advisory(a)
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("%s: %v, want valid", tc.name, errs)
		case tc.want != "" && len(errs) == 0:
			t.Errorf("%s: valid, want %q", tc.name, tc.want)
		case tc.want != "" && !strings.Contains(errs.ToAggregate().Error(), tc.want):
			t.Errorf("%s: %v, want %q", tc.name, errs, tc.want)
		}
	}
}
