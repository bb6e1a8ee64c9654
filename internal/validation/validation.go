// Package validation holds the rules of every trainyard object as pure
// functions: objects in, field.ErrorList out, no API access (as Kueue keeps
// its webhooks' rules). The admission webhook and the bridge both call them,
// and neither has to import the other for them.
package validation

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/validation"
	apivalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// The validation below is pure: objects in, field.ErrorList out. The CRD
// schema already enforces most bounds; repeating them here gives one message
// per problem with its exact field path, also for clients that reach the
// webhook first, and covers what the schema cannot express.

var (
	specPath     = field.NewPath("spec")
	metadataName = field.NewPath("metadata", "name")
	// dataKey is the format of spec.data and spec.properties keys (the
	// ConfigMap key alphabet, so they can be copied into one).
	dataKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	uuidRE  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ComponentRelease validates a release on create (old nil) or update.
func ComponentRelease(r, old *trainyardv1.ComponentRelease) field.ErrorList {
	var errs field.ErrorList
	s, p := r.Spec, specPath
	errs = append(errs, Label(p.Child("component"), s.Component)...)
	errs = append(errs, Label(p.Child("train"), s.Train)...)
	errs = append(errs, Version(p.Child("version"), s.Version)...)
	errs = append(errs, text(p.Child("description"), s.Description, trainyardv1.MaxDescriptionLength, multiLine)...)
	errs = append(errs, text(p.Child("fixes"), s.Fixes, trainyardv1.MaxDescriptionLength, multiLine)...)
	errs = append(errs, text(p.Child("image"), s.Image, trainyardv1.MaxImageLength, singleLine)...)
	errs = append(errs, validateStringMap(p.Child("data"), s.Data, trainyardv1.MaxDataEntries, trainyardv1.MaxDataValueLength, multiLine)...)
	if s.Retracted != nil {
		rp := p.Child("retracted", "reason")
		if strings.TrimSpace(s.Retracted.Reason) == "" {
			errs = append(errs, field.Required(rp, "say why the release is retracted"))
		}
		errs = append(errs, text(rp, s.Retracted.Reason, trainyardv1.MaxReasonLength, singleLine)...)
	}
	for i, risk := range s.Risks {
		rp := p.Child("risks").Index(i)
		errs = append(errs, text(rp.Child("name"), risk.Name, 63, singleLine)...)
		errs = append(errs, text(rp.Child("message"), risk.Message, 1024, singleLine)...)
		errs = append(errs, text(rp.Child("url"), risk.URL, 512, singleLine)...)
	}
	if u := s.UpgradeFrom; u != "" {
		if _, err := ordering.ParseRange(u); err != nil {
			errs = append(errs, field.Invalid(p.Child("upgradeFrom"), u,
				"must be a semantic-version constraint such as \">=1.4.0\""))
		}
	}
	// The rules' CEL is checked by the webhook (upgrade.ValidateRisks),
	// which the agent, linking this package, does not need.
	// The name is checked on create only: it cannot change afterwards, and
	// releases named before the canonical names must stay editable
	// (retracting one is an update).
	if old == nil && len(errs) == 0 {
		if want := trainyardv1.ReleaseName(s.Component, s.Train, s.Version); r.Name != want {
			errs = append(errs, field.Invalid(metadataName, r.Name,
				fmt.Sprintf("must be %q, the canonical name of %s %s on %s (<component>.<train>.<version>), "+
					"so that a version is published only once", want, s.Component, s.Version, s.Train)))
		}
	}
	if old != nil {
		errs = append(errs, immutable(p.Child("component"), s.Component, old.Spec.Component)...)
		errs = append(errs, immutable(p.Child("train"), s.Train, old.Spec.Train)...)
		errs = append(errs, immutable(p.Child("version"), s.Version, old.Spec.Version)...)
	}
	return errs
}

// ReleaseTrain validates a train on create (old nil) or update.
func ReleaseTrain(t, old *trainyardv1.ReleaseTrain) field.ErrorList {
	var errs field.ErrorList
	s, p := t.Spec, specPath
	errs = append(errs, Label(p.Child("component"), s.Component)...)
	errs = append(errs, Label(p.Child("train"), s.Train)...)
	if len(errs) == 0 {
		if want := trainyardv1.TrainName(s.Component, s.Train); t.Name != want {
			errs = append(errs, field.Invalid(metadataName, t.Name,
				fmt.Sprintf("must be %q (<spec.component>.<spec.train>)", want)))
		}
	}
	switch s.Ordering {
	case "", trainyardv1.OrderingSemver, trainyardv1.OrderingReleaseTime:
	default:
		errs = append(errs, field.NotSupported(p.Child("ordering"), s.Ordering,
			[]trainyardv1.Ordering{trainyardv1.OrderingSemver, trainyardv1.OrderingReleaseTime}))
	}
	switch s.Prereleases {
	case "", trainyardv1.PrereleasesInclude, trainyardv1.PrereleasesExclude:
	default:
		errs = append(errs, field.NotSupported(p.Child("prereleases"), s.Prereleases,
			[]trainyardv1.PrereleasePolicy{trainyardv1.PrereleasesInclude, trainyardv1.PrereleasesExclude}))
	}
	if r := s.VersionRange; r != "" {
		if len(r) > trainyardv1.MaxVersionRangeLength {
			errs = append(errs, field.TooLong(p.Child("versionRange"), "", trainyardv1.MaxVersionRangeLength))
		} else if _, err := ordering.ParseRange(r); err != nil {
			errs = append(errs, field.Invalid(p.Child("versionRange"), r,
				"must be a semantic-version constraint such as \">=1.2, <2\" or \"~1.4\""))
		}
	}
	if h := s.HistoryLimit; h != nil && (*h < 0 || *h > trainyardv1.MaxHistoryLimit) {
		errs = append(errs, field.Invalid(p.Child("historyLimit"), *h,
			fmt.Sprintf("must be between 0 and %d", trainyardv1.MaxHistoryLimit)))
	}
	if pr := s.Promotion; pr != nil {
		errs = append(errs, promotionPolicy(p.Child("promotion"), s.Train, pr)...)
	}
	if ro := s.Rollout; ro != nil {
		errs = append(errs, RolloutPolicy(p.Child("rollout"), ro)...)
		if s.Ordering == trainyardv1.OrderingReleaseTime {
			errs = append(errs, field.Invalid(p.Child("rollout"), "rings",
				"a rollout needs ordering Semver: its rings open releases in semantic-version order"))
		}
	}
	if old != nil {
		errs = append(errs, immutable(p.Child("component"), s.Component, old.Spec.Component)...)
		errs = append(errs, immutable(p.Child("train"), s.Train, old.Spec.Train)...)
	}
	return errs
}

// ClusterReport validates a report on create (old nil) or update.
func ClusterReport(r, old *trainyardv1.ClusterReport) field.ErrorList {
	var errs field.ErrorList
	s, p := r.Spec, specPath
	idPath := p.Child("clusterID")
	idErrs := ClusterID(idPath, s.ClusterID)
	errs = append(errs, idErrs...)
	if len(idErrs) == 0 && r.Name != trainyardv1.ClusterReportName(s.ClusterID) {
		errs = append(errs, field.Invalid(metadataName, r.Name,
			fmt.Sprintf("must be %q, the clusterID in lower case", trainyardv1.ClusterReportName(s.ClusterID))))
	}
	cp := p.Child("components")
	if n := len(s.Components); n > trainyardv1.MaxClusterComponents {
		errs = append(errs, field.TooMany(cp, n, trainyardv1.MaxClusterComponents))
	}
	seen := map[string]int{}
	for i, c := range s.Components {
		ip := cp.Index(i)
		errs = append(errs, Label(ip.Child("name"), c.Name)...)
		if c.Train != "" {
			errs = append(errs, Label(ip.Child("train"), c.Train)...)
		}
		errs = append(errs, Version(ip.Child("version"), c.Version)...)
		errs = append(errs, text(ip.Child("type"), c.Type, trainyardv1.MaxNameLength, singleLine)...)
		errs = append(errs, text(ip.Child("image"), c.Image, trainyardv1.MaxImageLength, singleLine)...)
		if r := c.Readiness; r != nil {
			errs = append(errs, Readiness(ip.Child("readiness"), r)...)
		}
		if j, dup := seen[c.Name]; dup {
			errs = append(errs, field.Duplicate(ip.Child("name"),
				fmt.Sprintf("%s (also at index %d): report each component once", c.Name, j)))
		} else {
			seen[c.Name] = i
		}
	}
	errs = append(errs, validateStringMap(p.Child("properties"), s.Properties, trainyardv1.MaxClusterProperties, trainyardv1.MaxPropertyValueLength, singleLine)...)
	if old != nil {
		errs = append(errs, immutable(idPath, s.ClusterID, old.Spec.ClusterID)...)
	}
	return append(errs, reissueAnnotations(r.Annotations)...)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// reissueAnnotations checks the pair that opens a cluster for one
// registration: both or neither, a SHA-256 and an RFC 3339 time. (How far
// away that time may be is the bridge's to judge, against its own clock.)
func reissueAnnotations(a map[string]string) field.ErrorList {
	p := field.NewPath("metadata", "annotations")
	hash, hasHash := a[trainyardv1.AnnotationReissueHash]
	exp, hasExp := a[trainyardv1.AnnotationReissueExpires]
	var errs field.ErrorList
	switch {
	case hasHash && !hasExp:
		errs = append(errs, field.Required(p.Key(trainyardv1.AnnotationReissueExpires), "set with "+trainyardv1.AnnotationReissueHash+": when the reissue token expires (RFC 3339)"))
	case hasExp && !hasHash:
		errs = append(errs, field.Required(p.Key(trainyardv1.AnnotationReissueHash), "set with "+trainyardv1.AnnotationReissueExpires+": the reissue token's SHA-256 (`kubectl trainyard cluster reissue` sets both)"))
	}
	if hasHash && !sha256Hex.MatchString(hash) {
		errs = append(errs, field.Invalid(p.Key(trainyardv1.AnnotationReissueHash), hash, "must be a SHA-256 in lower-case hex (64 characters), never the token itself"))
	}
	if _, err := time.Parse(time.RFC3339, exp); hasExp && err != nil {
		errs = append(errs, field.Invalid(p.Key(trainyardv1.AnnotationReissueExpires), exp, "must be an RFC 3339 time"))
	}
	return errs
}

// Label checks a component or train name: a DNS-1123 label.
func Label(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "a DNS-1123 label such as \"router\" or \"stable\"")}
	}
	var errs field.ErrorList
	for _, msg := range apivalidation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

// Version checks a version: 1 to 64 printable ASCII characters
// without whitespace or '/'.
func Version(p *field.Path, v string) field.ErrorList {
	switch {
	case v == "":
		return field.ErrorList{field.Required(p, "the version, for example \"v1.2.3\"")}
	case len(v) > trainyardv1.MaxVersionLength:
		return field.ErrorList{field.TooLong(p, "", trainyardv1.MaxVersionLength)}
	}
	for _, c := range v {
		if c <= ' ' || c > '~' || c == '/' {
			return field.ErrorList{field.Invalid(p, v,
				fmt.Sprintf("must be printable ASCII without whitespace or '/' (found %q)", c))}
		}
	}
	return nil
}

func validateStringMap(p *field.Path, m map[string]string, maxEntries, maxValue int, ml lines) field.ErrorList {
	var errs field.ErrorList
	if len(m) > maxEntries {
		errs = append(errs, field.TooMany(p, len(m), maxEntries))
	}
	for k, v := range m {
		kp := p.Key(k)
		switch {
		case len(k) == 0 || len(k) > trainyardv1.MaxDataKeyLength:
			errs = append(errs, field.Invalid(kp, k, fmt.Sprintf("keys must be 1 to %d characters", trainyardv1.MaxDataKeyLength)))
		case !dataKey.MatchString(k):
			errs = append(errs, field.Invalid(kp, k, "keys may contain only letters, digits, '-', '_' and '.'"))
		}
		errs = append(errs, text(kp, v, maxValue, ml)...)
	}
	return errs
}

// lines says whether a text field may hold line breaks and tabs.
type lines bool

const (
	singleLine lines = false
	multiLine  lines = true
)

// text checks a free-text field: at most limit bytes of UTF-8 with no
// control characters (C0, DEL, C1; newline and tab only in multi-line
// fields) and no bidirectional overrides. What a cluster or a publisher
// writes here is printed in administrators' terminals (kubectl trainyard,
// kubectl get): an ESC sequence would move their cursor, retitle their
// window or write their clipboard (OSC 52).
func text(p *field.Path, v string, limit int, ml lines) field.ErrorList {
	if len(v) > limit {
		return field.ErrorList{field.TooLong(p, "", limit)}
	}
	if !utf8.ValidString(v) {
		return field.ErrorList{field.Invalid(p, strconv.QuoteToASCII(v), "must be UTF-8 text")}
	}
	for i, r := range v {
		if (r == '\n' || r == '\t') && ml {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			what := "control characters"
			if ml {
				what = "control characters other than newline and tab"
			}
			return field.ErrorList{field.Invalid(p, strconv.QuoteToASCII(v),
				fmt.Sprintf("must not contain %s (found %U at byte %d)", what, r, i))}
		}
	}
	return nil
}

func immutable(p *field.Path, now, was string) field.ErrorList {
	if now == was {
		return nil
	}
	return validation.ValidateImmutableField(now, was, p)
}

// ClusterID checks a cluster's ID: a UUID or a DNS-1123 label.
func ClusterID(p *field.Path, id string) field.ErrorList {
	switch {
	case id == "":
		return field.ErrorList{field.Required(p, "the cluster's ID: a UUID or a DNS-1123 label")}
	case !uuidRE.MatchString(id) && len(apivalidation.IsDNS1123Label(id)) > 0:
		return field.ErrorList{field.Invalid(p, id, "must be a UUID or a DNS-1123 label")}
	}
	return nil
}

// ReportWriter says why user may not write report r (old: its stored
// version, nil on create), or "": a hub ServiceAccount named
// v1.ClusterServiceAccountPrefix + <report name> (the identity of one
// workload cluster's agent in direct mode) writes only that report, in its
// own namespace, and none of its identity annotations. RBAC restricts its
// get and patch by name; this covers create, which RBAC cannot restrict by
// name, and the annotations, which it cannot restrict at all: a direct-mode
// cluster that set trainyard.dev/credential-sha256 to the hash of a secret
// of its choosing could then check in through the bridge with it, and one
// that removed trainyard.dev/credential-revoked would undo its revocation.
func ReportWriter(user string, r, old *trainyardv1.ClusterReport) string {
	ns, name, ok := strings.Cut(strings.TrimPrefix(user, "system:serviceaccount:"), ":")
	if !ok || !strings.HasPrefix(user, "system:serviceaccount:") || !strings.HasPrefix(name, trainyardv1.ClusterServiceAccountPrefix) {
		return ""
	}
	if own := strings.TrimPrefix(name, trainyardv1.ClusterServiceAccountPrefix); own != r.Name || ns != r.Namespace {
		return fmt.Sprintf("the ServiceAccount %s/%s writes only the ClusterReport %s/%s", ns, name, ns, own)
	}
	var was map[string]string
	if old != nil {
		was = old.Annotations
	}
	for _, a := range trainyardv1.IdentityAnnotations {
		now, had := r.Annotations[a]
		before, hadBefore := was[a]
		if now != before || had != hadBefore {
			return fmt.Sprintf("the ServiceAccount %s/%s may not set or change the annotation %s: "+
				"a cluster's bridge identity is the bridge's and its operators' to write", ns, name, a)
		}
	}
	return ""
}
