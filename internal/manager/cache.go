package manager

import (
	"slices"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// CacheOptions are the manager's cache settings. managedFields are most of
// an object's size and nothing reads them, so no object keeps them (a
// report keeps a shared marker of them, see compactReport); a
// fleet's reports repeat the same component names, trains, versions and
// condition texts thousands of times, so those strings are stored once.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&trainyardv1.ClusterReport{}: {Transform: compactReport},
		},
	}
}

// compactReport replaces managedFields with a shared marker, interns the report's repeated
// strings and trims its lists to their length (the JSON decoder grows them
// by doubling: a third of a 100,000-report cache was spare capacity). It
// runs on objects fresh from the API, before anyone shares them.
func compactReport(obj any) (any, error) {
	r, ok := obj.(*trainyardv1.ClusterReport)
	if !ok {
		return cache.TransformStripManagedFields()(obj)
	}
	if len(r.ManagedFields) > 0 {
		// What the report controller needs to know to clear them (it
		// does, once): that they are there. Every such report shares
		// this one entry.
		r.ManagedFields = managedFieldsPresent
	}
	r.Namespace = intern(r.Namespace)
	if len(r.Annotations) > 0 {
		// The keys repeat on every report; the values (credential hashes)
		// mostly do not.
		a := make(map[string]string, len(r.Annotations))
		for k, v := range r.Annotations {
			a[intern(k)] = v
		}
		r.Annotations = a
	}
	r.Spec.Components = slices.Clip(slices.Clone(r.Spec.Components))
	r.Status.Components = slices.Clip(slices.Clone(r.Status.Components))
	r.Status.Conditions = slices.Clip(slices.Clone(r.Status.Conditions))
	for i := range r.Spec.Components {
		c := &r.Spec.Components[i]
		c.Name, c.Train, c.Version = intern(c.Name), intern(c.Train), intern(c.Version)
		c.Type, c.Image = intern(c.Type), intern(c.Image)
	}
	if len(r.Spec.Properties) > 0 {
		props := make(map[string]string, len(r.Spec.Properties))
		for k, v := range r.Spec.Properties {
			props[intern(k)] = intern(v)
		}
		r.Spec.Properties = props
	}
	for i := range r.Status.Components {
		c := &r.Status.Components[i]
		c.Name, c.Installed, c.Latest = intern(c.Name), intern(c.Installed), intern(c.Latest)
		c.State = trainyardv1.ComponentState(intern(string(c.State)))
	}
	internConditions(r.Status.Conditions)
	return r, nil
}

// managedFieldsPresent stands, in the cache, for a report's managedFields:
// a single empty entry, which is also what clears them when written back.
// Read only.
var managedFieldsPresent = []metav1.ManagedFieldsEntry{{}}

func internConditions(conds []metav1.Condition) {
	for i := range conds {
		c := &conds[i]
		c.Type, c.Reason, c.Message = intern(c.Type), intern(c.Reason), intern(c.Message)
		c.Status = metav1.ConditionStatus(intern(string(c.Status)))
	}
}

func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
