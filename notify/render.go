package notify

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// CloudEvent is a CloudEvents 1.0 event in structured JSON mode, the body a
// CloudEvents target receives and the form a queued delivery is kept in.
type CloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	// Severity is an extension attribute: info, warning or critical.
	Severity string `json:"severity"`
	Data     Data   `json:"data"`
}

// Data is a delivery's payload: the events it reports (the first
// MaxDigestEvents of them) and their count.
type Data struct {
	Namespace string  `json:"namespace"`
	Rule      string  `json:"rule"`
	Count     int     `json:"count"`
	Summary   string  `json:"summary"`
	Events    []Event `json:"events"`
	// Omitted counts the events not listed.
	Omitted int `json:"omitted,omitempty"`
}

// ContentType of a CloudEvents structured-mode body.
const ContentType = "application/cloudevents+json; charset=utf-8"

// batch is the events of one type a rule sends in one delivery.
type batch struct {
	typ    trainyardv1.EventType
	count  int
	first  []Event  // the first MaxDigestEvents
	sum    *big.Int // sum of the members' id hashes: the digest's id, in any order
	newest time.Time
	sev    trainyardv1.Severity
}

func newBatch(t trainyardv1.EventType) *batch { return &batch{typ: t, sum: new(big.Int)} }

func (b *batch) add(e Event) {
	b.count++
	if len(b.first) < trainyardv1.MaxDigestEvents {
		b.first = append(b.first, e)
	}
	h := sha256.Sum256([]byte(e.ID))
	b.sum.Add(b.sum, new(big.Int).SetBytes(h[:]))
	if e.Time.After(b.newest) {
		b.newest = e.Time
	}
	if e.Severity.Rank() > b.sev.Rank() {
		b.sev = e.Severity
	}
}

// id is the single event's id, or a digest's: derived from the set of its
// members' ids, so the same transitions give the same id.
func (b *batch) id() string {
	if b.count == 1 {
		return b.first[0].ID
	}
	return eventID("digest", string(b.typ), fmt.Sprint(b.count), b.sum.Text(16))
}

// cloudEvent renders the batch for a rule in namespace ns.
func (b *batch) cloudEvent(ns, rule string) CloudEvent {
	ce := CloudEvent{
		SpecVersion: "1.0", ID: b.id(), Source: "/apis/trainyard.dev/v1alpha1/namespaces/" + ns,
		Type: string(b.typ), Time: b.newest.UTC().Format(time.RFC3339), DataContentType: "application/json",
		Severity: string(b.sev),
		Data:     Data{Namespace: ns, Rule: rule, Count: b.count, Events: slices.Clone(b.first), Omitted: b.count - len(b.first)},
	}
	if b.count == 1 {
		ce.Subject = b.first[0].Subject
		ce.Data.Summary = b.first[0].Summary
	} else {
		ce.Data.Summary = digestSummary(b.typ, b.count, b.first)
	}
	return ce
}

var digestPhrases = map[trainyardv1.EventType]string{
	trainyardv1.EventReleaseLatest:           "%d trains have a new latest release",
	trainyardv1.EventReleaseRetracted:        "%d releases were retracted",
	trainyardv1.EventClusterStale:            "%d clusters stopped checking in",
	trainyardv1.EventClusterRecovered:        "%d clusters check in again",
	trainyardv1.EventClusterBehind:           "%d clusters fell behind",
	trainyardv1.EventClusterRunningRetracted: "%d clusters run a retracted release",
	trainyardv1.EventRolloutRingOpened:       "%d rollout rings opened a release",
	trainyardv1.EventRolloutHalted:           "%d rollouts halted",
	trainyardv1.EventRolloutResumed:          "%d rollouts resumed",
	trainyardv1.EventAdvisoryExposed:         "%d clusters run a version an advisory affects",
	trainyardv1.EventAdvisoryResolved:        "%d advisories expose no cluster any more",
	trainyardv1.EventReleaseUnverified:       "%d releases are not verified",
}

func digestSummary(t trainyardv1.EventType, n int, first []Event) string {
	names := make([]string, len(first))
	for i, e := range first {
		names[i] = nameOf(e)
	}
	s := fmt.Sprintf(digestPhrases[t], n) + ": " + strings.Join(names, ", ")
	if n > len(first) {
		s += fmt.Sprintf(" and %d more", n-len(first))
	}
	return s
}

func nameOf(e Event) string {
	if e.Cluster != "" {
		return e.Cluster
	}
	return fmt.Sprintf("%s %s (%s)", e.Component, e.Version, e.Train)
}

// Body renders a queued delivery for a target type: the CloudEvent itself,
// or a chat message made from it.
func Body(t trainyardv1.NotificationTargetType, event string) ([]byte, string, error) {
	if t == trainyardv1.TargetCloudEvents || t == "" {
		return []byte(event), ContentType, nil
	}
	var ce CloudEvent
	if err := json.Unmarshal([]byte(event), &ce); err != nil {
		return nil, "", fmt.Errorf("queued event does not decode: %w", err)
	}
	var msg any
	switch t {
	case trainyardv1.TargetSlack:
		msg = slackMessage(ce)
	case trainyardv1.TargetMSTeams:
		msg = teamsMessage(ce)
	default:
		return nil, "", fmt.Errorf("unknown target type %q", t)
	}
	b, err := json.Marshal(msg)
	return b, "application/json", err
}

var slackColors = map[string]string{"info": "#2eb67d", "warning": "#ecb22e", "critical": "#e01e5a"}

func title(ce CloudEvent) string {
	return fmt.Sprintf("[%s] %s", ce.Severity, strings.TrimPrefix(ce.Type, "dev.trainyard."))
}

func lines(ce CloudEvent) []string {
	var out []string
	for _, e := range ce.Data.Events {
		out = append(out, e.Summary)
	}
	if ce.Data.Omitted > 0 {
		out = append(out, fmt.Sprintf("… and %d more", ce.Data.Omitted))
	}
	return out
}

// slackMessage is an incoming-webhook message: text for notifications and
// clients without attachments, one attachment with the details.
func slackMessage(ce CloudEvent) map[string]any {
	details := ""
	if ce.Data.Count > 1 {
		details = strings.Join(lines(ce), "\n")
	}
	return map[string]any{
		"text": fmt.Sprintf("%s: %s", title(ce), ce.Data.Summary),
		"attachments": []map[string]any{{
			"color":  slackColors[ce.Severity],
			"text":   details,
			"footer": fmt.Sprintf("trainyard · %s/%s · id %s", ce.Data.Namespace, ce.Data.Rule, ce.ID),
			"fields": []map[string]any{
				{"title": "Namespace", "value": ce.Data.Namespace, "short": true},
				{"title": "Events", "value": fmt.Sprint(ce.Data.Count), "short": true},
			},
		}},
	}
}

// teamsMessage is a Teams workflow message carrying an Adaptive Card.
func teamsMessage(ce CloudEvent) map[string]any {
	body := []map[string]any{
		{"type": "TextBlock", "text": title(ce), "weight": "Bolder", "size": "Medium", "wrap": true},
		{"type": "TextBlock", "text": ce.Data.Summary, "wrap": true},
	}
	if ce.Data.Count > 1 {
		for _, l := range lines(ce) {
			body = append(body, map[string]any{"type": "TextBlock", "text": "- " + l, "wrap": true, "spacing": "None"})
		}
	}
	body = append(body, map[string]any{"type": "FactSet", "facts": []map[string]string{
		{"title": "Namespace", "value": ce.Data.Namespace},
		{"title": "Rule", "value": ce.Data.Rule},
		{"title": "Events", "value": fmt.Sprint(ce.Data.Count)},
		{"title": "Id", "value": ce.ID},
	}})
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard", "version": "1.4", "body": body,
			},
		}},
	}
}
