package plugin_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Issue 29 #5: a train's rollout and a held-back cluster, as the
// controllers record them (the controllers' suite checks the recording).
var _ = Describe("rollout", Ordered, func() {
	const ns = "rollout"
	BeforeAll(func() {
		ctx := context.Background()
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		hour := &metav1.Duration{Duration: time.Hour}
		t := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app.stable"},
			Spec: trainyardv1.ReleaseTrainSpec{Component: "app", Train: "stable", Rollout: &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
				{Name: "canary", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}}},
				{Name: "early", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "early"}},
					After: &trainyardv1.RingGate{Soak: hour, MinReportingPercent: 80}},
				{Name: "everyone", After: &trainyardv1.RingGate{Soak: hour, MinReportingPercent: 90, Approval: true}},
			}}}}
		Expect(k8sClient.Create(ctx, t)).To(Succeed())
		for _, v := range []string{"1.1.0", "1.2.0"} {
			Expect(k8sClient.Create(ctx, &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", v)},
				Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: v}})).To(Succeed())
		}
		t.Status.ObservedGeneration = t.Generation
		t.Status.Latest = &trainyardv1.ReleaseRef{Version: "1.2.0", Name: trainyardv1.ReleaseName("app", "stable", "1.2.0"), Since: ts("2026-12-01T11:00:00Z")}
		t.Status.Rollout = &trainyardv1.RolloutStatus{Version: "1.2.0", Phase: trainyardv1.RolloutProgressing, Message: "rolling out 1.2.0",
			NextEvaluation: ts("2026-12-01T12:05:00Z"),
			Rings: []trainyardv1.RingStatus{
				{Name: "canary", State: trainyardv1.RingOpen, Since: ts("2026-12-01T11:00:00Z"), Reason: "Opened", Version: "1.2.0", Previous: "1.1.0",
					Opened: ts("2026-12-01T11:00:00Z"), Clusters: 1, OnVersion: 1, ShownBasisPoints: 10000, Message: "1.2.0 open; 1 of 1 clusters run it ready"},
				{Name: "early", State: trainyardv1.RingSoaking, Since: ts("2026-12-01T11:05:00Z"), Reason: "Soaking", Version: "1.1.0", Clusters: 4,
					ShownBasisPoints: 10000, NextEvaluation: ts("2026-12-01T12:05:00Z"),
					Message: "1 of 1 clusters of ring canary run 1.2.0 ready (80% needed) since 2026-12-01T11:05:00Z; soaking until 2026-12-01T12:05:00Z (59m0s left)"},
				{Name: "everyone", State: trainyardv1.RingWaiting, Since: ts("2026-12-01T11:00:00Z"), Reason: "WaitingForRing", Version: "1.1.0", Clusters: 5,
					ShownBasisPoints: 10000, Message: "waiting for ring early to open 1.2.0"},
			},
			Halts: []trainyardv1.RolloutHalt{{Version: "1.1.0", Reason: "NotReady", At: *ts("2026-11-20T09:00:00Z"), Resumed: ts("2026-11-20T09:30:00Z"),
				Message: "2 of 4 clusters of ring early run 1.1.0 and have not been ready for 10m0s (more than 25%)"}},
		}
		Expect(k8sClient.Status().Update(ctx, t)).To(Succeed())

		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "early-1", Labels: map[string]string{"ring": "early"}},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "early-1", Components: []trainyardv1.ReportedComponent{{Name: "app", Train: "stable", Version: "1.1.0"}}}}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		r.Status.ObservedGeneration, r.Status.LastSeen = r.Generation, ts("2026-12-01T11:50:00Z")
		r.Status.Conditions = []metav1.Condition{{Type: trainyardv1.ConditionStale, Status: metav1.ConditionFalse, Reason: "CheckedIn",
			Message: "checked in within the stale threshold (25h0m0s)", LastTransitionTime: *ts("2026-12-01T11:50:00Z"), ObservedGeneration: r.Generation}}
		r.Status.Components = []trainyardv1.ComponentStatus{{Name: "app", Installed: "1.1.0", Latest: "1.2.0",
			State: trainyardv1.StateUpdateAvailable, Ready: trainyardv1.Ready, Ring: "early",
			ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{HeldBack: &trainyardv1.HeldBack{Version: "1.2.0", Ring: "early", Reason: "ring early opens 1.2.0 after a soak of 1h0m0s", Until: ts("2026-12-01T12:05:00Z")}}}}
		Expect(k8sClient.Status().Update(ctx, r)).To(Succeed())
	})

	DescribeTable("golden output",
		func(name string, code int, args ...string) {
			r := run(args...)
			golden(name, r)
			Expect(r.code).To(Equal(code), "exit code; stderr: %s", r.stderr)
		},
		Entry(nil, "rollout", 0, "rollout", "app", "-n", ns),
		Entry(nil, "rollout-json", 0, "rollout", "app.stable", "-n", ns, "-o", "json"),
		Entry(nil, "why-held-back", 0, "why", "early-1", "app", "-n", ns),
		Entry(nil, "error-no-rollout", 3, "rollout", "router", "-n", fleetNS),
	)
})
