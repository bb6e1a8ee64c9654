// Package osv reads vulnerability records in the OSV format
// (https://ossf.github.io/osv-schema/) and decides which versions they
// affect. It is pure: the Advisory kind, its import command and the
// exposure controller build on it (issue 30).
package osv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// MaxDocumentBytes bounds a document read by Decode: the largest records of
// the public databases are well under 1 MiB.
const MaxDocumentBytes = 4 << 20

// Document is the part of an OSV record trainyard keeps. Fields it does not
// use (ecosystem_specific, database_specific, credits) are dropped.
type Document struct {
	SchemaVersion string      `json:"schema_version,omitempty"`
	ID            string      `json:"id"`
	Modified      string      `json:"modified,omitempty"`
	Published     string      `json:"published,omitempty"`
	Withdrawn     string      `json:"withdrawn,omitempty"`
	Aliases       []string    `json:"aliases,omitempty"`
	Related       []string    `json:"related,omitempty"`
	Summary       string      `json:"summary,omitempty"`
	Details       string      `json:"details,omitempty"`
	Severity      []Severity  `json:"severity,omitempty"`
	Affected      []Affected  `json:"affected,omitempty"`
	References    []Reference `json:"references,omitempty"`
}

// Severity is a scoring system (CVSS_V3, CVSS_V4, ...) and its vector.
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Affected is one package's affected versions.
type Affected struct {
	Package  Package    `json:"package"`
	Severity []Severity `json:"severity,omitempty"`
	Ranges   []Range    `json:"ranges,omitempty"`
	Versions []string   `json:"versions,omitempty"`
}

// Package names a package in an ecosystem.
type Package struct {
	Ecosystem string `json:"ecosystem,omitempty"`
	Name      string `json:"name,omitempty"`
	PURL      string `json:"purl,omitempty"`
}

// Range is a list of events over ordered versions.
type Range struct {
	Type   string  `json:"type"`
	Repo   string  `json:"repo,omitempty"`
	Events []Event `json:"events"`
}

// Event is one of introduced, fixed, last_affected or limit.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// Reference is a link with its kind (ADVISORY, FIX, WEB, ...).
type Reference struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

// Range types.
const (
	RangeSemver    = "SEMVER"
	RangeEcosystem = "ECOSYSTEM"
	RangeGit       = "GIT"
)

// Decode reads one OSV document of at most MaxDocumentBytes from r. A
// document with no id, a range with no events, or an event that is not
// exactly one of its four kinds is refused, naming where.
func Decode(r io.Reader) (*Document, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxDocumentBytes {
		return nil, fmt.Errorf("the document is larger than %d bytes", MaxDocumentBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("not an OSV document: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not an OSV document: data after the JSON object")
	}
	return &d, d.Check()
}

// Check names the first structural fault of d.
func (d *Document) Check() error {
	if strings.TrimSpace(d.ID) == "" {
		return errors.New("id: required")
	}
	for i, a := range d.Affected {
		for j, r := range a.Ranges {
			at := fmt.Sprintf("affected[%d].ranges[%d]", i, j)
			if r.Type == "" {
				return fmt.Errorf("%s.type: required", at)
			}
			if len(r.Events) == 0 {
				return fmt.Errorf("%s.events: required", at)
			}
			for k, e := range r.Events {
				if n := e.kinds(); n != 1 {
					return fmt.Errorf("%s.events[%d]: must have exactly one of introduced, fixed, last_affected or limit, has %d", at, k, n)
				}
			}
		}
	}
	return nil
}

func (e Event) kinds() int {
	n := 0
	for _, s := range []string{e.Introduced, e.Fixed, e.LastAffected, e.Limit} {
		if s != "" {
			n++
		}
	}
	return n
}

// version is an event's version; "0" (introduced at the start) is nil.
func (e Event) version() string {
	return e.Introduced + e.Fixed + e.LastAffected + e.Limit
}

// ErrUnordered is returned for a range whose versions trainyard cannot
// order: GIT ranges (commits), and versions that are not semantic versions.
var ErrUnordered = errors.New("the range's versions are not semantic versions")

// Affects tells whether version v falls in the range, as the OSV schema's
// evaluation defines it: events sorted by version (introduced "0" first),
// introduced opens, fixed closes before its version, last_affected after
// its version; with limit events, only versions below one of them can be
// affected.
func (r Range) Affects(v string) (bool, error) {
	if r.Type != RangeSemver && r.Type != RangeEcosystem {
		return false, ErrUnordered
	}
	sv, err := ordering.Parse(v)
	if err != nil {
		return false, fmt.Errorf("%q: %w", v, ErrUnordered)
	}
	type ev struct {
		e Event
		v *semver.Version // nil: introduced "0"
	}
	evs := make([]ev, 0, len(r.Events))
	// With limits, a version must be below one of them ("*": no limit).
	limited, belowALimit := false, false
	for _, e := range r.Events {
		if e.Introduced == "0" || e.Limit == "*" {
			if e.Introduced == "0" {
				evs = append(evs, ev{e: e})
			}
			continue
		}
		pv, err := ordering.Parse(e.version())
		if err != nil {
			return false, fmt.Errorf("event %q: %w", e.version(), ErrUnordered)
		}
		if e.Limit != "" {
			limited = true
			belowALimit = belowALimit || sv.LessThan(pv)
			continue
		}
		evs = append(evs, ev{e, pv})
	}
	if limited && !belowALimit {
		return false, nil
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		switch {
		case a.v == nil && b.v == nil:
			return 0
		case a.v == nil:
			return -1
		case b.v == nil:
			return 1
		}
		return a.v.Compare(b.v)
	})
	affected := false
	for _, x := range evs {
		switch {
		case x.e.Introduced != "":
			if x.v == nil || sv.Compare(x.v) >= 0 {
				affected = true
			}
		case x.e.Fixed != "":
			if sv.Compare(x.v) >= 0 {
				affected = false
			}
		case x.e.LastAffected != "":
			if sv.Compare(x.v) > 0 {
				affected = false
			}
		}
	}
	return affected, nil
}

// Fixed lists the range's fixed versions, as given.
func (r Range) Fixed() []string {
	var out []string
	for _, e := range r.Events {
		if e.Fixed != "" {
			out = append(out, e.Fixed)
		}
	}
	return out
}

// Affects tells whether version v of the package is affected: listed in
// versions, or in one of the ranges trainyard can order. A range it cannot
// order is an error only when nothing else decided.
func (a Affected) Affects(v string) (bool, error) {
	sv, verr := ordering.Parse(v)
	for _, listed := range a.Versions {
		if listed == v {
			return true, nil
		}
		if lv, err := ordering.Parse(listed); err == nil && verr == nil && lv.Equal(sv) {
			return true, nil
		}
	}
	var unordered error
	for _, r := range a.Ranges {
		ok, err := r.Affects(v)
		if err != nil {
			unordered = err
			continue
		}
		if ok {
			return true, nil
		}
	}
	return false, unordered
}
