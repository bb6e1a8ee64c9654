// Package workloads is the agent's first discovery source: Deployments,
// StatefulSets and DaemonSets labelled app.kubernetes.io/name, at the
// version of their app.kubernetes.io/version label (or the Deis
// component.deis.io/version annotation), on the train of their
// trainyard.dev/train label.
package workloads

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/trainyard-dev/trainyard/agent"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Only labelled workloads are cached, and only what is reported of them.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch

func init() {
	agent.Register(agent.Registration{Name: "workloads", New: New,
		Usage: "Deployments, StatefulSets and DaemonSets labelled " + agent.LabelName})
}

// Source reports the labelled workloads.
type Source struct {
	defaultTrain string
	caches       []*agent.Cache
}

// New builds the source.
func New(c agent.Config) (agent.Source, error) {
	return &Source{defaultTrain: c.DefaultTrain}, nil
}

// Watch caches the labelled workloads, slimmed (Slim), and triggers a
// check-in when what is reported of one changes (Reported).
func (s *Source) Watch(k *agent.Kube, changed func()) error {
	for _, kind := range []struct {
		resource string
		obj      runtime.Object
	}{{"deployments", &appsv1.Deployment{}}, {"statefulsets", &appsv1.StatefulSet{}}, {"daemonsets", &appsv1.DaemonSet{}}} {
		c, err := k.Cache(agent.Kind{Client: k.Apps, Resource: kind.resource, Object: kind.obj, Namespaced: true,
			Selector: agent.LabelName, Transform: Slim, Reported: Reported}, changed)
		if err != nil {
			return err
		}
		s.caches = append(s.caches, c)
	}
	return nil
}

// workload is what discovery needs of a Deployment, StatefulSet or DaemonSet.
type workload struct {
	kind, namespace, name string
	labels, annotations   map[string]string
	image                 string
	readiness             *wire.Readiness
}

// List reports the cached workloads as components, sorted by name; a
// component found twice is reported once (the first by namespace and
// name), and a workload whose name label is not a DNS-1123 label is
// skipped.
func (s *Source) List(context.Context) (comps []wire.ComponentVersion, skipped []string, err error) {
	var found []workload
	for _, c := range s.caches {
		for _, o := range c.List() {
			switch w := o.(type) {
			case *appsv1.Deployment:
				found = append(found, workloadOf("Deployment", w.Namespace, w.Name, w.Labels, w.Annotations, w.Spec.Template.Spec, Readiness(w)))
			case *appsv1.StatefulSet:
				found = append(found, workloadOf("StatefulSet", w.Namespace, w.Name, w.Labels, w.Annotations, w.Spec.Template.Spec, Readiness(w)))
			case *appsv1.DaemonSet:
				found = append(found, workloadOf("DaemonSet", w.Namespace, w.Name, w.Labels, w.Annotations, w.Spec.Template.Spec, Readiness(w)))
			}
		}
	}
	comps, skipped = components(found, s.defaultTrain)
	return comps, skipped, nil
}

func components(found []workload, defaultTrain string) (comps []wire.ComponentVersion, skipped []string) {
	slices.SortFunc(found, func(a, b workload) int {
		return cmp.Or(cmp.Compare(a.labels[agent.LabelName], b.labels[agent.LabelName]), cmp.Compare(a.namespace, b.namespace),
			cmp.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind))
	})
	seen := map[string]bool{}
	for _, w := range found {
		name := w.labels[agent.LabelName]
		version := w.labels[agent.LabelVersion]
		if version == "" {
			version = w.annotations[agent.AnnotationDeisVer]
		}
		where := fmt.Sprintf("%s %s/%s", w.kind, w.namespace, w.name)
		switch {
		case len(validation.IsDNS1123Label(name)) > 0:
			skipped = append(skipped, fmt.Sprintf("%s: %s=%q is not a DNS-1123 label", where, agent.LabelName, name))
			continue
		case version == "":
			skipped = append(skipped, fmt.Sprintf("%s: no %s label or %s annotation", where, agent.LabelVersion, agent.AnnotationDeisVer))
			continue
		case seen[name]:
			skipped = append(skipped, fmt.Sprintf("%s: component %s is already reported from another workload", where, name))
			continue
		}
		seen[name] = true
		cv := wire.ComponentVersion{
			Component: &wire.Component{Name: name, Type: w.kind},
			Version:   &wire.Version{Train: cmp.Or(w.labels[agent.LabelTrain], defaultTrain, trainyardv1.DefaultTrain), Version: version},
		}
		if w.image != "" {
			cv.Version.Data = map[string]string{wire.DataImage: w.image}
		}
		cv.Readiness = w.readiness
		comps = append(comps, cv)
	}
	return comps, skipped
}

func workloadOf(kind, ns, name string, labels, annotations map[string]string, pod corev1.PodSpec, r *wire.Readiness) workload {
	return workload{kind: kind, namespace: ns, name: name, labels: labels, annotations: annotations, image: firstImage(pod), readiness: r}
}

// Readiness is how many of a workload's replicas run its current spec and
// are available, against how many it wants, or nil when the agent cannot
// tell (a paused Deployment, an OnDelete update strategy: its pods move
// when someone deletes them, so not-ready would say nothing about the
// release). A status its controller has not caught up with
// (observedGeneration behind) counts none ready: the replicas of the
// previous revision must not vouch for the new one (argo-cd #29410); nor do
// old replicas still running beside the new ones (a surge). Since when is
// left to the hub, which stamps the first check-in that reports a state: a
// Deployment's Available condition does not move when one replica goes.
func Readiness(obj any) *wire.Readiness {
	var r wire.Readiness
	var observed, generation int64
	switch w := obj.(type) {
	case *appsv1.Deployment:
		if w.Spec.Paused {
			return nil
		}
		r.Desired = ptr.Deref(w.Spec.Replicas, 1)
		r.Ready = min(w.Status.UpdatedReplicas, w.Status.AvailableReplicas)
		if w.Status.Replicas > w.Status.UpdatedReplicas && r.Ready >= r.Desired {
			r.Ready = max(r.Desired-1, 0) // old replicas still run beside the new ones
		}
		observed, generation = w.Status.ObservedGeneration, w.Generation
	case *appsv1.StatefulSet:
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return nil
		}
		r.Desired = ptr.Deref(w.Spec.Replicas, 1)
		if ru := w.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			// Only the ordinals at or above the partition take the update.
			r.Desired = max(r.Desired-*ru.Partition, 0)
		}
		r.Ready = min(w.Status.UpdatedReplicas, w.Status.AvailableReplicas)
		observed, generation = w.Status.ObservedGeneration, w.Generation
	case *appsv1.DaemonSet:
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return nil
		}
		r.Desired = w.Status.DesiredNumberScheduled
		r.Ready = min(w.Status.UpdatedNumberScheduled, w.Status.NumberAvailable)
		observed, generation = w.Status.ObservedGeneration, w.Generation
	default:
		return nil
	}
	if observed < generation {
		r.Ready = 0
	}
	return &r
}

// ready tells whether a workload is ready, for Reported.
func ready(obj any) bool {
	r := Readiness(obj)
	return r != nil && r.Ready >= r.Desired
}

// Reported is what a check-in takes from a workload: a change of anything
// else (replica counts, the rest of the status) does not trigger one.
func Reported(obj any) string {
	var image string
	var labels, annotations map[string]string
	switch w := obj.(type) {
	case *appsv1.Deployment:
		image, labels, annotations = firstImage(w.Spec.Template.Spec), w.Labels, w.Annotations
	case *appsv1.StatefulSet:
		image, labels, annotations = firstImage(w.Spec.Template.Spec), w.Labels, w.Annotations
	case *appsv1.DaemonSet:
		image, labels, annotations = firstImage(w.Spec.Template.Spec), w.Labels, w.Annotations
	default:
		return ""
	}
	// Readiness turning (not every replica count) triggers a check-in.
	return fmt.Sprintf("%q %t", [5]string{labels[agent.LabelName], labels[agent.LabelVersion], labels[agent.LabelTrain],
		annotations[agent.AnnotationDeisVer], image}, ready(obj))
}

func firstImage(pod corev1.PodSpec) string {
	if len(pod.Containers) == 0 {
		return ""
	}
	return pod.Containers[0].Image
}

// Slim is the cache transform for workloads: it keeps the names, labels,
// the Deis version annotation, the first container's image and what
// Readiness reads of the status, and drops the rest (pod templates, other
// annotations, managed fields).
func Slim(obj any) (any, error) {
	slim := func(pod *corev1.PodSpec) {
		image := firstImage(*pod)
		*pod = corev1.PodSpec{}
		if image != "" {
			pod.Containers = []corev1.Container{{Image: image}}
		}
	}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		slimMeta(&w.ObjectMeta)
		slim(&w.Spec.Template.Spec)
		w.Status = appsv1.DeploymentStatus{ObservedGeneration: w.Status.ObservedGeneration, Replicas: w.Status.Replicas,
			UpdatedReplicas: w.Status.UpdatedReplicas, AvailableReplicas: w.Status.AvailableReplicas}
	case *appsv1.StatefulSet:
		slimMeta(&w.ObjectMeta)
		slim(&w.Spec.Template.Spec)
		w.Spec.VolumeClaimTemplates = nil
		w.Status = appsv1.StatefulSetStatus{ObservedGeneration: w.Status.ObservedGeneration, UpdatedReplicas: w.Status.UpdatedReplicas,
			AvailableReplicas: w.Status.AvailableReplicas}
	case *appsv1.DaemonSet:
		slimMeta(&w.ObjectMeta)
		slim(&w.Spec.Template.Spec)
		w.Status = appsv1.DaemonSetStatus{ObservedGeneration: w.Status.ObservedGeneration, DesiredNumberScheduled: w.Status.DesiredNumberScheduled,
			UpdatedNumberScheduled: w.Status.UpdatedNumberScheduled, NumberAvailable: w.Status.NumberAvailable}
	}
	return obj, nil
}

// slimMeta drops the managed fields and every annotation but the Deis
// version.
func slimMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	if v, ok := m.Annotations[agent.AnnotationDeisVer]; ok {
		m.Annotations = map[string]string{agent.AnnotationDeisVer: v}
	} else {
		m.Annotations = nil
	}
}
