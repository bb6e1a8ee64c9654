package upgrade_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/upgrade"
)

// graph is the issue's example: 1.0–1.4 and 2.0–2.3, 2.1 retracted, 2.x
// reachable from 1.4 and up, 2.3 risky below Kubernetes 1.29.
func graph() []upgrade.Release {
	var rels []upgrade.Release
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"} {
		rels = append(rels, upgrade.Release{Version: v})
	}
	for _, v := range []string{"2.0.0", "2.1.0", "2.2.0", "2.3.0"} {
		r := upgrade.Release{Version: v, UpgradeFrom: ">=1.4.0", Retracted: v == "2.1.0"}
		if v == "2.3.0" {
			r.Risks = []trainyardv1.UpgradeRisk{{Name: "old-kubernetes", Message: "needs Kubernetes 1.29", URL: "https://example.com/kb/1",
				Rule: `compareVersions(cluster.properties.kubernetesVersion, "1.29") < 0`}}
		}
		rels = append(rels, r)
	}
	return rels
}

func cluster(k8s string) upgrade.Cluster {
	c := upgrade.Cluster{ID: "c", Properties: map[string]string{}}
	if k8s != "" {
		c.Properties["kubernetesVersion"] = k8s
	}
	return c
}

func rules(t *testing.T) *upgrade.Rules {
	t.Helper()
	r, err := upgrade.NewRules()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTheIssuesGraph(t *testing.T) {
	r := rules(t)
	old := upgrade.Recommend("1.2.0", graph(), cluster("1.28"), r, nil)
	if !reflect.DeepEqual(old.Path, []string{"1.4.0", "2.2.0"}) || old.Recommended != "2.2.0" {
		t.Errorf("Kubernetes 1.28: %+v", old)
	}
	if len(old.Conditional) != 1 || old.Conditional[0].Version != "2.3.0" || old.Conditional[0].Risks[0].Name != "old-kubernetes" ||
		old.Conditional[0].Risks[0].Reason != "applies to this cluster" {
		t.Errorf("Kubernetes 1.28, held back: %+v", old.Conditional)
	}
	if got := upgrade.Recommend("1.2.0", graph(), cluster("v1.30.2"), r, nil); !reflect.DeepEqual(got.Path, []string{"1.4.0", "2.3.0"}) || len(got.Conditional) != 0 {
		t.Errorf("Kubernetes 1.30: %+v", got)
	}
	rels := graph()
	rels[7].Retracted = true // 2.2.0
	if got := upgrade.Recommend("1.2.0", rels, cluster("1.28"), r, nil); !reflect.DeepEqual(got.Path, []string{"1.4.0", "2.0.0"}) {
		t.Errorf("2.2 retracted: %+v", got)
	}
	// The same inputs, the same answer, every time.
	want := fmt.Sprintf("%+v", old)
	for i := range 100 {
		if got := fmt.Sprintf("%+v", upgrade.Recommend("1.2.0", graph(), cluster("1.28"), r, nil)); got != want {
			t.Fatalf("run %d: %s, want %s", i, got, want)
		}
	}
}

func TestARiskThatCannotBeEvaluatedHoldsBack(t *testing.T) {
	got := upgrade.Recommend("1.2.0", graph(), cluster(""), rules(t), nil)
	if got.Recommended != "2.2.0" || len(got.Conditional) != 1 ||
		!strings.HasPrefix(got.Conditional[0].Risks[0].Reason, "cannot be evaluated on this cluster: no such key: kubernetesVersion") {
		t.Errorf("no kubernetesVersion reported: %+v", got)
	}
	got = upgrade.Recommend("1.2.0", graph(), cluster("not-a-version"), rules(t), nil)
	if got.Recommended != "2.2.0" || !strings.Contains(got.Conditional[0].Risks[0].Reason, `"not-a-version" is not a semantic version`) {
		t.Errorf("a property that is no version: %+v", got)
	}
}

func TestAcceptedRisksDoNotHoldBack(t *testing.T) {
	got := upgrade.Recommend("1.2.0", graph(), cluster("1.28"), rules(t), func(risk string) bool { return risk == "old-kubernetes" })
	if got.Recommended != "2.3.0" || len(got.Conditional) != 0 {
		t.Errorf("accepted: %+v", got)
	}
}

func TestEdges(t *testing.T) {
	r := rules(t)
	if got := upgrade.Recommend("2.3.0", graph(), cluster("1.30"), r, nil); got.Recommended != "" || got.Path != nil {
		t.Errorf("on the highest: %+v", got)
	}
	if got := upgrade.Recommend("not-semver", graph(), cluster("1.30"), r, nil); got.Recommended != "" {
		t.Errorf("an installed version that is no semantic version: %+v", got)
	}
	// A bad upgradeFrom lets nobody in (never fail open).
	rels := []upgrade.Release{{Version: "1.0.0"}, {Version: "1.1.0", UpgradeFrom: ">>1"}}
	if got := upgrade.Recommend("1.0.0", rels, cluster(""), r, nil); got.Recommended != "" {
		t.Errorf("bad upgradeFrom: %+v", got)
	}
	// Direct when allowed: one hop, the highest.
	if got := upgrade.Recommend("1.0.0", graph()[:5], cluster(""), r, nil); !reflect.DeepEqual(got.Path, []string{"1.4.0"}) {
		t.Errorf("direct: %+v", got)
	}
}

func TestRuleChecks(t *testing.T) {
	r := rules(t)
	for rule, want := range map[string]string{
		`cluster.labels.env == "prod"`: "",
		`cluster.properties.x +`:       "Syntax error",
		`compareVersions("1", 2) < 0`:  "found no matching overload",
		`"a string"`:                   "must be a boolean expression",
		strings.Repeat("a", 3000):      "longer than 2048",
	} {
		err := r.Check(rule)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%.40q: %v, want %q", rule, err, want)
		}
	}
	// A rule that runs away is stopped.
	if _, err := r.Applies(`[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))`, cluster("")); err == nil {
		t.Error("a costly rule ran to its end")
	}
}

// advisoryGraph is issue 30's: 1.0.0 to 1.3.0, an advisory that affects
// [1.0.0, 1.2.1), and 1.2.1 reachable only from 1.2.0 and up (a patch
// release), so that the path to the fix must go through an affected
// version unless the graph says otherwise.
func advisoryGraph(upgradeFrom string) []upgrade.Release {
	adv := []upgrade.Advisory{{ID: "GHSA-test", Summary: "a flaw", URL: "https://example.com/a"}}
	var rels []upgrade.Release
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
		r := upgrade.Release{Version: v}
		if v < "1.2.1" {
			r.Advisories = adv
		}
		if v == "1.2.1" {
			r.UpgradeFrom = upgradeFrom
		}
		rels = append(rels, r)
	}
	return rels
}

func TestAdvisoriesHoldReleasesBack(t *testing.T) {
	r := rules(t)
	// Not exposed (0.9.0 predates the flaw): the highest, never through an
	// affected version.
	rels := append([]upgrade.Release{{Version: "0.9.0"}}, advisoryGraph("")...)
	got := upgrade.Recommend("0.9.0", rels, cluster(""), r, nil)
	if got.Recommended != "1.3.0" || !reflect.DeepEqual(got.Path, []string{"1.3.0"}) {
		t.Errorf("from 0.9.0: %+v", got)
	}
	// Exposed: the nearest fixed version, then the highest from there.
	for _, installed := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		got := upgrade.RecommendFix(installed, advisoryGraph(""), cluster(""), r, nil)
		if got.Recommended != "1.2.1" || !reflect.DeepEqual(got.Path, []string{"1.2.1"}) {
			t.Errorf("fix from %s: %+v", installed, got)
		}
	}
	if got := upgrade.Recommend("1.2.1", advisoryGraph(""), cluster(""), r, nil); got.Recommended != "1.3.0" {
		t.Errorf("from the fix: %+v", got)
	}
	// 1.2.1 only from 1.2.x: a cluster on 1.0.0 cannot reach it without an
	// affected hop, so its fix is 1.3.0, directly.
	if got := upgrade.RecommendFix("1.0.0", advisoryGraph("~1.2.0"), cluster(""), r, nil); got.Recommended != "1.3.0" ||
		!reflect.DeepEqual(got.Path, []string{"1.3.0"}) {
		t.Errorf("fix from 1.0.0 when 1.2.1 takes only 1.2.x: %+v", got)
	}
	// Every affected version above the target is conditional, naming the
	// advisory; an accepted advisory is a hop like any other.
	got = upgrade.Recommend("0.9.0", advisoryGraph("")[:3], cluster(""), r, nil)
	if got.Recommended != "" || len(got.Conditional) != 3 || got.Conditional[0].Risks[0].Name != "GHSA-test" ||
		got.Conditional[0].Risks[0].Reason != "advisory GHSA-test affects this version" || got.Conditional[0].Risks[0].URL != "https://example.com/a" {
		t.Errorf("only affected versions: %+v", got)
	}
}

// A release with more advisories than the status can name is held back
// with the first ones and a count of the rest, within the schema's 16.
func TestManyAdvisoriesFitTheStatus(t *testing.T) {
	var advs []upgrade.Advisory
	for i := range 20 {
		advs = append(advs, upgrade.Advisory{ID: fmt.Sprintf("GHSA-%04d", i)})
	}
	got := upgrade.Recommend("1.0.0", []upgrade.Release{{Version: "1.1.0", Advisories: advs}}, cluster(""), rules(t), nil)
	if len(got.Conditional) != 1 || len(got.Conditional[0].Risks) != upgrade.MaxRisks {
		t.Fatalf("%+v", got)
	}
	if last := got.Conditional[0].Risks[upgrade.MaxRisks-1]; last.Name != "more-advisories" || last.Message != "5 more advisories affect this version" {
		t.Errorf("last risk: %+v", last)
	}
}
