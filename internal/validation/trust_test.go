package validation_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

func trustPolicy() *trainyardv1.TrustPolicy {
	return &trainyardv1.TrustPolicy{Spec: trainyardv1.TrustPolicySpec{
		Components: []string{"router"},
		Keys:       []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "cosign.pub"}},
		Keyless: &trainyardv1.KeylessTrust{TrustedRoot: trainyardv1.SecretKeyRef{Name: "sigstore-root", Key: "trusted_root.json"},
			Identities: []trainyardv1.OIDCIdentity{{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^https://github.com/example/"}}},
		TransparencyLog: trainyardv1.Threshold{Threshold: 1},
	}}
}

func TestTrustPolicyNamesEachMistake(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*trainyardv1.TrustPolicy)
		want   string
	}{
		{"valid", func(*trainyardv1.TrustPolicy) {}, ""},
		{"keys only, no time source", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keyless, tp.Spec.TransparencyLog.Threshold = nil, 0 }, ""},
		{"nothing trusted", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keys, tp.Spec.Keyless = nil, nil }, "spec.keys: Required value"},
		{"a component that is not a name", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Components[0] = "Router" }, "spec.components[0]: Invalid value"},
		{"a bad Secret key", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keys[0].Key = "a/b" }, "spec.keys[0].key: Invalid value"},
		{"no identities", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keyless.Identities = nil }, "spec.keyless.identities: Required value"},
		{"issuer and its regexp", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keyless.Identities[0].IssuerRegExp = ".*" },
			"spec.keyless.identities[0].issuerRegExp: Invalid value"},
		{"no subject", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keyless.Identities[0].SubjectRegExp = "" },
			"spec.keyless.identities[0].subject: Required value"},
		{"a regexp that does not compile", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keyless.Identities[0].SubjectRegExp = "(" },
			"spec.keyless.identities[0].subjectRegExp: Invalid value"},
		{"keyless without a time source", func(tp *trainyardv1.TrustPolicy) { tp.Spec.TransparencyLog.Threshold = 0 },
			"spec.transparencyLog.threshold: Invalid value: 0: keyless signatures need a time source"},
		{"a registry timeout of an hour", func(tp *trainyardv1.TrustPolicy) {
			tp.Spec.Registry = &trainyardv1.RegistrySignatures{Enabled: true, Timeout: &metav1.Duration{Duration: time.Hour}}
		}, "spec.registry.timeout: Invalid value"},
	} {
		tp := trustPolicy()
		tc.change(tp)
		got := validation.TrustPolicy(tp).ToAggregate()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: %v", tc.name, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSignedReleaseNamesItsDigest(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0f", 32)
	for _, tc := range []struct{ image, bundle, want string }{
		{"registry.example/router@" + digest, "", ""},
		{"registry.example/router:1.2.0@" + digest, `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`, ""},
		{"", "", "spec.image: Required value"},
		{"registry.example/router:1.2.0", "", "name the image by its digest"},
		{"registry.example/router@" + strings.ToUpper(digest), "", "name the image by its digest"},
		{"registry.example/router@sha256:abc", "", "name the image by its digest"},
		{"registry.example/router@" + digest, "[]", "spec.signatureBundle: Invalid value"},
		{"registry.example/router@" + digest, `{"mediaType":"application/json"}`, "not a Sigstore bundle"},
	} {
		r := &trainyardv1.ComponentRelease{Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Image: tc.image, SignatureBundle: tc.bundle}}
		got := validation.SignedRelease(r, "p").ToAggregate()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%q: %v", tc.image, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%q %q: %v, want %q", tc.image, tc.bundle, got, tc.want)
		}
	}
	if !validation.Covers(&trainyardv1.TrustPolicySpec{}, "any", "train") ||
		validation.Covers(&trainyardv1.TrustPolicySpec{Components: []string{"router"}, Trains: []string{"stable"}}, "router", "beta") {
		t.Error("Covers")
	}
}

func TestTrustPolicyWarnsOfUnpinnedSecrets(t *testing.T) {
	tp := trustPolicy()
	w := validation.TrustPolicyWarnings(tp)
	if len(w) != 2 || !strings.Contains(w[0], "spec.keys[0] (Secret cosign-pub, key cosign.pub) is not pinned") ||
		!strings.Contains(w[1], "spec.keyless.trustedRoot") {
		t.Errorf("%q", w)
	}
	tp.Spec.Keys[0].SHA256 = strings.Repeat("a", 64)
	tp.Spec.Keyless.TrustedRoot.SHA256 = strings.Repeat("b", 64)
	if w := validation.TrustPolicyWarnings(tp); len(w) != 0 {
		t.Errorf("pinned: %q", w)
	}
}
