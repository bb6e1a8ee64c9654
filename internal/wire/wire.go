// Package wire is the wire format of the Deis workflow-manager "versions"
// API, which the bridge serves and the agent sends: plain types with JSON
// tags and nothing else, so that a client (the agent) links none of the
// server.
package wire

import (
	"encoding/json"
	"time"
)

// The wire format of the Deis workflow-manager "versions" API: JSON with
// camelCase keys. encoding/json already matches keys case-insensitively and
// ignores unknown ones, as the old service did.

// Component names a component.
type Component struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type,omitempty"`
}

// Version is one version of a component on a train. Data carries
// description, fixes and image, and any extra keys a publisher sends.
type Version struct {
	Train    string            `json:"train,omitempty"`
	Version  string            `json:"version,omitempty"`
	Released string            `json:"released,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
}

// ComponentVersion is a component at a version: a release, or what a
// cluster runs.
type ComponentVersion struct {
	Component       *Component `json:"component,omitempty"`
	Version         *Version   `json:"version,omitempty"`
	UpdateAvailable string     `json:"updateAvailable,omitempty"`
	// Readiness of the component's workload (not in the Deis format; Deis
	// agents send none, and their components' readiness is unknown).
	Readiness *Readiness `json:"readiness,omitempty"`
}

// Readiness is how many of a workload's replicas are ready, and since when
// it is ready or not (by the agent's clock; omitted when unknown).
type Readiness struct {
	Ready   int32      `json:"ready"`
	Desired int32      `json:"desired"`
	Since   *time.Time `json:"since,omitempty"`
}

// Cluster is a cluster's check-in.
type Cluster struct {
	ID         string             `json:"id"`
	FirstSeen  *time.Time         `json:"firstSeen,omitempty"`
	LastSeen   *time.Time         `json:"lastSeen,omitempty"`
	Components []ComponentVersion `json:"components"`
	// Properties describe the cluster (kubernetesVersion, nodes, provider).
	// Not in the Deis format; its services ignore the key.
	Properties map[string]string `json:"properties,omitempty"`
}

// Error is every error answer: {"code": <status>, "message": "..."}.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// RequestID is the answer's X-Request-ID, to find the request in the
	// bridge's logs (not in Deis' answers; its clients ignore it).
	RequestID string `json:"requestId,omitempty"`
}

// DoctorReport is a diagnostic dump: the cluster as the agent sees it, its
// nodes and namespaces (kept as sent).
type DoctorReport struct {
	Workflow   *Cluster        `json:"workflow"`
	Nodes      json.RawMessage `json:"nodes"`
	Namespaces json.RawMessage `json:"namespaces"`
}

// Keys of Version.Data with a meaning of their own; any other key is kept
// as sent.
const (
	DataDescription = "description"
	DataFixes       = "fixes"
	DataImage       = "image"
	// DataSignatureBundle is a Sigstore bundle signing the image's digest
	// (ComponentRelease spec.signatureBundle): accepted on publish, never
	// served back (it is on the ComponentRelease).
	DataSignatureBundle = "signatureBundle"
)
