package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// listReleases answers GET /v3/versions/{train}/{component}: every release
// of the train, newest first under the train's ordering.
func (s *Server) listReleases(w http.ResponseWriter, r *http.Request, p params) {
	pg, ok := pageParams(w, r)
	if !ok {
		return
	}
	var list trainyardv1.ComponentReleaseList
	if err := s.cache.List(r.Context(), &list, client.InNamespace(s.nsOf(r.Context())), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReleaseTrain: trainyardv1.TrainName(p["component"], p["train"])}); err != nil {
		writeAPIError(w, "listing releases", err)
		return
	}
	policy := s.policy(r, p["component"], p["train"])
	cands := make([]ordering.Candidate, len(list.Items))
	for i, rel := range list.Items {
		cands[i] = candidate(&rel)
	}
	idx := make([]int, len(list.Items))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return policy.Compare(cands[b], cands[a]) })
	names := make([]string, len(idx))
	for k, i := range idx {
		names[k] = list.Items[i].Name
	}
	from, to, ok := pg.apply(w, r, names)
	if !ok {
		return
	}
	out := dataList[wire.ComponentVersion]{Data: make([]wire.ComponentVersion, 0, to-from)}
	for _, i := range idx[from:to] {
		out.Data = append(out.Data, componentVersionOf(&list.Items[i]))
	}
	writeCacheableJSON(w, r, out)
}

func candidate(rel *trainyardv1.ComponentRelease) ordering.Candidate {
	var released int64
	if rel.Spec.Released != nil {
		released = rel.Spec.Released.UnixNano()
	}
	return ordering.NewCandidate(rel.Name, rel.Spec.Version, released, rel.Spec.Retracted != nil)
}

// policy is the train's ordering policy, the default when it has no train.
func (s *Server) policy(r *http.Request, component, train string) ordering.Policy {
	t := &trainyardv1.ReleaseTrain{}
	key := types.NamespacedName{Namespace: s.nsOf(r.Context()), Name: trainyardv1.TrainName(component, train)}
	if err := s.cache.Get(r.Context(), key, t, client.UnsafeDisableDeepCopy); err == nil {
		if p, err := ordering.PolicyOf(t.Spec); err == nil {
			return p
		}
	}
	p, _ := ordering.PolicyOf(trainyardv1.ReleaseTrainSpec{})
	return p
}

// release finds one release: "latest" is the train's latest.
func (s *Server) release(r *http.Request, component, train, version string) (*trainyardv1.ComponentRelease, error) {
	ctx := r.Context()
	trainName := trainyardv1.TrainName(component, train)
	// The cache's own objects, read only: the answers are built from them
	// without copying.
	if version == "latest" {
		t := &trainyardv1.ReleaseTrain{}
		if err := s.cache.Get(ctx, types.NamespacedName{Namespace: s.nsOf(ctx), Name: trainName}, t, client.UnsafeDisableDeepCopy); err != nil {
			return nil, err
		}
		if t.Status.Latest == nil {
			return nil, apierrors.NewNotFound(trainyardv1.GroupVersion.WithResource("componentreleases").GroupResource(), "latest")
		}
		rel := &trainyardv1.ComponentRelease{}
		err := s.cache.Get(ctx, types.NamespacedName{Namespace: s.nsOf(ctx), Name: t.Status.Latest.Name}, rel, client.UnsafeDisableDeepCopy)
		return rel, err
	}
	var list trainyardv1.ComponentReleaseList
	if err := s.cache.List(ctx, &list, client.InNamespace(s.nsOf(ctx)), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReleaseVersion: index.VersionKey(trainName, version)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Spec.Version == version {
			return &list.Items[i], nil
		}
	}
	if len(list.Items) > 0 { // the same semantic version, spelled differently
		return &list.Items[0], nil
	}
	return nil, apierrors.NewNotFound(trainyardv1.GroupVersion.WithResource("componentreleases").GroupResource(), version)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request, p params) {
	if s.longPollLatest(w, r, p) {
		return
	}
	rel, err := s.release(r, p["component"], p["train"], p["release"])
	if apierrors.IsNotFound(err) {
		writeError(w, http.StatusNotFound, "404 release not found")
		return
	} else if err != nil {
		writeAPIError(w, "reading the release", err)
		return
	}
	writeCacheableJSON(w, r, componentVersionOf(rel))
}

// publish answers POST /v3/versions/{train}/{component}/{release}: it
// creates the ComponentRelease. Re-publishing the same content is a 200; the
// same version with other content is a 409.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, p params) {
	var cv wire.ComponentVersion
	if !decodeJSON(w, r, &cv) {
		return
	}
	train, component, version := p["train"], p["component"], p["release"]
	if version == "latest" {
		writeError(w, http.StatusBadRequest, `"latest" names the train's latest release; publish a version`)
		return
	}
	var mismatch []string
	if cv.Component != nil && cv.Component.Name != "" && cv.Component.Name != component {
		mismatch = append(mismatch, fmt.Sprintf("component %q (path %q)", cv.Component.Name, component))
	}
	if cv.Version != nil && cv.Version.Train != "" && cv.Version.Train != train {
		mismatch = append(mismatch, fmt.Sprintf("train %q (path %q)", cv.Version.Train, train))
	}
	if cv.Version != nil && cv.Version.Version != "" && cv.Version.Version != version {
		mismatch = append(mismatch, fmt.Sprintf("version %q (path %q)", cv.Version.Version, version))
	}
	if len(mismatch) > 0 {
		writeError(w, http.StatusBadRequest, "the body disagrees with the path: "+strings.Join(mismatch, ", "))
		return
	}
	spec, err := releaseSpec(component, train, version, cv, s.opts.Clock.Now())
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	rel := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.nsOf(r.Context()), Name: trainyardv1.ReleaseName(component, train, version)},
		Spec:       spec,
	}
	if errs := validation.ComponentRelease(rel, nil); len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, errs.ToAggregate().Error())
		return
	}
	// A release of this semantic version named before names were canonical
	// is the existing one (the webhook refuses a second).
	existing, err := s.legacyRelease(r, rel)
	if err == nil && existing == nil {
		err = s.api.Create(r.Context(), rel)
		if apierrors.IsAlreadyExists(err) {
			existing = &trainyardv1.ComponentRelease{}
			err = s.apiReader.Get(r.Context(), client.ObjectKeyFromObject(rel), existing)
		}
	}
	if err != nil {
		writeAPIError(w, "publishing the release", err)
		return
	}
	if existing == nil {
		writeJSON(w, http.StatusOK, componentVersionOf(rel))
		return
	}
	// Re-publishing: a retry of the same content is a 200 that answers what
	// is stored; anything else is a 409 that says what differs.
	sentReleased := cv.Version != nil && cv.Version.Released != ""
	if diff := sameRelease(existing.Spec, spec, sentReleased); len(diff) > 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("%s %s is already published on %s as ComponentRelease %q with a different %s; "+
			"a published release does not change (publish a new version)", component, version, train, existing.Name, joinFields(diff)))
		return
	}
	writeJSON(w, http.StatusOK, componentVersionOf(existing))
}

// legacyRelease is the release of rel's semantic version that has another
// name (created before names were canonical), or nil.
func (s *Server) legacyRelease(r *http.Request, rel *trainyardv1.ComponentRelease) (*trainyardv1.ComponentRelease, error) {
	var list trainyardv1.ComponentReleaseList
	if err := s.cache.List(r.Context(), &list, client.InNamespace(s.nsOf(r.Context())), client.MatchingFields{
		index.ReleaseVersion: index.VersionKey(trainyardv1.TrainName(rel.Spec.Component, rel.Spec.Train), rel.Spec.Version)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Name != rel.Name {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func (s *Server) latestV3(w http.ResponseWriter, r *http.Request, p params) {
	s.latest(w, r, trainyardv1.DefaultTrain)
}

// latestV2 is the v2 multi-get, where an empty train meant "beta".
func (s *Server) latestV2(w http.ResponseWriter, r *http.Request, p params) {
	s.latest(w, r, "beta")
}

// latest answers the multi-get: the latest release of exactly the requested
// (component, train) pairs, in request order. An item that carries the
// installed version gets updateAvailable when the latest differs.
func (s *Server) latest(w http.ResponseWriter, r *http.Request, defaultTrain string) {
	var req dataList[multiGetItem]
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Data == nil {
		writeError(w, http.StatusUnprocessableEntity, required("data").Error())
		return
	}
	// At most MaxMultiGetItems: the route's limits stopped reading at the
	// next one.
	// The answer is assembled from each release's JSON, encoded once per
	// release version (the hot path of every agent's poll). An item asked
	// for twice (the same component, train and installed version) is
	// answered once, where it was first asked for.
	recommended := s.recommendations(r)
	var buf bytes.Buffer
	granted := int64(answerStep) // charged with the request (limits.answer)
	buf.Grow(answerStep / 2)
	buf.WriteString(`{"data":[`)
	// Items are told apart by their fields, not by a joined string: "a.b"
	// on train "c" is not "a" on train "b.c".
	type itemKey struct{ component, train, installed string }
	seen := make(map[itemKey]bool, len(req.Data))
	for i, item := range req.Data {
		if item.Component == nil || item.Component.Name == "" {
			writeError(w, http.StatusUnprocessableEntity, required(fmt.Sprintf("data[%d].component.name", i)).Error())
			return
		}
		train, installed := defaultTrain, ""
		if item.Version != nil {
			if item.Version.Train != "" {
				train = item.Version.Train
			}
			installed = item.Version.Version
		}
		if key := (itemKey{item.Component.Name, train, installed}); seen[key] {
			continue
		} else {
			seen[key] = true
		}
		if buf.Len() > maxMultiGetAnswer {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("the answer would be larger than %d bytes; ask for fewer components at once", maxMultiGetAnswer))
			return
		}
		// The answer's memory is charged to the request's level as it grows.
		for int64(buf.Cap()) > granted || int64(buf.Len()+maxReleaseJSON) > granted {
			if !stateOf(r.Context()).grow(answerStep) {
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusTooManyRequests, "the bridge cannot hold a larger answer for this client now; ask for fewer components at once, or retry")
				return
			}
			granted += answerStep
		}
		if len(seen) > 1 {
			buf.WriteByte(',')
		}
		rel, err := s.latestOf(r, item.Component.Name, train)
		switch {
		case apierrors.IsNotFound(err):
			// No latest on that train: the pair is answered without a version.
			b, _ := json.Marshal(wire.ComponentVersion{Component: &wire.Component{Name: item.Component.Name}, Version: &wire.Version{Train: train}})
			buf.Write(b)
			continue
		case err != nil:
			writeAPIError(w, "reading the latest releases", err)
			return
		}
		body := rel.body
		update := offer(recommended, item.Component.Name, train, installed, rel.version)
		if installed != "" && ordering.Canonical(installed) != ordering.Canonical(update) {
			// {...} becomes {...,"updateAvailable":"<target>"}
			v, _ := json.Marshal(update)
			buf.Write(body[:len(body)-1])
			buf.WriteString(`,"updateAvailable":`)
			buf.Write(v)
			buf.WriteByte('}')
			continue
		}
		buf.Write(body)
	}
	buf.WriteString("]}\n")
	writeCacheable(w, r, buf.Bytes())
}

// MaxMultiGetItems bounds the items of one multi-get: as many as a cluster
// may report components.
const MaxMultiGetItems = trainyardv1.MaxClusterComponents

// multiGetItem is what the multi-get reads of an item: names only (the
// rest of a ComponentVersion is never decoded, so its maps cost nothing).
type multiGetItem struct {
	Component *struct {
		Name string `json:"name"`
	} `json:"component"`
	Version *struct {
		Train   string `json:"train"`
		Version string `json:"version"`
	} `json:"version"`
}

// answerStep is how much of a multi-get's answer is charged at a time, and
// maxReleaseJSON the most one release adds to it (description, data and
// image at their limits, escaped).
const (
	answerStep     = 256 << 10
	maxReleaseJSON = 96 << 10
)

// maxMultiGetAnswer bounds a multi-get's answer (releases carry up to about
// 80 KiB of text each).
const maxMultiGetAnswer = 4 << 20

// encodedReleases memoises the wire JSON of releases by UID and
// resourceVersion, so that a release is encoded once per change.
type encodedReleases struct {
	mu sync.RWMutex
	m  map[types.UID]encodedRelease
}

type encodedRelease struct {
	resourceVersion string
	body            []byte
}

func (e *encodedReleases) get(rel *trainyardv1.ComponentRelease) []byte {
	e.mu.RLock()
	got, ok := e.m[rel.UID]
	e.mu.RUnlock()
	if ok && got.resourceVersion == rel.ResourceVersion {
		return got.body
	}
	body, _ := json.Marshal(componentVersionOf(rel))
	e.mu.Lock()
	if e.m == nil || len(e.m) > maxEncodedReleases {
		e.m = map[types.UID]encodedRelease{} // bounded: start over
	}
	e.m[rel.UID] = encodedRelease{resourceVersion: rel.ResourceVersion, body: body}
	e.mu.Unlock()
	return body
}

// offer is the version the multi-get offers a caller that runs installed
// of component on train, latest being the train's latest; recommended are
// the caller's report's recommendations (nil: none).
func offer(recommended map[string]trainyardv1.ComponentStatus, component, train, installed, latest string) string {
	cs, ok := recommended[trainyardv1.TrainName(component, train)]
	switch {
	case ok && installed != "" && ordering.Canonical(cs.Installed) == ordering.Canonical(installed):
		// The caller is a cluster whose report has a recommendation for
		// what it runs: the target its path leads to, or none when every
		// newer release is held back by a risk or unreachable.
		if cs.Recommended == "" {
			return installed
		}
		return cs.Recommended
	case ok && cs.Ring != "":
		// A cluster in a rollout asking about another version than its
		// report has (it just moved): nothing its ring has not opened.
		return installed
	}
	return latest
}

// maxEncodedReleases bounds the memo (only latest releases are asked for).
const maxEncodedReleases = 10000

// recommendations are the caller's report's component states by train,
// when it presents a cluster credential that its report accepts; nil
// otherwise (anonymous and other callers get the train's latest).
func (s *Server) recommendations(r *http.Request) map[string]trainyardv1.ComponentStatus {
	tok := bearer(r)
	if !isCredential(tok) {
		return nil
	}
	rep, err := s.clusterOfCredential(r.Context(), s.nsOf(r.Context()), tok)
	if err != nil || rep == nil {
		return nil
	}
	if ok, _ := credentialAccepted(rep, credentialHash(tok), s.opts.Clock.Now()); !ok {
		return nil
	}
	return recommendationsOf(rep)
}
