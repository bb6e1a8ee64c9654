// Package helm is the agent's Helm releases source: every deployed Helm 3
// release is a component named after its chart, at the chart's version, on
// the train of the release Secret's trainyard.dev/train label (`helm
// install --labels`).
package helm

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trainyard-dev/trainyard/agent"
	"github.com/trainyard-dev/trainyard/agent/helmrelease"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Release Secrets are watched as metadata only, and listed with their data
// at check-in time; nothing else of Secrets is read.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch

func init() {
	agent.Register(agent.Registration{Name: "helm", New: New,
		Usage: "deployed Helm releases (chart name and version); needs list and watch on Secrets"})
}

// TypeHelmRelease is the component type of a Helm release.
const TypeHelmRelease = "HelmRelease"

// Source reports the deployed Helm releases.
type Source struct {
	kube         *agent.Kube
	defaultTrain string
}

// New builds the source.
func New(c agent.Config) (agent.Source, error) {
	return &Source{kube: c.Kube, defaultTrain: c.DefaultTrain}, nil
}

// Watch caches the metadata of Helm's release Secrets, so that an install,
// upgrade or removal (a Secret appears, goes, or changes its status label)
// triggers a check-in without caching release data.
func (s *Source) Watch(k *agent.Kube, changed func()) error {
	_, err := k.Cache(agent.Kind{MetadataOnly: true, GVR: corev1.SchemeGroupVersion.WithResource("secrets"), Namespaced: true,
		Selector: helmrelease.LabelOwner + "=helm",
		Reported: func(obj any) string {
			if o, ok := obj.(interface{ GetLabels() map[string]string }); ok {
				return o.GetLabels()[helmrelease.LabelStatus]
			}
			return ""
		}}, changed)
	return err
}

// List reads the deployed releases from the API server (release Secrets are
// large: they are not cached).
func (s *Source) List(ctx context.Context) ([]wire.ComponentVersion, []string, error) {
	releases, err := helmrelease.List(ctx, s.kube.Core, s.kube.Namespaces)
	if err != nil {
		return nil, nil, fmt.Errorf("listing Helm releases: %w", err)
	}
	slices.SortFunc(releases, func(a, b helmrelease.Release) int {
		return cmp.Or(cmp.Compare(a.Chart, b.Chart), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var comps []wire.ComponentVersion
	var skipped []string
	seen := map[string]bool{}
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
			skipped = append(skipped, fmt.Sprintf("%s: chart %s is already reported from another release", where, r.Chart))
			continue
		}
		seen[r.Chart] = true
		data := map[string]string{"release": r.Namespace + "/" + r.Name}
		if r.AppVersion != "" {
			data["appVersion"] = r.AppVersion
		}
		comps = append(comps, wire.ComponentVersion{
			Component: &wire.Component{Name: r.Chart, Type: TypeHelmRelease},
			Version: &wire.Version{Train: cmp.Or(r.Labels[agent.LabelTrain], s.defaultTrain, trainyardv1.DefaultTrain),
				Version: r.ChartVersion, Data: data},
		})
	}
	return comps, skipped, nil
}
