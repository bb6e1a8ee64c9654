package validation

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	apivalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// MaxRegistryTimeout bounds a TrustPolicy's registry fetch.
const MaxRegistryTimeoutSeconds = 60

// TrustPolicy checks what the CRD schema cannot (issue 31): components and
// trains are names, Secrets are object names, each identity's regular
// expressions compile (as RE2, which the verifier uses), and a registry
// fetch has a bounded timeout. Whether the Secrets hold a key or a root is
// the controller's to say, in the policy's Ready condition: they may be
// created after the policy.
func TrustPolicy(tp *trainyardv1.TrustPolicy) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	for i, c := range tp.Spec.Components {
		errs = append(errs, Label(p.Child("components").Index(i), c)...)
	}
	for i, t := range tp.Spec.Trains {
		errs = append(errs, Label(p.Child("trains").Index(i), t)...)
	}
	for i, k := range tp.Spec.Keys {
		errs = append(errs, secretKey(p.Child("keys").Index(i), k)...)
	}
	if len(tp.Spec.Keys) == 0 && tp.Spec.Keyless == nil {
		errs = append(errs, field.Required(p.Child("keys"), "trust keys, keyless identities, or both"))
	}
	if kl := tp.Spec.Keyless; kl != nil {
		kp := p.Child("keyless")
		errs = append(errs, secretKey(kp.Child("trustedRoot"), kl.TrustedRoot)...)
		if len(kl.Identities) == 0 {
			errs = append(errs, field.Required(kp.Child("identities"), "a trusted root without identities would trust any signer it certifies"))
		}
		for i, id := range kl.Identities {
			ip := kp.Child("identities").Index(i)
			errs = append(errs, exactOrRegExp(ip, "issuer", id.Issuer, id.IssuerRegExp)...)
			errs = append(errs, exactOrRegExp(ip, "subject", id.Subject, id.SubjectRegExp)...)
		}
		if tp.Spec.TransparencyLog.Threshold == 0 && tp.Spec.SignedTimestamps.Threshold == 0 {
			errs = append(errs, field.Invalid(p.Child("transparencyLog", "threshold"), 0,
				"keyless signatures need a time source: transparencyLog.threshold or signedTimestamps.threshold above 0 (their certificates are short-lived)"))
		}
	}
	if r := tp.Spec.Registry; r != nil {
		rp := p.Child("registry")
		if r.Timeout != nil && (r.Timeout.Duration <= 0 || r.Timeout.Seconds() > MaxRegistryTimeoutSeconds) {
			errs = append(errs, field.Invalid(rp.Child("timeout"), r.Timeout.Duration.String(),
				fmt.Sprintf("must be above 0 and at most %ds", MaxRegistryTimeoutSeconds)))
		}
		if r.PullSecret != "" {
			for _, msg := range apivalidation.IsDNS1123Subdomain(r.PullSecret) {
				errs = append(errs, field.Invalid(rp.Child("pullSecret"), r.PullSecret, msg))
			}
		}
	}
	return errs
}

// TrustPolicyWarnings point out what is allowed but weak: a key or root
// that is not pinned can be replaced by whoever edits Secrets in the
// namespace.
func TrustPolicyWarnings(tp *trainyardv1.TrustPolicy) []string {
	var out []string
	unpinned := func(path string, k trainyardv1.SecretKeyRef) {
		if k.SHA256 == "" {
			out = append(out, fmt.Sprintf("%s (Secret %s, key %s) is not pinned: whoever can edit Secrets in this namespace (the edit role can) can replace it; set its sha256", path, k.Name, k.Key))
		}
	}
	for i, k := range tp.Spec.Keys {
		unpinned(fmt.Sprintf("spec.keys[%d]", i), k)
	}
	if kl := tp.Spec.Keyless; kl != nil {
		unpinned("spec.keyless.trustedRoot", kl.TrustedRoot)
	}
	return out
}

func secretKey(p *field.Path, k trainyardv1.SecretKeyRef) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range apivalidation.IsDNS1123Subdomain(k.Name) {
		errs = append(errs, field.Invalid(p.Child("name"), k.Name, msg))
	}
	for _, msg := range apivalidation.IsConfigMapKey(k.Key) {
		errs = append(errs, field.Invalid(p.Child("key"), k.Key, msg))
	}
	return errs
}

func exactOrRegExp(p *field.Path, name, exact, re string) field.ErrorList {
	switch {
	case exact != "" && re != "":
		return field.ErrorList{field.Invalid(p.Child(name+"RegExp"), re, "give "+name+" or "+name+"RegExp, not both")}
	case exact == "" && re == "":
		return field.ErrorList{field.Required(p.Child(name), "give "+name+" or "+name+"RegExp")}
	case re != "":
		if _, err := regexp.Compile(re); err != nil {
			return field.ErrorList{field.Invalid(p.Child(name+"RegExp"), re, err.Error())}
		}
	}
	return nil
}

var digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// SignedRelease checks a release a TrustPolicy covers (policy names it):
// its image names a digest, and its bundle, when given, is a Sigstore
// bundle's JSON (that it verifies is the controller's to say).
func SignedRelease(r *trainyardv1.ComponentRelease, policy string) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	switch {
	case r.Spec.Image == "":
		errs = append(errs, field.Required(p.Child("image"), fmt.Sprintf(
			"TrustPolicy %s covers %s on %s: give the image by digest (registry/app@sha256:…), whose signature decides whether it can become latest",
			policy, r.Spec.Component, r.Spec.Train)))
	case !digestRef.MatchString(r.Spec.Image):
		errs = append(errs, field.Invalid(p.Child("image"), r.Spec.Image, fmt.Sprintf(
			"TrustPolicy %s covers %s on %s: name the image by its digest (…@sha256: and 64 lower-case hexadecimal digits); a tag can be moved to other content",
			policy, r.Spec.Component, r.Spec.Train)))
	}
	if b := r.Spec.SignatureBundle; b != "" {
		var doc struct {
			MediaType string `json:"mediaType"`
		}
		if err := json.Unmarshal([]byte(b), &doc); err != nil {
			errs = append(errs, field.Invalid(p.Child("signatureBundle"), "(bundle)", "not JSON: "+err.Error()))
		} else if !strings.HasPrefix(doc.MediaType, "application/vnd.dev.sigstore.bundle") {
			errs = append(errs, field.Invalid(p.Child("signatureBundle"), doc.MediaType,
				"not a Sigstore bundle: its mediaType must be application/vnd.dev.sigstore.bundle…"))
		}
	}
	return errs
}

// Covers tells whether a TrustPolicy covers a component on a train.
func Covers(tp *trainyardv1.TrustPolicySpec, component, train string) bool {
	return (len(tp.Components) == 0 || contains(tp.Components, component)) && (len(tp.Trains) == 0 || contains(tp.Trains, train))
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
