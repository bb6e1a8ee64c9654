package notify

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics of the notifier, the same counts as the targets' and rules'
// status. Labels are namespaces and the names of targets and rules (objects
// users create, removed with them), never clusters or event ids.
var (
	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_notification_deliveries_total",
		Help: "Delivery attempts by target and outcome: delivered (2xx), retried (failed, tried again) or dropped (queue full, 4xx, retryFor ran out).",
	}, []string{"namespace", "target", "outcome"})
	suppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_notification_events_suppressed_total",
		Help: "Events a rule did not send on their own because a digest counted them.",
	}, []string{"namespace", "rule"})
	queued = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_notification_queued",
		Help: "Deliveries waiting for a target.",
	}, []string{"namespace", "target"})
	duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trainyard_notification_delivery_duration_seconds",
		Help:    "How long a target's receiver took to answer a delivery.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"namespace", "target"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(deliveries, suppressed, queued, duration)
}

func forgetTargetMetrics(ns, name string) {
	l := map[string]string{"namespace": ns, "target": name}
	deliveries.DeletePartialMatch(l)
	queued.DeletePartialMatch(l)
	duration.DeletePartialMatch(l)
}
