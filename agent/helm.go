package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/agent/helmrelease"
	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// TypeHelmRelease is the component type of a Helm release.
const TypeHelmRelease = "HelmRelease"

// withHelmReleases adds the deployed Helm releases to the workloads'
// components: a chart is a component named after the chart, at the chart's
// version, on the train of the release Secret's trainyard.dev/train label
// (`helm install --labels`) or the default. A workload reporting the same
// name wins: its labels say more than a chart name.
func withHelmReleases(comps []wire.ComponentVersion, releases []helmrelease.Release, defaultTrain string) ([]wire.ComponentVersion, []string) {
	slices.SortFunc(releases, func(a, b helmrelease.Release) int {
		return cmp.Or(cmp.Compare(a.Chart, b.Chart), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	seen := map[string]bool{}
	for _, c := range comps {
		seen[c.Component.Name] = true
	}
	var skipped []string
	for _, r := range releases {
		where := fmt.Sprintf("Helm release %s/%s", r.Namespace, r.Name)
		switch {
		case r.Chart == "":
			skipped = append(skipped, where+": its release Secret could not be decoded")
			continue
		case len(validation.IsDNS1123Label(r.Chart)) > 0:
			skipped = append(skipped, fmt.Sprintf("%s: chart name %q is not a DNS-1123 label", where, r.Chart))
			continue
		case seen[r.Chart]:
			skipped = append(skipped, fmt.Sprintf("%s: component %s is already reported", where, r.Chart))
			continue
		}
		seen[r.Chart] = true
		train := cmp.Or(r.Labels[LabelTrain], defaultTrain, v1.DefaultTrain)
		data := map[string]string{"release": r.Namespace + "/" + r.Name}
		if r.AppVersion != "" {
			data["appVersion"] = r.AppVersion
		}
		comps = append(comps, wire.ComponentVersion{
			Component: &wire.Component{Name: r.Chart, Type: TypeHelmRelease},
			Version:   &wire.Version{Train: train, Version: r.ChartVersion, Data: data},
		})
	}
	slices.SortStableFunc(comps, func(a, b wire.ComponentVersion) int { return cmp.Compare(a.Component.Name, b.Component.Name) })
	return comps, skipped
}

// helmSecret is the metadata-only view of Secrets the agent watches, so a
// release's install, upgrade or removal triggers a check-in without caching
// release data.
func helmSecret() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// watchHelmReleases triggers a check-in when a release Secret appears, goes,
// or changes status.
func (a *Agent) watchHelmReleases(ctx context.Context, informers cache.Informers) error {
	inf, err := informers.GetInformer(ctx, helmSecret())
	if err != nil {
		return err
	}
	status := func(obj any) string {
		if o, ok := obj.(client.Object); ok {
			return o.GetLabels()[helmrelease.LabelStatus]
		}
		return ""
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.Changed() },
		UpdateFunc: func(old, cur any) {
			if status(old) != status(cur) {
				a.Changed()
			}
		},
		DeleteFunc: func(any) { a.Changed() },
	})
	return err
}
