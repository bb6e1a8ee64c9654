package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/osv"
)

// Gauges on the manager's metrics endpoint. Cardinality is bounded: labels
// are namespaces, components, trains and at most MaxAdoptionVersions+1
// versions per train ("other" for the rest), never clusters. Reconcile errors
// are controller-runtime's controller_runtime_reconcile_errors_total.
var (
	latestInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_train_latest_info",
		Help: "The latest release of each (component, train): 1 for the version that is latest.",
	}, []string{"namespace", "component", "train", "version"})
	trainClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_train_clusters",
		Help: "Clusters running each version of a (component, train); versions beyond the most used are \"other\".",
	}, []string{"namespace", "component", "train", "version"})
	trainClustersBehind = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_train_clusters_behind",
		Help: "Clusters following a (component, train) that do not run its latest release.",
	}, []string{"namespace", "component", "train"})
	clustersStale = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_clusters_stale",
		Help: "Clusters that have not checked in within the stale threshold.",
	}, []string{"namespace"})
	clustersRetracted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_clusters_running_retracted",
		Help: "Clusters running at least one retracted release.",
	}, []string{"namespace"})
	ringClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_rollout_ring_clusters",
		Help: "Non-stale clusters in each ring of a train's rollout, labelled with the ring's state (Waiting, Soaking, Open, Halted).",
	}, []string{"namespace", "component", "train", "ring", "state"})
	ringOnVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_rollout_ring_on_version",
		Help: "Clusters of each ring that run the rolling release and are ready (or report no readiness).",
	}, []string{"namespace", "component", "train", "ring", "version"})
	clustersExposed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_clusters_exposed",
		Help: "Clusters that run a version an advisory affects, with no risk acceptance in force for it; severity is the advisory's CVSS rating (Unknown without a score).",
	}, []string{"namespace", "advisory", "severity"})
	releasesUnverified = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_releases_unverified",
		Help: "Releases of a (component, train) a TrustPolicy covers whose signature does not verify (retracted ones left out).",
	}, []string{"namespace", "component", "train"})
	verifications = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trainyard_release_verifications_total",
		Help: "Signature verifications performed (each digest and bundle once per policy generation and key change; cached results are not counted).",
	})
	rolloutHalted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_rollout_halted",
		Help: "1 while a train's rollout is halted (a retraction, or clusters not ready on the release).",
	}, []string{"namespace", "component", "train", "version"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(latestInfo, trainClusters, trainClustersBehind, clustersStale, clustersRetracted,
		ringClusters, ringOnVersion, rolloutHalted, clustersExposed, releasesUnverified, verifications)
}

// exposedSeries keeps the labels each advisory's series was last set with,
// so that an edit of its ID or severity replaces the series, not adds one.
type exposedSeries struct {
	mu   sync.Mutex
	last map[types.NamespacedName]prometheus.Labels
}

// record sets an advisory's series (a withdrawn advisory has none).
func (s *exposedSeries) record(key types.NamespacedName, adv *trainyardv1.Advisory, clusters int32) {
	s.forget(key)
	if adv.Spec.Withdrawn != nil {
		return
	}
	_, rating, _ := osv.SeverityOf(&adv.Spec)
	l := prometheus.Labels{"namespace": key.Namespace, "advisory": adv.Spec.ID, "severity": rating}
	clustersExposed.With(l).Set(float64(clusters))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[types.NamespacedName]prometheus.Labels{}
	}
	s.last[key] = l
}

// forget deletes an advisory's series.
func (s *exposedSeries) forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.last[key]; ok {
		clustersExposed.Delete(l)
		delete(s.last, key)
	}
}

// recordRollout replaces a train's rollout series (at most MaxRings rings).
func recordRollout(ns, component, train string, st *trainyardv1.RolloutStatus) {
	l := prometheus.Labels{"namespace": ns, "component": component, "train": train}
	ringClusters.DeletePartialMatch(l)
	ringOnVersion.DeletePartialMatch(l)
	rolloutHalted.DeletePartialMatch(l)
	if st == nil {
		return
	}
	for _, r := range st.Rings {
		ringClusters.WithLabelValues(ns, component, train, r.Name, string(r.State)).Set(float64(r.Clusters))
		ringOnVersion.WithLabelValues(ns, component, train, r.Name, st.Version).Set(float64(r.OnVersion))
	}
	halted := 0.0
	if st.Phase == trainyardv1.RolloutHalted {
		halted = 1
	}
	rolloutHalted.WithLabelValues(ns, component, train, st.Version).Set(halted)
}

// recordTrain replaces a train's series with its current status.
func recordTrain(ns, component, train string, st *trainyardv1.ReleaseTrainStatus) {
	forgetTrain(ns, component, train)
	if st == nil {
		return
	}
	if st.Latest != nil {
		latestInfo.WithLabelValues(ns, component, train, st.Latest.Version).Set(1)
	}
	if a := st.Adoption; a != nil {
		for _, v := range a.Versions {
			trainClusters.WithLabelValues(ns, component, train, v.Version).Set(float64(v.Clusters))
		}
		if a.OtherVersions > 0 {
			trainClusters.WithLabelValues(ns, component, train, "other").Set(float64(a.OtherVersions))
		}
		trainClustersBehind.WithLabelValues(ns, component, train).Set(float64(a.Behind))
	}
}

func forgetTrain(ns, component, train string) {
	l := prometheus.Labels{"namespace": ns, "component": component, "train": train}
	latestInfo.DeletePartialMatch(l)
	trainClusters.DeletePartialMatch(l)
	trainClustersBehind.DeletePartialMatch(l)
}

// fleetFlags counts stale clusters and clusters running retracted releases
// per namespace, from each report's last reconciled state.
type fleetFlags struct {
	mu    sync.Mutex
	flags map[types.NamespacedName][2]bool // stale, retracted
}

func newFleetFlags() *fleetFlags {
	return &fleetFlags{flags: map[types.NamespacedName][2]bool{}}
}

// set records a report's state; deleted reports pass false, false.
func (f *fleetFlags) set(key types.NamespacedName, stale, retracted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.flags[key]
	adjust := func(g *prometheus.GaugeVec, was, is bool) {
		switch {
		case is && !was:
			g.WithLabelValues(key.Namespace).Inc()
		case was && !is:
			g.WithLabelValues(key.Namespace).Dec()
		}
	}
	adjust(clustersStale, old[0], stale)
	adjust(clustersRetracted, old[1], retracted)
	if stale || retracted {
		f.flags[key] = [2]bool{stale, retracted}
	} else {
		delete(f.flags, key)
	}
}
