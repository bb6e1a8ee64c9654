package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func report(name string, conds ...metav1.Condition) *trainyardv1.ClusterReport {
	return &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"env": "prod"}},
		Spec:       trainyardv1.ClusterReportSpec{ClusterID: name, Components: []trainyardv1.ReportedComponent{{Name: "router", Train: "stable", Version: "1.0.0"}}},
		Status: trainyardv1.ClusterReportStatus{Conditions: conds, Components: []trainyardv1.ComponentStatus{
			{Name: "router", Installed: "1.0.0", Latest: "1.1.0", State: trainyardv1.StateUpdateAvailable}}},
	}
}

func cond(typ string, status metav1.ConditionStatus, reason string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, LastTransitionTime: metav1.NewTime(at)}
}

func typesOf(evs []Event) []trainyardv1.EventType {
	var out []trainyardv1.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestClusterEventsAreTheFactsOfItsConditions(t *testing.T) {
	fresh := report("a", cond(trainyardv1.ConditionStale, metav1.ConditionFalse, "CheckedIn", t0))
	if evs := ClusterEvents(fresh); len(evs) != 0 {
		t.Fatalf("a new cluster that checks in is no event, got %v", typesOf(evs))
	}
	stale := report("a", cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(time.Hour)),
		cond(trainyardv1.ConditionUpToDate, metav1.ConditionFalse, "UpdatesAvailable", t0))
	evs := ClusterEvents(stale)
	if got := typesOf(evs); len(got) != 2 || got[0] != trainyardv1.EventClusterStale || got[1] != trainyardv1.EventClusterBehind {
		t.Fatalf("stale and behind: got %v", got)
	}
	if evs[0].Severity != trainyardv1.SeverityWarning || !evs[0].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("stale event: %+v", evs[0])
	}
	if len(evs[1].Components) != 1 || evs[1].Components[0].Latest != "1.1.0" {
		t.Errorf("behind lists the component: %+v", evs[1].Components)
	}
	recovered := report("a", cond(trainyardv1.ConditionStale, metav1.ConditionFalse, trainyardv1.ReasonRecovered, t0.Add(2*time.Hour)))
	if got := typesOf(ClusterEvents(recovered)); len(got) != 1 || got[0] != trainyardv1.EventClusterRecovered {
		t.Fatalf("recovered: got %v", got)
	}

	// The same fact has the same id whenever it is computed; a new
	// transition of the same kind has another.
	again := ClusterEvents(stale)
	if again[0].ID != evs[0].ID {
		t.Error("the id of a fact changes between computations")
	}
	later := report("a", cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(3*time.Hour)))
	if ClusterEvents(later)[0].ID == evs[0].ID {
		t.Error("two stale spells share an id")
	}
	other := report("b", cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0.Add(time.Hour)))
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
	rel := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "router.stable.v1.0.0", UID: "r1"},
		Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0",
			Retracted: &trainyardv1.Retraction{Reason: "CVE-2026-1"}},
		Status: trainyardv1.ComponentReleaseStatus{Conditions: []metav1.Condition{
			cond(trainyardv1.ConditionRetracted, metav1.ConditionTrue, "Retracted", t0)}},
	}
	if e := ReleaseEvents(rel, 3)[0]; e.Severity != trainyardv1.SeverityWarning || *e.Clusters != 3 ||
		e.Summary != "router 1.0.0 on stable was retracted (CVE-2026-1); 3 clusters run it" {
		t.Errorf("retracted while running: %+v", e)
	}
	if e := ReleaseEvents(rel, 0)[0]; e.Severity != trainyardv1.SeverityInfo {
		t.Errorf("retracted, run nowhere: %s", e.Severity)
	}
	train := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "router.stable", UID: "t1"},
		Spec: trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable"}}
	if len(TrainEvents(train)) != 0 {
		t.Error("a train without a latest has no event")
	}
	since := metav1.NewTime(t0)
	train.Status.Latest = &trainyardv1.ReleaseRef{Name: "router.stable.v1.1.0", Version: "1.1.0", Since: &since}
	train.Status.Previous = &trainyardv1.ReleaseRef{Name: "router.stable.v1.0.0", Version: "1.0.0"}
	if e := TrainEvents(train)[0]; e.Summary != "router 1.1.0 is the latest release on stable (was 1.0.0)" {
		t.Errorf("latest: %q", e.Summary)
	}
}

func TestRolloutEventsAreItsOpeningsHaltsAndResumes(t *testing.T) {
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	train := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "app.stable", UID: "uid-train"},
		Spec: trainyardv1.ReleaseTrainSpec{Component: "app", Train: "stable"},
		Status: trainyardv1.ReleaseTrainStatus{Rollout: &trainyardv1.RolloutStatus{Version: "1.1.0", Rings: []trainyardv1.RingStatus{
			{Name: "base", Version: "1.0.0", Opened: at(0)}, // a baseline: no event
			{Name: "canary", Version: "1.1.0", Previous: "1.0.0", Opened: at(time.Minute)},
			{Name: "early", Version: "1.0.0", Previous: "1.0.0", Opened: at(0)}, // not the rolling release
		}}}}
	before := train.DeepCopy()
	if got := typesOf(TrainEvents(before)); len(got) != 1 || got[0] != trainyardv1.EventRolloutRingOpened {
		t.Fatalf("facts of one opened ring: %v", got)
	}
	halted := train.DeepCopy()
	halted.Status.Rollout.Halts = []trainyardv1.RolloutHalt{{Version: "1.1.0", Reason: "NotReady", Message: "2 of 4", At: *at(time.Hour)}}
	news := newFacts(TrainEvents(before), TrainEvents(halted))
	if len(news) != 1 || news[0].Type != trainyardv1.EventRolloutHalted || news[0].Severity != trainyardv1.SeverityWarning || !strings.Contains(news[0].Summary, "halted: 2 of 4") {
		t.Fatalf("new facts of a halt: %+v", news)
	}
	resumed := halted.DeepCopy()
	resumed.Status.Rollout.Halts[0].Resumed = at(2 * time.Hour)
	news = newFacts(TrainEvents(halted), TrainEvents(resumed))
	if len(news) != 1 || news[0].Type != trainyardv1.EventRolloutResumed {
		t.Fatalf("new facts of a resume: %+v", news)
	}
	// The same facts, whoever computes them: the ids do not change.
	if a, b := TrainEvents(resumed), TrainEvents(resumed.DeepCopy()); a[0].ID != b[0].ID || a[1].ID != b[1].ID {
		t.Fatal("ids differ between two computations")
	}
}

func TestRulesSelect(t *testing.T) {
	stale := ClusterEvents(report("a", cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0)))[0]
	for _, tc := range []struct {
		name string
		spec trainyardv1.NotificationRuleSpec
		want bool
	}{
		{"everything", trainyardv1.NotificationRuleSpec{}, true},
		{"its type", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventClusterStale}}, true},
		{"another type", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventClusterBehind}}, false},
		{"warning and up", trainyardv1.NotificationRuleSpec{MinSeverity: trainyardv1.SeverityWarning}, true},
		{"critical only", trainyardv1.NotificationRuleSpec{MinSeverity: trainyardv1.SeverityCritical}, false},
		{"a component it runs", trainyardv1.NotificationRuleSpec{Components: []string{"router"}}, true},
		{"a component it does not run", trainyardv1.NotificationRuleSpec{Components: []string{"api"}}, false},
		{"its train", trainyardv1.NotificationRuleSpec{Components: []string{"router"}, Trains: []string{"stable"}}, true},
		{"another train", trainyardv1.NotificationRuleSpec{Trains: []string{"beta"}}, false},
		{"its cluster, in other case", trainyardv1.NotificationRuleSpec{Clusters: []string{"A"}}, true},
		{"another cluster", trainyardv1.NotificationRuleSpec{Clusters: []string{"b"}}, false},
		{"its labels", trainyardv1.NotificationRuleSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}, true},
		{"other labels", trainyardv1.NotificationRuleSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}}, false},
		{"a release selector does not apply to clusters", trainyardv1.NotificationRuleSpec{ReleaseSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}}, true},
		{"suspended", trainyardv1.NotificationRuleSpec{Suspend: true}, false},
	} {
		if got := Matches(&tc.spec, &stale); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDigestIDIsTheSetOfItsTransitions(t *testing.T) {
	var evs []Event
	for _, n := range []string{"a", "b", "c"} {
		r := report(n, cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0))
		evs = append(evs, ClusterEvents(r)[0])
	}
	one, two := newBatch(trainyardv1.EventClusterStale), newBatch(trainyardv1.EventClusterStale)
	for i := range evs {
		one.add(evs[i])
		two.add(evs[len(evs)-1-i])
	}
	if one.id() != two.id() {
		t.Error("the digest's id depends on the events' order")
	}
	three := newBatch(trainyardv1.EventClusterStale)
	three.add(evs[0])
	three.add(evs[1])
	if three.id() == one.id() {
		t.Error("digests of different events share an id")
	}
	single := newBatch(trainyardv1.EventClusterStale)
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
	b := newBatch(trainyardv1.EventClusterStale)
	for i := range 12 {
		r := report(string(rune('a'+i)), cond(trainyardv1.ConditionStale, metav1.ConditionTrue, "NoRecentCheckIn", t0))
		b.add(ClusterEvents(r)[0])
	}
	raw, _ := json.Marshal(b.cloudEvent("fleet", "ops"))

	body, ctype, err := Body(trainyardv1.TargetSlack, string(raw))
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

	body, _, err = Body(trainyardv1.TargetMSTeams, string(raw))
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

	if body, ctype, _ := Body(trainyardv1.TargetCloudEvents, string(raw)); string(body) != string(raw) || ctype != ContentType {
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

// A transition's time has a second's precision: one of the same second as
// the last one handled is new unless it was admitted then; when more of
// that second were admitted than are remembered, the whole second counts
// as handled (nothing sent twice after a handover).
func TestHandledThroughKnowsItsOwnSecond(t *testing.T) {
	ev := func(id string, at time.Time) Event {
		return Event{ID: id, Type: trainyardv1.EventReleaseLatest, Time: at}
	}
	one := func(e Event) *batch { b := newBatch(e.Type); b.add(e); return b }
	rs := &ruleState{handledThrough: t0.Add(-time.Minute)}
	a := ev("a", t0)
	rs.markHandledLocked(one(a), a.Time)
	if !rs.handledThrough.Equal(t0) {
		t.Fatalf("handledThrough = %v, want %v", rs.handledThrough, t0)
	}
	for _, c := range []struct {
		e    Event
		want bool
	}{
		{ev("older", t0.Add(-time.Second)), true},
		{a, true},
		{ev("b", t0), false}, // same second, not admitted: the bug this guards
		{ev("later", t0.Add(time.Second)), false},
	} {
		if got := rs.handled(c.e); got != c.want {
			t.Errorf("handled(%s at %v) = %v, want %v", c.e.ID, c.e.Time, got, c.want)
		}
	}

	// A later second starts a new set.
	b := ev("b", t0.Add(time.Second))
	rs.markHandledLocked(one(b), b.Time)
	if len(rs.handledAt) != 1 || rs.handledAt[0] != "b" {
		t.Fatalf("handledAt = %v, want [b]", rs.handledAt)
	}

	// More than fit: the second as a whole counts as handled.
	for i := range maxHandledAt {
		e := ev(fmt.Sprint("storm-", i), b.Time)
		rs.markHandledLocked(one(e), e.Time)
	}
	if rs.handledAt != nil || !rs.handled(ev("unseen", b.Time)) || rs.handled(ev("next", b.Time.Add(time.Second))) {
		t.Fatalf("after an overflow: handledAt = %v; the whole second must count as handled, the next not", rs.handledAt)
	}

	// A digest whose members were not all kept may hide one of the second.
	rs = &ruleState{handledThrough: t0.Add(-time.Minute)}
	d := newBatch(trainyardv1.EventClusterStale)
	for i := range trainyardv1.MaxDigestEvents + 1 {
		d.add(ev(fmt.Sprint("m-", i), t0))
	}
	rs.markHandledLocked(d, d.newest)
	if rs.handledAt != nil {
		t.Fatalf("handledAt = %v after a digest with members not kept, want nil", rs.handledAt)
	}
}

// The manager is not a probe into its own network: loopback, link-local,
// metadata, unspecified and multicast addresses are refused on the address
// actually dialled (a name that resolves there too), unless allowed.
func TestDeliveriesAreRefusedToTheManagersOwnNetwork(t *testing.T) {
	var d Destinations
	for _, a := range []string{"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1",
		"fd00:ec2::254", "100.100.100.200", "0.0.0.0", "::", "224.0.0.1", "ff02::1"} {
		if err := d.Check(netip.MustParseAddr(a)); err == nil {
			t.Errorf("%s: allowed, want refused", a)
		}
	}
	for _, a := range []string{"10.0.0.7", "172.16.3.4", "192.168.1.1", "fd12::1", "203.0.113.9", "2001:db8::1"} {
		if err := d.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s: %v, want allowed (receivers live in private ranges)", a, err)
		}
	}
	allowed, err := ParseDestinations([]string{"127.0.0.1/32"})
	if err != nil || allowed.Check(netip.MustParseAddr("127.0.0.1")) != nil || allowed.Check(netip.MustParseAddr("127.0.0.2")) == nil {
		t.Errorf("--notification-allowed-cidrs=127.0.0.1/32 must allow 127.0.0.1 only (err %v)", err)
	}
	if _, err := ParseDestinations([]string{"localhost"}); err == nil || !strings.Contains(err.Error(), `"localhost" is not a CIDR`) {
		t.Errorf("a bad CIDR: %v", err)
	}

	// Over real HTTP: nothing reaches a loopback receiver, by address or by
	// a name that resolves to it, and no part of an answer is kept.
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("secret internal page"))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/metrics"} {
		rc, err := resolve(&corev1.Secret{Data: map[string][]byte{trainyardv1.SecretKeyURL: []byte(u)}}, 5*time.Second, d)
		if err != nil {
			t.Fatal(err)
		}
		o := rc.post(context.Background(), "id", ContentType, []byte(`{}`), time.Now())
		if o.err == nil || !strings.Contains(o.err.Error(), "refused to connect to 127.0.0.1") && !strings.Contains(o.err.Error(), "refused to connect to ::1") {
			t.Errorf("POST %s: %d %v, want refused", u, o.code, o.err)
		}
		if err := rc.probe(context.Background(), time.Second); err == nil || !strings.Contains(err.Error(), "refused to connect") {
			t.Errorf("probe %s: %v, want refused", u, err)
		}
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	rc, err := resolve(&corev1.Secret{Data: map[string][]byte{trainyardv1.SecretKeyURL: []byte(srv.URL)}}, 5*time.Second, allowed)
	if err != nil {
		t.Fatal(err)
	}
	o := rc.post(context.Background(), "id", ContentType, []byte(`{}`), time.Now())
	if got.Load() != 1 || o.code != http.StatusInternalServerError || o.err.Error() != "receiver answered 500 Internal Server Error" {
		t.Errorf("an allowed receiver's 500: %d %v (requests %d); want the status alone, none of the body", o.code, o.err, got.Load())
	}
}
