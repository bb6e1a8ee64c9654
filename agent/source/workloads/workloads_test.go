package workloads_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/trainyard-dev/trainyard/agent/source/workloads"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

func TestReadinessSaysWhatTheReleaseRunsOn(t *testing.T) {
	meta := metav1.ObjectMeta{Generation: 2}
	deploy := func(mutate func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(3))},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3}}
		mutate(d)
		return d
	}
	for _, tc := range []struct {
		name string
		obj  any
		want *wire.Readiness
	}{
		{"rolled out", deploy(func(*appsv1.Deployment) {}), &wire.Readiness{Ready: 3, Desired: 3}},
		{"status behind the spec", deploy(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 1 }), &wire.Readiness{Ready: 0, Desired: 3}},
		{"old replicas beside the new (surge)", deploy(func(d *appsv1.Deployment) { d.Status.Replicas = 4 }), &wire.Readiness{Ready: 2, Desired: 3}},
		{"one replica gone", deploy(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 2 }), &wire.Readiness{Ready: 2, Desired: 3}},
		{"paused: cannot tell", deploy(func(d *appsv1.Deployment) { d.Spec.Paused = true }), nil},
		{"StatefulSet partitioned at 2 of 5", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(int32(5)),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To(int32(2))}}},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, UpdatedReplicas: 3, AvailableReplicas: 5}}, &wire.Readiness{Ready: 3, Desired: 3}},
		{"StatefulSet OnDelete: cannot tell", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}}}, nil},
		{"DaemonSet on no node", &appsv1.DaemonSet{ObjectMeta: meta, Status: appsv1.DaemonSetStatus{ObservedGeneration: 2}}, &wire.Readiness{}},
		{"DaemonSet OnDelete: cannot tell", &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := workloads.Readiness(tc.obj)
			switch {
			case tc.want == nil && got != nil, tc.want != nil && got == nil:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			case tc.want != nil && (got.Ready != tc.want.Ready || got.Desired != tc.want.Desired || got.Since != nil):
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
