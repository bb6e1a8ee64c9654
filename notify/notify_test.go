package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
	"github.com/trainyard-dev/trainyard/notify"
)

var _ = Describe("notifications", func() {
	ctx := context.Background()

	It("sends one signed, schema-valid CloudEvent for a new latest release, and a Slack message", func() {
		ns := newNamespace()
		ce := newReceiver(nil)
		slack := newReceiver(func(_ int, w http.ResponseWriter) { fmt.Fprint(w, "ok") })
		target(ns, "events", trainyardv1.TargetCloudEvents, ce.URL)
		target(ns, "chat", trainyardv1.TargetSlack, slack.URL)
		rule(ns, "latest", "events", trainyardv1.NotificationRuleSpec{
			EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseLatest}, Components: []string{"router"}})
		rule(ns, "chat", "chat", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseLatest}})

		publish(ns, "router", "stable", "2.4.1")
		Eventually(ce.count).Should(Equal(1))
		// Exactly one: the train's later status writes (adoption) and the
		// release's are not new transitions.
		Consistently(ce.count, 3*time.Second).Should(Equal(1))

		// The receiver has checked it against the CloudEvents schema (as
		// every delivery); it is in structured mode.
		got := ce.requests()[0]
		Expect(got.header.Get("Content-Type")).To(Equal("application/cloudevents+json; charset=utf-8"))

		wh, err := standardwebhooks.NewWebhook(signingKey)
		Expect(err).NotTo(HaveOccurred())
		Expect(wh.Verify(got.body, got.header)).To(Succeed())
		// A signature over other bytes does not verify: the check can fail.
		Expect(wh.Verify(append(bytes.Clone(got.body), ' '), got.header)).NotTo(Succeed())

		ev := ce.events()[0]
		Expect(ev.Type).To(Equal(string(trainyardv1.EventReleaseLatest)))
		Expect(ev.SpecVersion).To(Equal("1.0"))
		Expect(got.header.Get("webhook-id")).To(Equal(ev.ID))
		Expect(ev.Subject).To(Equal("releasetrains/router.stable"))
		Expect(ev.Data.Count).To(Equal(1))
		Expect(ev.Data.Events).To(HaveLen(1))
		Expect(ev.Data.Events[0].Version).To(Equal("2.4.1"))
		Expect(ev.Data.Summary).To(Equal("router 2.4.1 is the latest release on stable"))

		Eventually(slack.count).Should(Equal(1))
		var msg struct {
			Text        string           `json:"text"`
			Attachments []map[string]any `json:"attachments"`
		}
		Expect(json.Unmarshal(slack.requests()[0].body, &msg)).To(Succeed())
		Expect(msg.Text).To(Equal("[info] release.latest: router 2.4.1 is the latest release on stable"))
		Expect(msg.Attachments).To(HaveLen(1))

		// The rule's and the target's status say what happened.
		Eventually(func(g Gomega) {
			r := getRule(&trainyardv1.NotificationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "latest"}})
			g.Expect(r.Status.Counts.Delivered).To(BeEquivalentTo(1))
			g.Expect(r.Status.LastDelivery).NotTo(BeNil())
			g.Expect(r.Status.LastDelivery.ID).To(Equal(ev.ID))
			g.Expect(r.Status.LastDelivery.StatusCode).To(BeEquivalentTo(http.StatusAccepted))
			g.Expect(r.Status.Queue).To(BeEmpty())
			t := getTarget(&trainyardv1.NotificationTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"}})
			g.Expect(t.Status.Counts.Delivered).To(BeEquivalentTo(1))
			g.Expect(t.Status.Conditions).To(ContainElement(And(
				HaveField("Type", trainyardv1.ConditionReady), HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Delivered"))))
		}).Should(Succeed())
		Expect(argoHealth(ns, "NotificationTarget", "events")).To(Equal("Healthy: the receiver accepted the last delivery (202)"))
		// Prometheus counts the same.
		Expect(metric("trainyard_notification_deliveries_total", map[string]string{
			"namespace": ns, "target": "events", "outcome": "delivered"})).To(BeEquivalentTo(1))
		Expect(argoHealth(ns, "NotificationRule", "latest")).To(Equal("Healthy: sending to events"))

		// A second latest is a new transition: one more event, another id.
		publish(ns, "router", "stable", "2.5.0")
		Eventually(ce.count).Should(Equal(2))
		Expect(ce.events()[1].ID).NotTo(Equal(ev.ID))
		Expect(ce.events()[1].Data.Events[0].Previous).To(Equal("2.4.1"))
	})

	It("retries with the same id after Retry-After, across a manager restart, and not again after success", func() {
		ns := newNamespace()
		rc := newReceiver(func(n int, w http.ResponseWriter) {
			if n == 0 {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, "busy")
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		r := rule(ns, "all", "events", trainyardv1.NotificationRuleSpec{})
		publish(ns, "api", "stable", "1.0.0")

		Eventually(rc.count).Should(Equal(1))
		first := rc.requests()[0]
		// The failed attempt is persisted before the manager goes away.
		Eventually(func(g Gomega) {
			st := getRule(r).Status
			g.Expect(st.Queue).To(HaveLen(1))
			g.Expect(st.Queue[0].Attempts).To(BeEquivalentTo(1))
			g.Expect(st.Queue[0].NextAttempt).NotTo(BeNil())
			g.Expect(st.LastError).NotTo(BeNil())
			g.Expect(st.LastError.StatusCode).To(BeEquivalentTo(http.StatusServiceUnavailable))
			// The status code alone: nothing of what the receiver said.
			g.Expect(st.LastError.Message).To(Equal("receiver answered 503 Service Unavailable"))
		}).Should(Succeed())
		stopManager()
		stopManager = startManager()

		Eventually(rc.count).Should(Equal(2))
		second := rc.requests()[1]
		Expect(second.header.Get("webhook-id")).To(Equal(first.header.Get("webhook-id")))
		Expect(second.body).To(Equal(first.body))
		Expect(second.at.Sub(first.at)).To(BeNumerically(">=", 2*time.Second))

		Eventually(func(g Gomega) {
			st := getRule(r).Status
			g.Expect(st.Queue).To(BeEmpty())
			g.Expect(st.Counts).To(Equal(trainyardv1.DeliveryCounts{Delivered: 1, Retried: 1}))
		}).Should(Succeed())
		Expect(metric("trainyard_notification_deliveries_total", map[string]string{
			"namespace": ns, "target": "events", "outcome": "retried"})).To(BeEquivalentTo(1))
		// Another restart after the success sends nothing again.
		stopManager()
		stopManager = startManager()
		Consistently(rc.count, 4*time.Second).Should(Equal(2))
	})

	It("sends nothing to the manager's own network, and says why in the target's status", func() {
		ns := newNamespace()
		// A receiver on another loopback address than the one this suite
		// allows, as the manager's metrics port would be.
		var got atomic.Int64
		l, err := net.Listen("tcp", "127.0.0.2:0")
		Expect(err).NotTo(HaveOccurred())
		internal := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			got.Add(1)
			fmt.Fprint(w, "trainyard_internal_metric 1")
		})}}
		internal.Start()
		DeferCleanup(internal.Close)
		tg := target(ns, "internal", trainyardv1.TargetCloudEvents, internal.URL+"/metrics")
		r := &trainyardv1.NotificationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "all"},
			Spec: trainyardv1.NotificationRuleSpec{TargetRef: trainyardv1.LocalObjectReference{Name: "internal"}}}
		Expect(k8sClient.Create(context.Background(), r)).To(Succeed())
		Eventually(func(g Gomega) {
			ready := meta.FindStatusCondition(getTarget(tg).Status.Conditions, trainyardv1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal("DestinationRefused"))
			g.Expect(ready.Message).To(ContainSubstring("refused to connect to 127.0.0.2: loopback addresses are not notification receivers"))
		}).Should(Succeed())

		clockPastNow()
		publish(ns, "api", "stable", "1.0.0")
		Eventually(func(g Gomega) {
			st := getRule(r).Status
			g.Expect(st.LastError).NotTo(BeNil())
			g.Expect(st.LastError.Message).To(ContainSubstring("refused to connect to 127.0.0.2"))
			g.Expect(st.Counts.Delivered).To(BeZero())
		}).Should(Succeed())
		Expect(got.Load()).To(BeZero(), "nothing reached the refused address")
	})

	It("sends from the leader only; a new leader takes over", func() {
		ns := newNamespace()
		rc := newReceiver(nil)
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		rule(ns, "latest", "events", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseLatest}})
		// Both releases become the latest in the same second (the clock does
		// not move): the new leader may see 1.1.0 first when it starts.
		clockPastNow()
		stopStandby, elected := startReplica()
		standbyStopped := false
		DeferCleanup(func() {
			if !standbyStopped {
				stopStandby()
			}
		})
		Consistently(elected, time.Second).ShouldNot(BeClosed())

		publish(ns, "api", "stable", "1.0.0")
		Eventually(rc.count).Should(Equal(1))
		Consistently(rc.count, 3*time.Second).Should(Equal(1))

		stopManager()
		Eventually(elected).Should(BeClosed())
		stopManager, standbyStopped = stopStandby, true
		publish(ns, "api", "stable", "1.1.0")
		Eventually(rc.count).Should(Equal(2))
		Consistently(rc.count, 3*time.Second).Should(Equal(2))
		evs := rc.events()
		Expect(evs[1].Data.Events[0].Version).To(Equal("1.1.0"))
	})

	It("sends a transition of the same second as the last one handled when the next leader sees it first", func() {
		ns := newNamespace()
		rc := newReceiver(nil)
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		r := rule(ns, "latest", "events", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseLatest}})
		clockPastNow()
		publish(ns, "api", "stable", "1.0.0")
		Eventually(rc.count).Should(Equal(1))
		first := rc.events()[0].ID
		Eventually(func(g Gomega) {
			g.Expect(getRule(r).Status.HandledAt).To(ConsistOf(first))
		}).Should(Succeed())
		stopManager()

		// The old leader's train controller made 1.1.0 the latest in the
		// same second as 1.0.0 (the fake clock has not moved), just before
		// it stopped, and its notifier never saw that: the next leader's
		// notifier finds it already there when it starts.
		rel := publish(ns, "api", "stable", "1.1.0")
		ctx := context.Background()
		var train trainyardv1.ReleaseTrain
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: trainyardv1.TrainName("api", "stable")}, &train)).To(Succeed())
		base := train.DeepCopy()
		train.Status.Previous = train.Status.Latest.DeepCopy()
		train.Status.Latest = &trainyardv1.ReleaseRef{Name: rel.Name, Version: "1.1.0", Since: train.Status.Latest.Since}
		Expect(k8sClient.Status().Patch(ctx, &train, client.MergeFrom(base))).To(Succeed())

		stopManager = startManager()
		Eventually(rc.count).Should(Equal(2))
		evs := rc.events()
		Expect(evs[1].Data.Events[0].Version).To(Equal("1.1.0"))
		Expect(evs[1].Time).To(Equal(evs[0].Time), "both transitions are stamped with the same second")
		Consistently(rc.count, 3*time.Second).Should(Equal(2))
	})

	It("hands over in the middle of a delivery: what the receiver accepted is not sent again", func() {
		ns := newNamespace()
		answered := make(chan struct{})
		rc := newReceiver(func(n int, w http.ResponseWriter) {
			w.WriteHeader(http.StatusAccepted)
			w.(http.Flusher).Flush()
			if n == 0 {
				close(answered) // the leader is stopped now, before it has read this answer
			}
		})
		tg := target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		r := rule(ns, "latest", "events", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseLatest}})
		clockPastNow()
		stopStandby, elected := startReplica()
		standbyStopped := false
		DeferCleanup(func() {
			if !standbyStopped {
				stopStandby()
			}
		})

		publish(ns, "api", "stable", "1.0.0")
		Eventually(answered).Should(BeClosed())
		stopManager()
		Eventually(elected).Should(BeClosed())
		stopManager, standbyStopped = stopStandby, true

		// The new leader sends nothing that the old one delivered, and the
		// rule's status shows the delivery as done.
		Consistently(rc.count, 3*time.Second).Should(Equal(1))
		first := rc.events()[0].ID
		st := getRule(r).Status
		Expect(st.Queue).To(BeEmpty())
		Expect(st.RecentIDs).To(ContainElement(first))
		Expect(st.Counts.Delivered).To(BeEquivalentTo(1))

		publish(ns, "api", "stable", "1.1.0")
		Eventually(rc.count).Should(Equal(2))
		Consistently(rc.count, 3*time.Second).Should(Equal(2))
		evs := rc.events()
		Expect(evs[1].Data.Events[0].Version).To(Equal("1.1.0"))
		Expect(evs[1].ID).NotTo(Equal(first))
		// The target's counts go on across the handover.
		Eventually(func() int64 { return getTarget(tg).Status.Counts.Delivered }).Should(BeEquivalentTo(2))
	})

	It("coalesces 1,000 clusters going stale into at most 2 deliveries per rule, with the right count", func() {
		ns := newNamespace()
		a, b := newReceiver(nil), newReceiver(nil)
		target(ns, "a", trainyardv1.TargetCloudEvents, a.URL)
		target(ns, "b", trainyardv1.TargetCloudEvents, b.URL)
		// The window is wider than the time the controllers take to mark
		// 1,000 reports stale on a loaded 2-core machine (up to 14 s seen),
		// so that all of them fall in the first window.
		window := &metav1.Duration{Duration: 30 * time.Second}
		ra := rule(ns, "stale-a", "a", trainyardv1.NotificationRuleSpec{EventTypes: []trainyardv1.EventType{trainyardv1.EventClusterStale}, DigestWindow: window})
		rule(ns, "stale-b", "b", trainyardv1.NotificationRuleSpec{MinSeverity: trainyardv1.SeverityWarning, DigestWindow: window})

		const clusters = 1000
		createReports(ns, clusters)
		// Every report has been reconciled (checked in, not stale: Stale is
		// absent until it is True).
		Eventually(func(g Gomega) {
			g.Expect(countReports(ns, trainyardv1.ConditionReady, metav1.ConditionTrue)).To(Equal(clusters))
		}, 2*time.Minute).Should(Succeed())

		fakeClock.Step(staleThreshold + time.Second)
		Eventually(func(g Gomega) {
			g.Expect(countReports(ns, trainyardv1.ConditionStale, metav1.ConditionTrue)).To(Equal(clusters))
		}, time.Minute).Should(Succeed())
		Expect(staleSpread(ns)).To(BeNumerically("<", window.Duration), "the reports went stale within one digest window")

		for _, rc := range []*receiver{a, b} {
			Eventually(func() int { return total(rc.events()) }, time.Minute).Should(Equal(clusters))
			Consistently(rc.count, 2*time.Second).Should(BeNumerically("<=", 2))
			evs := rc.events()
			Expect(evs[0].Data.Count).To(Equal(1), "the first event goes out at once")
			last := evs[len(evs)-1]
			Expect(last.Type).To(Equal(string(trainyardv1.EventClusterStale)))
			Expect(last.Data.Events).To(HaveLen(trainyardv1.MaxDigestEvents))
			Expect(last.Data.Omitted).To(Equal(last.Data.Count - trainyardv1.MaxDigestEvents))
			Expect(last.Data.Summary).To(HavePrefix(fmt.Sprintf("%d clusters stopped checking in: ", last.Data.Count)))
			Expect(last.Data.Summary).To(HaveSuffix(fmt.Sprintf("and %d more", last.Data.Omitted)))
			names := map[string]bool{}
			for _, e := range evs {
				for _, x := range e.Data.Events {
					Expect(names).NotTo(HaveKey(x.Cluster), "a cluster is reported once")
					names[x.Cluster] = true
				}
			}
		}
		Eventually(func(g Gomega) {
			st := getRule(ra).Status
			g.Expect(st.Counts.Delivered).To(BeNumerically("<=", 2))
			g.Expect(st.Counts.Suppressed).To(BeEquivalentTo(clusters - st.Counts.Delivered))
		}).Should(Succeed())
		Expect(metric("trainyard_notification_events_suppressed_total", map[string]string{
			"namespace": ns, "rule": "stale-a"})).To(BeEquivalentTo(clusters - getRule(ra).Status.Counts.Delivered))
	})

	It("sends one stale while a cluster stays stale, and one recovered when it checks in", func() {
		ns := newNamespace()
		rc := newReceiver(nil)
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		rule(ns, "health", "events", trainyardv1.NotificationRuleSpec{
			EventTypes:   []trainyardv1.EventType{trainyardv1.EventClusterStale, trainyardv1.EventClusterRecovered},
			DigestWindow: &metav1.Duration{Duration: time.Second}})
		createReports(ns, 1)
		key := client.ObjectKey{Namespace: ns, Name: "cluster-0000"}
		Eventually(func() int { return countReports(ns, trainyardv1.ConditionReady, metav1.ConditionTrue) }).Should(Equal(1))

		// Other reports' clocks move too; this one is stale once.
		fakeClock.Step(staleThreshold + time.Second)
		Eventually(rc.count).Should(Equal(1))
		Expect(rc.events()[0].Type).To(Equal(string(trainyardv1.EventClusterStale)))
		fakeClock.Step(staleThreshold)
		rep := &trainyardv1.ClusterReport{}
		Expect(k8sClient.Get(ctx, key, rep)).To(Succeed())
		patch := client.MergeFrom(rep.DeepCopy())
		rep.Labels = map[string]string{"touched": "yes"}
		Expect(k8sClient.Patch(ctx, rep, patch)).To(Succeed())
		Consistently(rc.count, 3*time.Second).Should(Equal(1))

		// A check-in, as the bridge records one.
		Expect(k8sClient.Get(ctx, key, rep)).To(Succeed())
		patch = client.MergeFrom(rep.DeepCopy())
		now := metav1.NewTime(fakeClock.Now())
		rep.Status.LastSeen = &now
		rep.Status.CheckIns++
		Expect(k8sClient.Status().Patch(ctx, rep, patch)).To(Succeed())
		Eventually(rc.count).Should(Equal(2))
		recovered := rc.events()[1]
		Expect(recovered.Type).To(Equal(string(trainyardv1.EventClusterRecovered)))
		Expect(recovered.Data.Events[0].Cluster).To(Equal("cluster-0000"))
		Consistently(rc.count, 3*time.Second).Should(Equal(2))
	})

	It("tells who falls behind and who runs a retracted release, each rule what it selects", func() {
		ns := newNamespace()
		all, warn, other := newReceiver(nil), newReceiver(nil), newReceiver(nil)
		target(ns, "all", trainyardv1.TargetCloudEvents, all.URL)
		target(ns, "warn", trainyardv1.TargetCloudEvents, warn.URL)
		target(ns, "other", trainyardv1.TargetCloudEvents, other.URL)
		second := &metav1.Duration{Duration: time.Second}
		// Not stale and recovered: the report may look stale for a moment
		// after its creation, before its check-in on the controllers' clock
		// (which earlier specs moved on) is recorded.
		types := []trainyardv1.EventType{trainyardv1.EventReleaseLatest, trainyardv1.EventReleaseRetracted, trainyardv1.EventClusterBehind, trainyardv1.EventClusterRunningRetracted}
		rule(ns, "all", "all", trainyardv1.NotificationRuleSpec{EventTypes: types, DigestWindow: second})
		rule(ns, "warn", "warn", trainyardv1.NotificationRuleSpec{EventTypes: types, MinSeverity: trainyardv1.SeverityWarning, DigestWindow: second})
		rule(ns, "other", "other", trainyardv1.NotificationRuleSpec{Components: []string{"api"}, DigestWindow: second})

		old := publish(ns, "router", "stable", "1.0.0")
		Eventually(all.count).Should(Equal(1))
		edge := &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-1", Labels: map[string]string{"env": "prod"}},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "edge-1", Components: []trainyardv1.ReportedComponent{
				{Name: "router", Train: "stable", Version: "1.0.0"}}},
		}
		Expect(k8sClient.Create(ctx, edge)).To(Succeed())
		checkedIn(edge)
		Eventually(func() int { return countReports(ns, trainyardv1.ConditionUpToDate, metav1.ConditionTrue) }).Should(Equal(1))

		publish(ns, "router", "stable", "1.1.0")
		Eventually(func() []string { return typesOf(all.events()) }).Should(ConsistOf(
			string(trainyardv1.EventReleaseLatest), string(trainyardv1.EventReleaseLatest), string(trainyardv1.EventClusterBehind)))
		behind := all.events()[2].Data.Events[0]
		Expect(behind.Cluster).To(Equal("edge-1"))
		Expect(behind.Summary).To(Equal("cluster edge-1 is behind: router 1.0.0 → 1.1.0"))

		patch := client.MergeFrom(old.DeepCopy())
		old.Spec.Retracted = &trainyardv1.Retraction{Reason: "corrupts the cache"}
		Expect(k8sClient.Patch(ctx, old, patch)).To(Succeed())
		Eventually(func() []string { return typesOf(warn.events()) }).Should(ConsistOf(
			string(trainyardv1.EventReleaseRetracted), string(trainyardv1.EventClusterRunningRetracted)))
		for _, e := range warn.events() {
			x := e.Data.Events[0]
			switch trainyardv1.EventType(e.Type) {
			case trainyardv1.EventReleaseRetracted:
				Expect(e.Severity).To(Equal("warning"))
				Expect(*x.Clusters).To(Equal(1))
				Expect(x.Summary).To(Equal("router 1.0.0 on stable was retracted (corrupts the cache); 1 cluster runs it"))
			case trainyardv1.EventClusterRunningRetracted:
				Expect(e.Severity).To(Equal("critical"))
				Expect(x.Summary).To(Equal("cluster edge-1 runs a retracted release: router 1.0.0"))
			}
		}
		Eventually(all.count).Should(Equal(5))
		Consistently(func() int { return all.count() + warn.count() + other.count() }, 3*time.Second).Should(Equal(7))
		Expect(other.count()).To(BeZero(), "a rule for another component hears nothing")
	})

	It("sends one advisory.exposed per newly exposed cluster, and advisory.resolved once none is", func() {
		ns := newNamespace()
		rc := newReceiver(nil)
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		rule(ns, "security", "events", trainyardv1.NotificationRuleSpec{
			EventTypes:   []trainyardv1.EventType{trainyardv1.EventAdvisoryExposed, trainyardv1.EventAdvisoryResolved},
			DigestWindow: &metav1.Duration{Duration: time.Second}})
		clockPastNow()
		versions := []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"}
		for _, v := range versions {
			publish(ns, "app", "stable", v)
		}
		reports := map[string]*trainyardv1.ClusterReport{}
		for i, v := range versions {
			id := fmt.Sprintf("c%d", i)
			reports[id] = &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
				Spec: trainyardv1.ClusterReportSpec{ClusterID: id, Components: []trainyardv1.ReportedComponent{{Name: "app", Train: "stable", Version: v}}}}
			Expect(k8sClient.Create(ctx, reports[id])).To(Succeed())
			checkedIn(reports[id])
		}
		Expect(k8sClient.Create(ctx, &trainyardv1.Advisory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ghsa-1"},
			Spec: trainyardv1.AdvisorySpec{ID: "GHSA-1111-2222-3333",
				Severity: []trainyardv1.AdvisorySeverity{{Type: trainyardv1.SeverityCVSSv3, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}},
				Affected: []trainyardv1.AffectedComponent{{Component: "app", Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER",
					Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}}}}}}})).To(Succeed())

		exposedClusters := func() []string {
			var ids []string
			for _, e := range rc.events() {
				for _, x := range e.Data.Events {
					if x.Type == trainyardv1.EventAdvisoryExposed {
						ids = append(ids, x.Cluster)
					}
				}
			}
			return ids
		}
		Eventually(exposedClusters).Should(ConsistOf("c0", "c1", "c2"))
		for _, e := range rc.events() {
			for _, x := range e.Data.Events {
				Expect(x.Advisory).To(Equal("GHSA-1111-2222-3333"))
				Expect(x.Components).To(HaveLen(1))
				Expect(x.Components[0].Latest).To(Equal("1.2.1"), "the recommended fix")
			}
		}
		Expect(metric("trainyard_clusters_exposed", map[string]string{"namespace": ns, "advisory": "GHSA-1111-2222-3333"})).To(BeEquivalentTo(3))
		Expect(metric("trainyard_clusters_exposed", map[string]string{"namespace": ns, "severity": "Critical"})).To(BeEquivalentTo(3))

		// Upgrades past the fix: no new exposure, and once the last one is
		// done, one resolved.
		for _, id := range []string{"c0", "c1", "c2"} {
			fakeClock.Step(time.Second)
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(reports[id]), reports[id])).To(Succeed())
			patch := client.MergeFrom(reports[id].DeepCopy())
			reports[id].Spec.Components[0].Version = "1.2.1"
			Expect(k8sClient.Patch(ctx, reports[id], patch)).To(Succeed())
			checkedIn(reports[id])
		}
		Eventually(func() []string { return typesOf(rc.events()) }).Should(ContainElement(string(trainyardv1.EventAdvisoryResolved)))
		Eventually(func() float64 {
			return metric("trainyard_clusters_exposed", map[string]string{"namespace": ns, "advisory": "GHSA-1111-2222-3333"})
		}).Should(BeZero())
		Consistently(func() int { return total(rc.events()) }, 3*time.Second).Should(Equal(4))
		Expect(exposedClusters()).To(HaveLen(3), "no cluster's exposure is sent twice")
	})

	It("sends release.unverified once when a release a TrustPolicy covers does not verify", func() {
		ns := newNamespace()
		rc := newReceiver(nil)
		target(ns, "events", trainyardv1.TargetCloudEvents, rc.URL)
		rule(ns, "supply-chain", "events", trainyardv1.NotificationRuleSpec{
			EventTypes: []trainyardv1.EventType{trainyardv1.EventReleaseUnverified}})
		clockPastNow()
		k, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cosign-pub"},
			Data: map[string][]byte{"cosign.pub": k.PEM()}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signed"},
			Spec: trainyardv1.TrustPolicySpec{Keys: []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "cosign.pub"}}}})).To(Succeed())
		_, digest := verificationtest.Manifest("3.0.0")
		// The webhook reads the policy from its cache: an unsigned release
		// by digest is accepted either way.
		Expect(k8sClient.Create(ctx, &trainyardv1.ComponentRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("router", "stable", "3.0.0")},
			Spec:       trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "3.0.0", Image: "registry.example/router@" + digest}})).To(Succeed())
		Eventually(rc.count).Should(Equal(1))
		ev := rc.events()[0]
		Expect(ev.Type).To(Equal(string(trainyardv1.EventReleaseUnverified)))
		Expect(ev.Severity).To(Equal("warning"))
		Expect(ev.Data.Events[0].Reason).To(Equal("NoSignature"))
		Expect(ev.Data.Summary).To(Equal("router 3.0.0 on stable is not verified (NoSignature): it is never latest or recommended"))
		Consistently(rc.count, 3*time.Second).Should(Equal(1))
	})

	It("shows Ready=False with the error on a target whose receiver refuses connections", func() {
		ns := newNamespace()
		// A port nothing listens on: bind one, then close it.
		closed := newReceiver(nil)
		url := closed.URL
		closed.Close()
		t := target(ns, "down", trainyardv1.TargetCloudEvents, url)
		Eventually(func(g Gomega) {
			st := getTarget(t).Status
			g.Expect(st.Conditions).To(ContainElement(And(
				HaveField("Type", trainyardv1.ConditionReady), HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", "Unreachable"), HaveField("Message", ContainSubstring("connection refused")))))
			g.Expect(st.LastError).NotTo(BeNil())
			g.Expect(st.LastError.Message).To(ContainSubstring("connection refused"))
		}).Should(Succeed())
		// Argo CD's documented health check shows it Degraded, with the error.
		Expect(argoHealth(ns, "NotificationTarget", "down")).To(MatchRegexp(`^Degraded: receiver 127\.0\.0\.1:\d+ is unreachable: .*connection refused`))

		// A delivery to it fails the same way and is queued for a retry.
		r := rule(ns, "all", "down", trainyardv1.NotificationRuleSpec{})
		publish(ns, "api", "stable", "1.0.0")
		Eventually(func(g Gomega) {
			st := getRule(r).Status
			g.Expect(st.Queue).To(HaveLen(1))
			g.Expect(st.Counts.Retried).To(BeNumerically(">=", 1))
			g.Expect(st.Conditions).To(ContainElement(And(
				HaveField("Type", trainyardv1.ConditionReady), HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", "DeliveryFailed"), HaveField("Message", ContainSubstring("connection refused")))))
		}).Should(Succeed())
	})

	It("drops what does not fit a target's queue, and counts it", func() {
		ns := newNamespace()
		rc := newReceiver(func(_ int, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		t := target(ns, "slow", trainyardv1.TargetCloudEvents, rc.URL, func(t *trainyardv1.NotificationTarget) { t.Spec.QueueLimit = 1 })
		r := rule(ns, "all", "slow", trainyardv1.NotificationRuleSpec{DigestWindow: &metav1.Duration{Duration: 5 * time.Second}})
		// The first new latest goes out at once and stays queued (the
		// receiver says to come back in an hour); the next two wait for the
		// digest window, whose delivery no longer fits.
		publish(ns, "a", "stable", "1.0.0")
		Eventually(rc.count).Should(Equal(1))
		publish(ns, "b", "stable", "1.0.0")
		publish(ns, "c", "stable", "1.0.0")
		Eventually(func(g Gomega) {
			st := getRule(r).Status
			g.Expect(st.Queue).To(HaveLen(1))
			g.Expect(st.Counts.Dropped).To(BeNumerically(">=", 1))
			tst := getTarget(t).Status
			g.Expect(tst.Queued).To(BeEquivalentTo(1))
			g.Expect(tst.Counts.Dropped).To(Equal(st.Counts.Dropped))
		}).Should(Succeed())
		// A target that accepts connections but fails deliveries is Degraded;
		// its rule says why.
		Expect(argoHealth(ns, "NotificationTarget", "slow")).To(HavePrefix("Degraded: receiver answered 503 Service Unavailable"))
		Expect(argoHealth(ns, "NotificationRule", "all")).To(HavePrefix("Degraded: receiver answered 503 Service Unavailable"))
		Consistently(func() int { return len(getRule(r).Status.Queue) }, 2*time.Second).Should(Equal(1))
		Expect(rc.count()).To(Equal(1))
	})

	It("refuses rules and targets that cannot work, with the field at fault", func() {
		ns := newNamespace()
		bad := &trainyardv1.NotificationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}, Spec: trainyardv1.NotificationRuleSpec{
			TargetRef:       trainyardv1.LocalObjectReference{Name: "t"},
			Clusters:        []string{"Not A Cluster"},
			ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}},
			DigestWindow:    &metav1.Duration{Duration: 2 * time.Hour},
		}}
		err := k8sClient.Create(ctx, bad)
		Expect(err).To(HaveOccurred())
		for _, want := range []string{"spec.clusters[0]", "spec.clusterSelector.matchExpressions[0].operator", "spec.digestWindow: Invalid value: \"2h0m0s\": must be from 1s to 1h0m0s"} {
			Expect(err.Error()).To(ContainSubstring(want))
		}
		badTarget := &trainyardv1.NotificationTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "t"}, Spec: trainyardv1.NotificationTargetSpec{
			Type: trainyardv1.TargetSlack, SecretRef: trainyardv1.LocalObjectReference{Name: "s"}, Timeout: &metav1.Duration{Duration: 5 * time.Minute}}}
		err = k8sClient.Create(ctx, badTarget)
		Expect(err).To(MatchError(ContainSubstring("spec.timeout: Invalid value: \"5m0s\": must be from 1s to 1m0s")))
	})
})

var createOnce sync.Mutex

// createReports creates n reports in ns, named cluster-0000 and on.
func createReports(ns string, n int) {
	GinkgoHelper()
	createOnce.Lock()
	defer createOnce.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("cluster-%04d", i)
			rep := &trainyardv1.ClusterReport{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
				Spec:       trainyardv1.ClusterReportSpec{ClusterID: id},
			}
			if err := k8sClient.Create(context.Background(), rep); err != nil {
				errs <- err
				return
			}
			errs <- checkIn(rep)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
}

func countReports(ns, cond string, status metav1.ConditionStatus) int {
	var list trainyardv1.ClusterReportList
	Expect(k8sClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	n := 0
	for _, r := range list.Items {
		for _, c := range r.Status.Conditions {
			if c.Type == cond && c.Status == status {
				n++
			}
		}
	}
	return n
}

// staleSpread is how far apart the reports' Stale transitions are.
func staleSpread(ns string) time.Duration {
	var list trainyardv1.ClusterReportList
	Expect(k8sClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var lo, hi time.Time
	for _, r := range list.Items {
		for _, c := range r.Status.Conditions {
			if c.Type == trainyardv1.ConditionStale {
				t := c.LastTransitionTime.Time
				if lo.IsZero() || t.Before(lo) {
					lo = t
				}
				if t.After(hi) {
					hi = t
				}
			}
		}
	}
	return hi.Sub(lo)
}

// total is the number of events deliveries report.
func total(evs []notify.CloudEvent) int {
	n := 0
	for _, e := range evs {
		n += e.Data.Count
	}
	return n
}

// argoHealth is "<status>: <message>" of an object as Argo CD's documented
// health check (docs/argocd.md) sees it.
func argoHealth(ns, kind, name string) string {
	GinkgoHelper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(trainyardv1.GroupVersion.WithKind(kind))
	Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
	status, message, err := testenv.ArgoHealth(u.Object)
	Expect(err).NotTo(HaveOccurred())
	return status + ": " + message
}

// metric reads a counter or gauge of the manager's registry.
func metric(name string, labels map[string]string) float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	Fail(fmt.Sprintf("no %s%v", name, labels))
	return 0
}

func typesOf(evs []notify.CloudEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// checkIn records a check-in now on the controllers' clock, which earlier
// specs have moved past the API server's (a report's creation would
// otherwise count as a check-in long ago).
func checkIn(rep *trainyardv1.ClusterReport) error {
	patch := client.MergeFrom(rep.DeepCopy())
	now := metav1.NewTime(fakeClock.Now())
	rep.Status.FirstSeen, rep.Status.LastSeen, rep.Status.CheckIns = &now, &now, 1
	return k8sClient.Status().Patch(context.Background(), rep, patch)
}

func checkedIn(rep *trainyardv1.ClusterReport) {
	GinkgoHelper()
	Expect(checkIn(rep)).To(Succeed())
}
