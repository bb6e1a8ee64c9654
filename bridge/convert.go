package bridge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Keys of Version.Data that map onto ComponentRelease fields; any other key
// is kept in spec.data.
const (
	dataDescription = wire.DataDescription
	dataFixes       = wire.DataFixes
	dataImage       = wire.DataImage
	dataBundle      = wire.DataSignatureBundle
)

// required is the 422 answer for a missing field, in the old service's words.
type required = checkin.Required

// reportedComponents converts a check-in's components (internal/checkin).
var reportedComponents = checkin.ReportedComponents

// clusterOf is the wire form of a report. lastSeen may be newer than the
// stored one: a heartbeat not yet flushed.
func clusterOf(r *trainyardv1.ClusterReport, lastSeen *time.Time) wire.Cluster {
	return clusterSharing(r, lastSeen, nil)
}

// clusterSharing is clusterOf for one answer of many clusters (a page):
// a component's fields are in two arrays per cluster, and the data of
// equal images is one map, shared through images (nil: none shared) by
// the clusters of the answer, which only encodes them. A page of 500
// clusters allocated 2.5 MB in clusterOf, a map per component most of it,
// and the bridge's GC ran every 60 pages at 100,000 clusters (issue 32).
func clusterSharing(r *trainyardv1.ClusterReport, lastSeen *time.Time, images map[string]map[string]string) wire.Cluster {
	n := len(r.Spec.Components)
	c := wire.Cluster{ID: r.Spec.ClusterID, Components: make([]wire.ComponentVersion, 0, n),
		Properties: r.Spec.Properties}
	comps, versions := make([]wire.Component, n), make([]wire.Version, n)
	if r.Status.FirstSeen != nil {
		t := r.Status.FirstSeen.UTC()
		c.FirstSeen = &t
	}
	if r.Status.LastSeen != nil {
		t := r.Status.LastSeen.UTC()
		c.LastSeen = &t
	}
	if lastSeen != nil && (c.LastSeen == nil || lastSeen.After(*c.LastSeen)) {
		t := lastSeen.UTC()
		c.LastSeen = &t
	}
	for i, rc := range r.Spec.Components {
		comps[i] = wire.Component{Name: rc.Name, Type: rc.Type}
		versions[i] = wire.Version{Train: rc.Train, Version: rc.Version}
		cv := wire.ComponentVersion{Component: &comps[i], Version: &versions[i]}
		if rc.Image != "" {
			data := images[rc.Image]
			if data == nil {
				data = map[string]string{dataImage: rc.Image}
				if images != nil {
					images[rc.Image] = data
				}
			}
			cv.Version.Data = data
		}
		if r := rc.Readiness; r != nil {
			cv.Readiness = &wire.Readiness{Ready: r.Ready, Desired: r.Desired}
			if r.Since != nil {
				t := r.Since.UTC()
				cv.Readiness.Since = &t
			}
		}
		// Found by name in place: a page converts hundreds of reports, and
		// a map of copies was most of what a page allocated.
		s := r.StatusOf(rc.Name)
		if s != nil && s.Recommended != "" {
			cv.UpdateAvailable = s.Recommended
		} else if s != nil && s.State == trainyardv1.StateUpdateAvailable && s.Ring == "" {
			// No path to the latest: offered as the old service did; but
			// a cluster in a rollout is offered nothing its ring has not
			// opened.
			cv.UpdateAvailable = s.GetLatest()
		}
		c.Components = append(c.Components, cv)
	}
	return c
}

// releaseSpec converts a published componentVersion.
func releaseSpec(component, train, version string, cv wire.ComponentVersion, now time.Time) (trainyardv1.ComponentReleaseSpec, error) {
	spec := trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version}
	released := metav1.NewTime(now.UTC().Truncate(time.Second))
	if cv.Version != nil && cv.Version.Released != "" {
		t, err := time.Parse(time.RFC3339, cv.Version.Released)
		if err != nil {
			return spec, fmt.Errorf("version.released %q is not an RFC 3339 time", cv.Version.Released)
		}
		released = metav1.NewTime(t.UTC())
	}
	spec.Released = &released
	if cv.Component != nil {
		spec.Description = cv.Component.Description
	}
	if cv.Version != nil {
		for k, v := range cv.Version.Data {
			switch k {
			case dataDescription:
				spec.Description = v
			case dataFixes:
				spec.Fixes = v
			case dataImage:
				spec.Image = v
			case dataBundle:
				spec.SignatureBundle = v
			default:
				if spec.Data == nil {
					spec.Data = map[string]string{}
				}
				spec.Data[k] = v
			}
		}
	}
	return spec, nil
}

// componentVersionOf is the wire form of a release.
func componentVersionOf(r *trainyardv1.ComponentRelease) wire.ComponentVersion {
	data := maps.Clone(r.Spec.Data)
	set := func(k, v string) {
		if v == "" {
			return
		}
		if data == nil {
			data = map[string]string{}
		}
		data[k] = v
	}
	set(dataDescription, r.Spec.Description)
	set(dataFixes, r.Spec.Fixes)
	set(dataImage, r.Spec.Image)
	cv := wire.ComponentVersion{
		Component: &wire.Component{Name: r.Spec.Component},
		Version:   &wire.Version{Train: r.Spec.Train, Version: r.Spec.Version, Data: data},
	}
	if r.Spec.Released != nil {
		cv.Version.Released = r.Spec.Released.UTC().Format(time.RFC3339)
	}
	return cv
}

// sameRelease lists the fields in which a re-publish differs from the
// stored release; none means the publish is a harmless retry.
func sameRelease(stored, sent trainyardv1.ComponentReleaseSpec, sentReleased bool) []string {
	var diff []string
	// The identity first: a name shared by another version (a hash
	// collision, or a release created by hand) is never answered as this one.
	if stored.Component != sent.Component {
		diff = append(diff, "component")
	}
	if stored.Train != sent.Train {
		diff = append(diff, "train")
	}
	if trainyardv1.CanonicalVersion(stored.Version) != trainyardv1.CanonicalVersion(sent.Version) {
		diff = append(diff, "version")
	}
	if stored.Description != sent.Description {
		diff = append(diff, "description")
	}
	if stored.Fixes != sent.Fixes {
		diff = append(diff, "fixes")
	}
	if stored.Image != sent.Image {
		diff = append(diff, "image")
	}
	if stored.SignatureBundle != sent.SignatureBundle {
		diff = append(diff, "signatureBundle")
	}
	if !maps.Equal(stored.Data, sent.Data) && (len(stored.Data) > 0 || len(sent.Data) > 0) {
		diff = append(diff, "data")
	}
	if sentReleased && (stored.Released == nil || !stored.Released.Equal(sent.Released)) {
		diff = append(diff, "released")
	}
	slices.Sort(diff)
	return diff
}

func joinFields(f []string) string { return strings.Join(f, ", ") }
