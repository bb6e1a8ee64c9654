// Package agent is the in-cluster agent (`trainyard agent`): it finds the
// workload cluster's components and reports them to the hub's bridge in the
// Deis workflow-manager wire format.
package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The labels and annotation a workload is discovered by.
const (
	LabelName         = "app.kubernetes.io/name"
	LabelVersion      = "app.kubernetes.io/version"
	LabelTrain        = "trainyard.dev/train"
	AnnotationDeisVer = "component.deis.io/version"
)

// workload is what discovery needs of a Deployment, StatefulSet or DaemonSet.
type workload struct {
	kind, namespace, name string
	labels, annotations   map[string]string
	image                 string
}

// ClusterID is the ID the agent reports: explicit, else the About API's
// ClusterProperty cluster.clusterset.k8s.io, else the kube-system
// namespace's UID (stable across agent restarts and reinstalls).
func ClusterID(ctx context.Context, c client.Reader, explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	cp := &unstructured.Unstructured{}
	cp.SetAPIVersion("about.k8s.io/v1alpha1")
	cp.SetKind("ClusterProperty")
	if err := c.Get(ctx, types.NamespacedName{Name: "cluster.clusterset.k8s.io"}, cp); err == nil {
		if v, _, _ := unstructured.NestedString(cp.Object, "spec", "value"); v != "" {
			return v, nil
		}
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns); err != nil {
		return "", fmt.Errorf("no cluster ID configured and the kube-system namespace cannot be read: %w", err)
	}
	return string(ns.UID), nil
}

// Discover lists the labelled workloads in namespaces (all when empty) as
// check-in components, sorted by name; a component found twice is reported
// once (the first by namespace and name), and a workload whose name label
// is not a DNS-1123 label is skipped. skipped says why, for the log.
func Discover(ctx context.Context, c client.Reader, namespaces []string, defaultTrain string) (comps []wire.ComponentVersion, skipped []string, err error) {
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var found []workload
	for _, ns := range namespaces {
		var deps appsv1.DeploymentList
		var sts appsv1.StatefulSetList
		var dss appsv1.DaemonSetList
		for _, l := range []client.ObjectList{&deps, &sts, &dss} {
			// Read-only: the cache's objects are not deep-copied (with
			// 2,000 workloads the copies were the agent's peak memory).
			if err := c.List(ctx, l, client.InNamespace(ns), client.HasLabels{LabelName}, client.UnsafeDisableDeepCopy); err != nil && !apierrors.IsNotFound(err) {
				return nil, nil, err
			}
		}
		for _, d := range deps.Items {
			found = append(found, workloadOf("Deployment", d.ObjectMeta.Namespace, d.Name, d.Labels, d.Annotations, d.Spec.Template.Spec))
		}
		for _, s := range sts.Items {
			found = append(found, workloadOf("StatefulSet", s.Namespace, s.Name, s.Labels, s.Annotations, s.Spec.Template.Spec))
		}
		for _, d := range dss.Items {
			found = append(found, workloadOf("DaemonSet", d.Namespace, d.Name, d.Labels, d.Annotations, d.Spec.Template.Spec))
		}
	}
	slices.SortFunc(found, func(a, b workload) int {
		return cmp.Or(cmp.Compare(a.labels[LabelName], b.labels[LabelName]), cmp.Compare(a.namespace, b.namespace),
			cmp.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind))
	})
	seen := map[string]bool{}
	for _, w := range found {
		name := w.labels[LabelName]
		version := w.labels[LabelVersion]
		if version == "" {
			version = w.annotations[AnnotationDeisVer]
		}
		where := fmt.Sprintf("%s %s/%s", w.kind, w.namespace, w.name)
		switch {
		case len(validation.IsDNS1123Label(name)) > 0:
			skipped = append(skipped, fmt.Sprintf("%s: %s=%q is not a DNS-1123 label", where, LabelName, name))
			continue
		case version == "":
			skipped = append(skipped, fmt.Sprintf("%s: no %s label or %s annotation", where, LabelVersion, AnnotationDeisVer))
			continue
		case seen[name]:
			skipped = append(skipped, fmt.Sprintf("%s: component %s is already reported from another workload", where, name))
			continue
		}
		seen[name] = true
		train := w.labels[LabelTrain]
		if train == "" {
			train = defaultTrain
		}
		if train == "" {
			train = v1.DefaultTrain
		}
		cv := wire.ComponentVersion{
			Component: &wire.Component{Name: name, Type: w.kind},
			Version:   &wire.Version{Train: train, Version: version},
		}
		if w.image != "" {
			cv.Version.Data = map[string]string{"image": w.image}
		}
		comps = append(comps, cv)
	}
	return comps, skipped, nil
}

func workloadOf(kind, ns, name string, labels, annotations map[string]string, pod corev1.PodSpec) workload {
	return workload{kind: kind, namespace: ns, name: name, labels: labels, annotations: annotations, image: firstImage(pod)}
}

// Reported is what a check-in takes from a workload: a change of anything
// else (replica counts, status) does not trigger one.
func Reported(obj any) [5]string {
	o, ok := obj.(client.Object)
	if !ok {
		return [5]string{}
	}
	var image string
	switch w := obj.(type) {
	case *appsv1.Deployment:
		image = firstImage(w.Spec.Template.Spec)
	case *appsv1.StatefulSet:
		image = firstImage(w.Spec.Template.Spec)
	case *appsv1.DaemonSet:
		image = firstImage(w.Spec.Template.Spec)
	}
	l, a := o.GetLabels(), o.GetAnnotations()
	return [5]string{l[LabelName], l[LabelVersion], l[LabelTrain], a[AnnotationDeisVer], image}
}

func firstImage(pod corev1.PodSpec) string {
	if len(pod.Containers) == 0 {
		return ""
	}
	return pod.Containers[0].Image
}

// Slim is the agent's cache transform for workloads: it keeps the names,
// labels, the Deis version annotation and the first container's image, and
// drops the rest (pod templates, status, other annotations).
func Slim(obj any) (any, error) {
	slim := func(pod *corev1.PodSpec) {
		image := firstImage(*pod)
		*pod = corev1.PodSpec{}
		if image != "" {
			pod.Containers = []corev1.Container{{Image: image}}
		}
	}
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	if v, ok := o.GetAnnotations()[AnnotationDeisVer]; ok {
		o.SetAnnotations(map[string]string{AnnotationDeisVer: v})
	} else {
		o.SetAnnotations(nil)
	}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		slim(&w.Spec.Template.Spec)
		w.Status = appsv1.DeploymentStatus{}
	case *appsv1.StatefulSet:
		slim(&w.Spec.Template.Spec)
		w.Spec.VolumeClaimTemplates = nil
		w.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		slim(&w.Spec.Template.Spec)
		w.Status = appsv1.DaemonSetStatus{}
	}
	return obj, nil
}

// Properties describe the workload cluster: its Kubernetes version (when
// serverVersion is given), node count, and provider (the most common prefix
// of the nodes' spec.providerID, such as "aws" or "gce").
func Properties(ctx context.Context, c client.Reader, serverVersion func() (string, error)) (map[string]string, error) {
	props := map[string]string{}
	if serverVersion != nil {
		if v, err := serverVersion(); err == nil && v != "" {
			props["kubernetesVersion"] = v
		}
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, err
	}
	props["nodes"] = strconv.Itoa(len(nodes.Items))
	count := map[string]int{}
	for _, n := range nodes.Items {
		if p, _, ok := strings.Cut(n.Spec.ProviderID, "://"); ok && p != "" {
			count[p]++
		}
	}
	best := ""
	for p, n := range count {
		if best == "" || n > count[best] || (n == count[best] && p < best) {
			best = p
		}
	}
	if best != "" {
		props["provider"] = best
	}
	return props, nil
}

// slimNode keeps only what Properties reads of a Node.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion, UID: n.UID},
		Spec: corev1.NodeSpec{ProviderID: n.Spec.ProviderID}}, nil
}
