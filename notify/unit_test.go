package notify

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func report(name string, conds ...metav1.Condition) *v1.ClusterReport {
	return &v1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"env": "prod"}},
		Spec:       v1.ClusterReportSpec{ClusterID: name, Components: []v1.ReportedComponent{{Name: "router", Train: "stable", Version: "1.0.0"}}},
		Status: v1.ClusterReportStatus{Conditions: conds, Components: []v1.ComponentStatus{
			{Name: "router", Train: "stable", Installed: "1.0.0", Latest: "1.1.0", State: v1.StateUpdateAvailable}}},
	}
}

func cond(typ string, status metav1.ConditionStatus, reason string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, LastTransitionTime: metav1.NewTime(at)}
}

func typesOf(evs []Event) []v1.EventType {
	var out []v1.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestClusterEventsAreTheFactsOfItsConditions(t *testing.T) {
	fresh := report("a", cond(v1.ConditionStale, metav1.ConditionFalse, "CheckedIn", t0))
	if evs := ClusterEvents(fresh); len(evs) != 0 {
		t.Fatalf("a new cluster that checks in is no event, got %v", typesOf(evs))
	}
	stale := report("a", cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(time.Hour)),
		cond(v1.ConditionUpToDate, metav1.ConditionFalse, "UpdatesAvailable", t0))
	evs := ClusterEvents(stale)
	if got := typesOf(evs); len(got) != 2 || got[0] != v1.EventClusterStale || got[1] != v1.EventClusterBehind {
		t.Fatalf("stale and behind: got %v", got)
	}
	if evs[0].Severity != v1.SeverityWarning || !evs[0].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("stale event: %+v", evs[0])
	}
	if len(evs[1].Components) != 1 || evs[1].Components[0].Latest != "1.1.0" {
		t.Errorf("behind lists the component: %+v", evs[1].Components)
	}
	recovered := report("a", cond(v1.ConditionStale, metav1.ConditionFalse, controllers.ReasonRecovered, t0.Add(2*time.Hour)))
	if got := typesOf(ClusterEvents(recovered)); len(got) != 1 || got[0] != v1.EventClusterRecovered {
		t.Fatalf("recovered: got %v", got)
	}

	// The same fact has the same id whenever it is computed; a new
	// transition of the same kind has another.
	again := ClusterEvents(stale)
	if again[0].ID != evs[0].ID {
		t.Error("the id of a fact changes between computations")
	}
	later := report("a", cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(3*time.Hour)))
	if ClusterEvents(later)[0].ID == evs[0].ID {
		t.Error("two stale spells share an id")
	}
	other := report("b", cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(time.Hour)))
	if ClusterEvents(other)[0].ID == evs[0].ID {
		t.Error("two clusters' transitions share an id")
	}
	// Transitions only: what was a fact before is not new.
	if n := newFacts(evs, again); len(n) != 0 {
		t.Errorf("an unchanged state gave %v", typesOf(n))
	}
	if n := newFacts(ClusterEvents(fresh), evs); len(n) != 2 {
		t.Errorf("going stale and behind gave %v", typesOf(n))
	}
}

func TestReleaseEventsAreWarningsWhileClustersRunThem(t *testing.T) {
	rel := &v1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "router.stable.v1.0.0", UID: "r1"},
		Spec: v1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0",
			Retracted: &v1.Retraction{Reason: "CVE-2026-1"}},
		Status: v1.ComponentReleaseStatus{Conditions: []metav1.Condition{
			cond(v1.ConditionRetracted, metav1.ConditionTrue, "Retracted", t0)}},
	}
	if e := ReleaseEvents(rel, 3)[0]; e.Severity != v1.SeverityWarning || *e.Clusters != 3 ||
		e.Summary != "router 1.0.0 on stable was retracted (CVE-2026-1); 3 clusters run it" {
		t.Errorf("retracted while running: %+v", e)
	}
	if e := ReleaseEvents(rel, 0)[0]; e.Severity != v1.SeverityInfo {
		t.Errorf("retracted, run nowhere: %s", e.Severity)
	}
	train := &v1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "router.stable", UID: "t1"},
		Spec: v1.ReleaseTrainSpec{Component: "router", Train: "stable"}}
	if len(TrainEvents(train)) != 0 {
		t.Error("a train without a latest has no event")
	}
	since := metav1.NewTime(t0)
	train.Status.Latest = &v1.ReleaseRef{Name: "router.stable.v1.1.0", Version: "1.1.0", Since: &since}
	train.Status.Previous = &v1.ReleaseRef{Name: "router.stable.v1.0.0", Version: "1.0.0"}
	if e := TrainEvents(train)[0]; e.Summary != "router 1.1.0 is the latest release on stable (was 1.0.0)" {
		t.Errorf("latest: %q", e.Summary)
	}
}

func TestRulesSelect(t *testing.T) {
	stale := ClusterEvents(report("a", cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0)))[0]
	for _, tc := range []struct {
		name string
		spec v1.NotificationRuleSpec
		want bool
	}{
		{"everything", v1.NotificationRuleSpec{}, true},
		{"its type", v1.NotificationRuleSpec{EventTypes: []v1.EventType{v1.EventClusterStale}}, true},
		{"another type", v1.NotificationRuleSpec{EventTypes: []v1.EventType{v1.EventClusterBehind}}, false},
		{"warning and up", v1.NotificationRuleSpec{MinSeverity: v1.SeverityWarning}, true},
		{"critical only", v1.NotificationRuleSpec{MinSeverity: v1.SeverityCritical}, false},
		{"a component it runs", v1.NotificationRuleSpec{Components: []string{"router"}}, true},
		{"a component it does not run", v1.NotificationRuleSpec{Components: []string{"api"}}, false},
		{"its train", v1.NotificationRuleSpec{Components: []string{"router"}, Trains: []string{"stable"}}, true},
		{"another train", v1.NotificationRuleSpec{Trains: []string{"beta"}}, false},
		{"its cluster, in other case", v1.NotificationRuleSpec{Clusters: []string{"A"}}, true},
		{"another cluster", v1.NotificationRuleSpec{Clusters: []string{"b"}}, false},
		{"its labels", v1.NotificationRuleSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}, true},
		{"other labels", v1.NotificationRuleSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}}, false},
		{"a release selector does not apply to clusters", v1.NotificationRuleSpec{ReleaseSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}}, true},
		{"suspended", v1.NotificationRuleSpec{Suspend: true}, false},
	} {
		if got := Matches(&tc.spec, &stale); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDigestIDIsTheSetOfItsTransitions(t *testing.T) {
	var evs []Event
	for _, n := range []string{"a", "b", "c"} {
		r := report(n, cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0))
		evs = append(evs, ClusterEvents(r)[0])
	}
	one, two := newBatch(v1.EventClusterStale), newBatch(v1.EventClusterStale)
	for i := range evs {
		one.add(evs[i])
		two.add(evs[len(evs)-1-i])
	}
	if one.id() != two.id() {
		t.Error("the digest's id depends on the events' order")
	}
	three := newBatch(v1.EventClusterStale)
	three.add(evs[0])
	three.add(evs[1])
	if three.id() == one.id() {
		t.Error("digests of different events share an id")
	}
	single := newBatch(v1.EventClusterStale)
	single.add(evs[0])
	if single.id() != evs[0].ID {
		t.Error("a delivery of one event does not carry the event's own id")
	}
	ce := one.cloudEvent("fleet", "ops")
	if ce.Data.Count != 3 || ce.Subject != "" || ce.Data.Summary != "3 clusters stopped checking in: a, b, c" {
		t.Errorf("digest: %+v", ce)
	}
}

func TestChatMessagesAreRenderedFromTheQueuedEvent(t *testing.T) {
	b := newBatch(v1.EventClusterStale)
	for i := range 12 {
		r := report(string(rune('a'+i)), cond(v1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0))
		b.add(ClusterEvents(r)[0])
	}
	raw, _ := json.Marshal(b.cloudEvent("fleet", "ops"))

	body, ctype, err := Body(v1.TargetSlack, string(raw))
	if err != nil || ctype != "application/json" {
		t.Fatal(err, ctype)
	}
	var slack struct {
		Text        string `json:"text"`
		Attachments []struct {
			Color string `json:"color"`
			Text  string `json:"text"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &slack); err != nil {
		t.Fatal(err)
	}
	if slack.Text != "[warning] cluster.stale: 12 clusters stopped checking in: a, b, c, d, e, f, g, h, i, j and 2 more" ||
		slack.Attachments[0].Color != "#ecb22e" || !strings.HasSuffix(slack.Attachments[0].Text, "… and 2 more") {
		t.Errorf("slack: %s", body)
	}

	body, _, err = Body(v1.TargetMSTeams, string(raw))
	if err != nil {
		t.Fatal(err)
	}
	var teams struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Type string           `json:"type"`
				Body []map[string]any `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &teams); err != nil {
		t.Fatal(err)
	}
	if teams.Type != "message" || teams.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" ||
		teams.Attachments[0].Content.Type != "AdaptiveCard" || len(teams.Attachments[0].Content.Body) != 2+11+1 {
		t.Errorf("teams: %s", body)
	}

	if body, ctype, _ := Body(v1.TargetCloudEvents, string(raw)); string(body) != string(raw) || ctype != ContentType {
		t.Error("a CloudEvents target does not get the queued event as it is")
	}
}

func TestSignaturesVerifyWithTheStandardWebhooksLibrary(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := signingKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"x"}`)
	now := time.Now()
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strings.TrimSpace(jsonNumber(now.Unix())))
	h.Set("webhook-signature", sign(key, "msg_1", now, body))
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	h.Set("webhook-id", "msg_2")
	if wh.Verify(body, h) == nil {
		t.Error("a signature verifies for another id")
	}
	if _, err := signingKey("whsec_not base64!"); err == nil {
		t.Error("a broken whsec_ key is accepted")
	}
	if k, _ := signingKey("plain"); string(k) != "plain" {
		t.Error("a raw key is not used as it is")
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestRetryAfterAndBackoff(t *testing.T) {
	now := t0
	for h, want := range map[string]time.Duration{
		"":                              0,
		"2":                             2 * time.Second,
		"-5":                            0,
		"999999":                        maxRetryAfter,
		"Tue, 01 Dec 2026 12:00:30 GMT": 30 * time.Second,
		"soon":                          0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", h, got, want)
		}
	}
	for n, want := range map[int32]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 30: 5 * time.Minute} {
		if got := backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
