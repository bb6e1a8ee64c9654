package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The bridge's Prometheus metrics: requests, refusals, limiter sizes.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_requests_total",
		Help: "Bridge requests by route and status code.",
	}, []string{"route", "code"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trainyard_bridge_request_duration_seconds",
		Help:    "Bridge request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route"})
	shedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_shed_requests_total",
		Help: "Requests refused to protect the bridge: rate_limit and auth_failures (429), in_flight and client_in_flight (503), slow_body (408).",
	}, []string{"reason"})
	authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_auth_failures_total",
		Help: "Requests refused for authentication or authorization, by reason.",
	}, []string{"reason"})
	heldRefusalsFull = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trainyard_bridge_refusals_not_held_total",
		Help: "429 answers sent at once because as many refusals as may be were already held (--bridge-refusal-delay).",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(requestsTotal, requestSeconds, shedTotal, authFailures, heldRefusalsFull)
}
