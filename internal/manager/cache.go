package manager

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
)

// CacheOptions are the manager's cache settings. managedFields are most of
// an object's size and nothing reads them, so no object keeps them (a
// report keeps a shared marker of them, see compactReport); a
// fleet's reports repeat the same component names, trains, versions and
// condition texts thousands of times, so those strings are stored once.
func CacheOptions() cache.Options { return cacheOptions(compactReport) }

// ControllersCacheOptions are CacheOptions for a manager whose bridge runs
// apart: no controller reads a report's identity annotations (credential
// hashes, registrations: about 260 bytes a report), so they are dropped.
// Nothing writes them back: the controllers patch reports' labels and
// status only, with merge patches between two copies of a cached object.
func ControllersCacheOptions() cache.Options {
	return cacheOptions(func(obj any) (any, error) {
		if r, ok := obj.(*trainyardv1.ClusterReport); ok {
			r.Annotations = withoutIdentity(r.Annotations)
		}
		return compactReport(obj)
	})
}

// withoutIdentity is a report's annotations without its identity ones: a
// copy when there are any, never a change in place. An informer may
// transform an object twice (client-go's watch-list transforms it on its
// way into the reflector's store, and again when the store replaces the
// informer's), and after the first pass the map may be one that other
// cached reports share (sharedAnnotations), which readers may be reading.
func withoutIdentity(a map[string]string) map[string]string {
	if !slices.ContainsFunc(trainyardv1.IdentityAnnotations, func(k string) bool { _, ok := a[k]; return ok }) {
		return a
	}
	out := make(map[string]string, len(a))
	for k, v := range a {
		if !slices.Contains(trainyardv1.IdentityAnnotations, k) {
			out[k] = v
		}
	}
	return out
}

// BridgeCacheOptions are CacheOptions for `trainyard bridge`: reports keep
// only what the bridge reads (bridge.SlimReport).
func BridgeCacheOptions() cache.Options {
	return cacheOptions(func(obj any) (any, error) {
		if r, ok := obj.(*trainyardv1.ClusterReport); ok {
			bridge.SlimReport(r)
		}
		return compactReport(obj)
	})
}

func cacheOptions(reports toolscache.TransformFunc) cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&trainyardv1.ClusterReport{}: {Transform: reports},
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
	r.Annotations = sharedAnnotations(r.Annotations)
	r.Spec.Components = trimmed(r.Spec.Components)
	r.Status.Components = trimmed(r.Status.Components)
	r.Status.Conditions = trimmed(r.Status.Conditions)
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
		c.Compact() // a stored empty list ("path": []) decodes to empty details
		c.Name, c.Installed, c.Latest = intern(c.Name), intern(c.Installed), intern(c.Latest)
		c.State = trainyardv1.ComponentState(intern(string(c.State)))
	}
	internConditions(r.Status.Conditions)
	shareTimes(r)
	r.Labels = sharedLabels(r.Labels)
	return r, nil
}

// trimmed is s without spare capacity: s itself when it has none (a list
// the decoder happened to size exactly, SlimReport's, or one trimmed
// already: a transform may run twice), else a copy. The slices are the
// decoder's, owned by the object alone.
func trimmed[S ~[]E, E any](s S) S {
	if cap(s) == len(s) {
		return s
	}
	return slices.Clip(slices.Clone(s))
}

// shareTimes points a report's equal timestamps at one copy: the decoder
// allocates each (32 bytes), and a cluster's components mostly share theirs
// (first seen together, ready since the same check-in). Cached objects are
// read only, and a deep copy copies each pointer on its own.
func shareTimes(r *trainyardv1.ClusterReport) {
	var seen []*metav1.Time
	share := func(t **metav1.Time) {
		if *t == nil {
			return
		}
		for _, s := range seen {
			if s.Equal(*t) {
				*t = s
				return
			}
		}
		seen = append(seen, *t)
	}
	share(&r.Status.FirstSeen)
	share(&r.Status.LastSeen)
	for i := range r.Status.Components {
		share(&r.Status.Components[i].Since)
		share(&r.Status.Components[i].ReadySince)
	}
}

// statusLabelSets holds one map per set of status labels seen: a report
// that has labels mostly carries nothing but those (a few combinations at
// most: StatusLabels' keys, "true" or "false"), and each small map costs a
// report about 200 bytes.
var statusLabelSets sync.Map // string -> map[string]string

// sharedLabels returns the shared map of a report's labels when they are
// status labels only, else labels with interned keys. The key space is
// bounded: only StatusLabels with "true" or "false" are shared.
func sharedLabels(labels map[string]string) map[string]string {
	if len(labels) == 0 || len(labels) > len(trainyardv1.StatusLabels) {
		return labels
	}
	var key strings.Builder
	for _, k := range trainyardv1.StatusLabels {
		v, ok := labels[k]
		switch {
		case !ok:
			key.WriteByte('-')
		case v == "true":
			key.WriteByte('t')
		case v == "false":
			key.WriteByte('f')
		default:
			return labels
		}
	}
	n := 0
	for _, c := range key.String() {
		if c != '-' {
			n++
		}
	}
	if n != len(labels) {
		return labels // some label is not a status label
	}
	if m, ok := statusLabelSets.Load(key.String()); ok {
		return m.(map[string]string)
	}
	m, _ := statusLabelSets.LoadOrStore(key.String(), maps.Clone(labels))
	return m.(map[string]string)
}

// annotationSets holds one map per small set of annotations seen: without
// identity annotations (the controllers' cache, the bridge apart) a fleet's
// reports mostly carry the same one or two (who records check-ins), and each
// small map costs a report about 300 bytes (32 MB at 100,000). The table is
// keyed by what clients write, so it is bounded: past maxAnnotationSets,
// maps are no longer shared.
var annotationSets = struct {
	sync.Mutex
	m map[string]map[string]string
}{m: map[string]map[string]string{}}

const (
	maxAnnotationSets = 256
	// Only small sets are shared: a key longer than this is a set no
	// other report is likely to have.
	maxSharedAnnotationsKey = 512
)

// sharedAnnotations returns the shared map of a report's annotations when
// they are few, short and hold no credential, else the annotations with
// interned keys (the keys repeat on every report; credential hashes do not).
func sharedAnnotations(a map[string]string) map[string]string {
	if len(a) == 0 {
		return a
	}
	if key, ok := annotationSetKey(a); ok {
		annotationSets.Lock()
		defer annotationSets.Unlock()
		if m, ok := annotationSets.m[key]; ok {
			return m
		}
		if len(annotationSets.m) < maxAnnotationSets {
			m := make(map[string]string, len(a))
			for k, v := range a {
				m[intern(k)] = intern(v)
			}
			annotationSets.m[key] = m
			return m
		}
	}
	out := make(map[string]string, len(a))
	for k, v := range a {
		out[intern(k)] = v
	}
	return out
}

// annotationSetKey is the key of a set of annotations in annotationSets,
// false when the set is not one to share.
func annotationSetKey(a map[string]string) (string, bool) {
	if len(a) > 4 {
		return "", false
	}
	var key strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if slices.Contains(trainyardv1.IdentityAnnotations, k) {
			return "", false // a credential: this report's alone
		}
		key.WriteString(k)
		key.WriteByte(0)
		key.WriteString(a[k])
		key.WriteByte(0)
		if key.Len() > maxSharedAnnotationsKey {
			return "", false
		}
	}
	return key.String(), true
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
