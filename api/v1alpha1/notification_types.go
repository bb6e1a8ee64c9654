package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NotificationTargetType is the wire format a target receives.
// +kubebuilder:validation:Enum=CloudEvents;Slack;MSTeams
type NotificationTargetType string

const (
	// TargetCloudEvents: a generic webhook receiving CloudEvents 1.0 in
	// structured JSON mode (Content-Type application/cloudevents+json).
	TargetCloudEvents NotificationTargetType = "CloudEvents"
	// TargetSlack: a Slack-compatible incoming webhook (Slack, Mattermost,
	// Rocket.Chat): a message with text and one attachment.
	TargetSlack NotificationTargetType = "Slack"
	// TargetMSTeams: a Microsoft Teams workflow ("incoming webhook") that
	// takes a message with an Adaptive Card.
	TargetMSTeams NotificationTargetType = "MSTeams"
)

// Keys of a NotificationTarget's Secret.
const (
	// SecretKeyURL is the https (or http) address deliveries are posted to.
	SecretKeyURL = "url"
	// SecretKeySigningKey signs every delivery with HMAC-SHA256 as Standard
	// Webhooks do: "whsec_" and base64, or any other bytes used as they are.
	SecretKeySigningKey = "signingKey"
	// SecretKeyCA is a PEM bundle the receiver's certificate is verified
	// with instead of the system roots.
	SecretKeyCA = "ca.crt"
)

// Limits and defaults of notifications.
const (
	// DefaultDigestWindow is a rule's spec.digestWindow when unset.
	DefaultDigestWindow = "30s"
	// DefaultQueueLimit is a target's spec.queueLimit when unset.
	DefaultQueueLimit = 100
	// MaxQueueLimit is the largest spec.queueLimit: deliveries waiting are
	// kept in the rules' status, which must stay far below etcd's 1.5 MB.
	MaxQueueLimit = 200
	// DefaultDeliveryTimeout is a target's spec.timeout when unset.
	DefaultDeliveryTimeout = "10s"
	// DefaultRetryFor is a target's spec.retryFor when unset.
	DefaultRetryFor = "6h"
	// MaxDigestEvents is how many events a delivery lists; a digest of more
	// counts the rest.
	MaxDigestEvents = 10
	// MaxRuleSelectors bounds each name list of a rule.
	MaxRuleSelectors = 64
)

// NotificationTargetSpec says where and how notifications are delivered.
type NotificationTargetSpec struct {
	// type of the receiver: CloudEvents (a generic webhook), Slack (a
	// Slack-compatible incoming webhook) or MSTeams (a Teams workflow webhook).
	// +required
	Type NotificationTargetType `json:"type"`

	// secretRef names a Secret in this namespace: key "url" (required) is the
	// address; "signingKey" (optional) signs deliveries (Standard Webhooks
	// HMAC-SHA256 headers webhook-id, webhook-timestamp, webhook-signature);
	// "ca.crt" (optional) verifies the receiver's certificate.
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`

	// timeout of one delivery attempt, 1s to 60s. Defaults to 10s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// retryFor is how long a failing delivery is retried (with backoff, or
	// when the receiver's Retry-After says) before it is dropped, 1m to 168h.
	// Defaults to 6h.
	// +optional
	RetryFor *metav1.Duration `json:"retryFor,omitempty"`

	// queueLimit bounds the deliveries waiting for this target, over all its
	// rules; beyond it new ones are dropped and counted. 1 to 200, default 100.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=200
	QueueLimit int32 `json:"queueLimit,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// DeliveryCounts count what happened to a target's or rule's notifications
// since it was created.
type DeliveryCounts struct {
	// delivered: deliveries the receiver accepted (2xx).
	// +optional
	Delivered int64 `json:"delivered,omitempty"`
	// retried: attempts that failed and were tried again.
	// +optional
	Retried int64 `json:"retried,omitempty"`
	// dropped: deliveries given up (the queue was full, retryFor ran out, or
	// the receiver refused them with a 4xx).
	// +optional
	Dropped int64 `json:"dropped,omitempty"`
	// suppressed: events not sent on their own because a digest counted them.
	// +optional
	Suppressed int64 `json:"suppressed,omitempty"`
}

// DeliveryAttempt records one delivery attempt's outcome.
type DeliveryAttempt struct {
	// time of the attempt.
	Time metav1.Time `json:"time"`
	// id of the CloudEvent delivered (empty for a reachability check).
	// +optional
	ID string `json:"id,omitempty"`
	// type of the event delivered (empty for a reachability check).
	// +optional
	Type string `json:"type,omitempty"`
	// statusCode the receiver answered; 0 when it did not answer.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`
	// message says what went wrong (empty for a success).
	// +optional
	Message string `json:"message,omitempty"`
}

// NotificationTargetStatus is the target's health and delivery record.
type NotificationTargetStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (the Secret resolves, the receiver is reachable and
	// accepted the last delivery), Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// lastDelivery is the last delivery the receiver accepted.
	// +optional
	LastDelivery *DeliveryAttempt `json:"lastDelivery,omitempty"`
	// lastError is the last attempt that failed, or the failed reachability
	// check.
	// +optional
	LastError *DeliveryAttempt `json:"lastError,omitempty"`
	// counts of deliveries by outcome.
	// +optional
	Counts DeliveryCounts `json:"counts,omitzero"`
	// queued is the number of deliveries waiting for this target.
	// +optional
	Queued int32 `json:"queued,omitempty"`
}

// NotificationTarget is a receiver of notifications: a generic CloudEvents
// webhook, a Slack-compatible or a Microsoft Teams incoming webhook.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ntarget,categories=trainyard
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.counts.delivered`
// +kubebuilder:printcolumn:name="Dropped",type=integer,JSONPath=`.status.counts.dropped`
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.queued`
// +kubebuilder:printcolumn:name="Last-Error",type=string,JSONPath=`.status.lastError.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NotificationTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says where to deliver.
	// +required
	Spec NotificationTargetSpec `json:"spec"`

	// status is written by the manager.
	// +optional
	Status NotificationTargetStatus `json:"status,omitempty"`
}

// NotificationTargetList is a list of NotificationTargets.
// +kubebuilder:object:root=true
type NotificationTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NotificationTarget `json:"items"`
}

// EventType is the CloudEvents type of a notification.
// +kubebuilder:validation:Enum=dev.trainyard.release.latest;dev.trainyard.release.retracted;dev.trainyard.cluster.stale;dev.trainyard.cluster.recovered;dev.trainyard.cluster.behind;dev.trainyard.cluster.running-retracted;dev.trainyard.rollout.ring-opened;dev.trainyard.rollout.halted;dev.trainyard.rollout.resumed;dev.trainyard.advisory.exposed;dev.trainyard.advisory.resolved;dev.trainyard.release.unverified
type EventType string

const (
	// EventReleaseLatest: a train has a new latest release.
	EventReleaseLatest EventType = "dev.trainyard.release.latest"
	// EventReleaseRetracted: a release was retracted (warning while clusters
	// still run it).
	EventReleaseRetracted EventType = "dev.trainyard.release.retracted"
	// EventClusterStale: a cluster stopped checking in.
	EventClusterStale EventType = "dev.trainyard.cluster.stale"
	// EventClusterRecovered: a stale cluster checked in again.
	EventClusterRecovered EventType = "dev.trainyard.cluster.recovered"
	// EventClusterBehind: a cluster fell behind its trains' latest.
	EventClusterBehind EventType = "dev.trainyard.cluster.behind"
	// EventClusterRunningRetracted: a cluster runs a retracted release.
	EventClusterRunningRetracted EventType = "dev.trainyard.cluster.running-retracted"
	// EventRolloutRingOpened: a ring of a train's rollout opened a release.
	EventRolloutRingOpened EventType = "dev.trainyard.rollout.ring-opened"
	// EventRolloutHalted: a train's rollout halted (a retraction, or
	// clusters not ready on the release).
	EventRolloutHalted EventType = "dev.trainyard.rollout.halted"
	// EventRolloutResumed: a halted rollout's cause cleared.
	EventRolloutResumed EventType = "dev.trainyard.rollout.resumed"
	// EventAdvisoryExposed: a cluster runs a version an advisory affects
	// (one event per cluster and advisory).
	EventAdvisoryExposed EventType = "dev.trainyard.advisory.exposed"
	// EventAdvisoryResolved: an advisory that exposed clusters exposes none
	// any more.
	EventAdvisoryResolved EventType = "dev.trainyard.advisory.resolved"
	// EventReleaseUnverified: a release a TrustPolicy covers does not
	// verify (a warning: it is never latest or recommended).
	EventReleaseUnverified EventType = "dev.trainyard.release.unverified"
)

// EventTypes lists every event type.
var EventTypes = []EventType{EventReleaseLatest, EventReleaseRetracted, EventClusterStale,
	EventClusterRecovered, EventClusterBehind, EventClusterRunningRetracted,
	EventRolloutRingOpened, EventRolloutHalted, EventRolloutResumed,
	EventAdvisoryExposed, EventAdvisoryResolved, EventReleaseUnverified}

// Severity orders events for a rule's minSeverity.
// +kubebuilder:validation:Enum=info;warning;critical
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: info < warning < critical (unknown: 0).
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityWarning:
		return 2
	case SeverityCritical:
		return 3
	}
	return 0
}

// NotificationRuleSpec says which events go to a target.
type NotificationRuleSpec struct {
	// targetRef names the NotificationTarget in this namespace.
	// +required
	TargetRef LocalObjectReference `json:"targetRef"`

	// eventTypes to send; empty: all of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	EventTypes []EventType `json:"eventTypes,omitempty"`

	// minSeverity of the events to send: info (all), warning or critical.
	// Defaults to info.
	// +optional
	// +kubebuilder:default=info
	MinSeverity Severity `json:"minSeverity,omitempty"`

	// components: only events about these components (a cluster's events
	// when it runs one of them); empty: any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Components []string `json:"components,omitempty"`

	// trains: only events about these trains (stable, beta, ...); empty: any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Trains []string `json:"trains,omitempty"`

	// clusters: only cluster events of these cluster IDs; empty: any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Clusters []string `json:"clusters,omitempty"`

	// clusterSelector: only cluster events of ClusterReports with these labels.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// releaseSelector: only release events of ComponentReleases with these labels.
	// +optional
	ReleaseSelector *metav1.LabelSelector `json:"releaseSelector,omitempty"`

	// digestWindow: the first event after a quiet spell is sent at once;
	// the events of the next digestWindow are sent together, one delivery per
	// event type with their count and the first names. 1s to 1h, default 30s.
	// +optional
	DigestWindow *metav1.Duration `json:"digestWindow,omitempty"`

	// suspend stops sending; events meanwhile are not sent later.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// QueuedDelivery is a delivery waiting to be accepted by the target. It is
// kept in the rule's status so that a restart or a new leader delivers it
// with the same id.
type QueuedDelivery struct {
	// id of the CloudEvent, derived from the transitions it reports.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// type of the event.
	// +kubebuilder:validation:MaxLength=64
	Type string `json:"type"`
	// count of the events the delivery reports.
	Count int32 `json:"count"`
	// queued is when the delivery was queued; retryFor counts from here.
	Queued metav1.Time `json:"queued"`
	// attempts made so far.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// nextAttempt is the earliest time of the next attempt.
	// +optional
	NextAttempt *metav1.MicroTime `json:"nextAttempt,omitempty"`
	// event is the CloudEvent in structured JSON; chat targets get it
	// rendered as a message.
	// +kubebuilder:validation:MaxLength=32768
	Event string `json:"event"`
}

// NotificationRuleStatus is the rule's delivery record and its queue.
type NotificationRuleStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (the target exists and accepted the last delivery),
	// Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// lastDelivery is the last delivery the receiver accepted.
	// +optional
	LastDelivery *DeliveryAttempt `json:"lastDelivery,omitempty"`
	// lastError is the last attempt that failed.
	// +optional
	LastError *DeliveryAttempt `json:"lastError,omitempty"`
	// counts of deliveries by outcome.
	// +optional
	Counts DeliveryCounts `json:"counts,omitzero"`
	// handledThrough: transitions up to this time are delivered or queued.
	// After a restart, later ones are looked at again.
	// +optional
	HandledThrough *metav1.Time `json:"handledThrough,omitempty"`
	// handledAt are the ids of the transitions stamped with handledThrough's
	// own second that are delivered or queued: times have a second's
	// precision, and another transition of that second is looked at again
	// after a restart. Absent when there were more than fit: then every
	// transition of that second counts as handled.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	HandledAt []string `json:"handledAt,omitempty"`
	// recentIDs are the ids of the last deliveries accepted, so that a
	// restart does not send them again.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	RecentIDs []string `json:"recentIDs,omitempty"`
	// queue holds the deliveries not yet accepted, oldest first.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=200
	Queue []QueuedDelivery `json:"queue,omitempty"`
}

// NotificationRule selects the events sent to a NotificationTarget.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nrule,categories=trainyard
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Min-Severity",type=string,JSONPath=`.spec.minSeverity`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.counts.delivered`
// +kubebuilder:printcolumn:name="Suppressed",type=integer,JSONPath=`.status.counts.suppressed`
// +kubebuilder:printcolumn:name="Last-Delivery",type=date,JSONPath=`.status.lastDelivery.time`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NotificationRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec selects the events.
	// +required
	Spec NotificationRuleSpec `json:"spec"`

	// status is written by the manager.
	// +optional
	Status NotificationRuleStatus `json:"status,omitempty"`
}

// NotificationRuleList is a list of NotificationRules.
// +kubebuilder:object:root=true
type NotificationRuleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NotificationRule `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NotificationTarget{}, &NotificationTargetList{},
		&NotificationRule{}, &NotificationRuleList{})
}
