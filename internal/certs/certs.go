// Package certs is the manager's built-in certificate authority for its
// admission webhook: it keeps a self-signed CA and a serving certificate in
// a Secret, renews them before they expire, writes the serving pair where the
// webhook server reads it, and injects the CA into the webhook
// configurations. No cert-manager is needed.
package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Secret keys. tls.crt and tls.key make it a kubernetes.io/tls Secret.
const (
	keyCACert = "ca.crt" // the CA bundle: the current CA, then the previous one while it is valid
	keyCAKey  = "ca.key"
	keyCert   = corev1.TLSCertKey
	keyKey    = corev1.TLSPrivateKeyKey
)

// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;create;update
// Only trainyard's own webhook configurations (the names the manager's flags
// default to; the chart templates them with the release's name), so that the
// manager cannot redirect anyone else's admission webhooks.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;patch,resourceNames=trainyard-mutating-webhook-configuration;trainyard-validating-webhook-configuration

// Leaf is one further serving certificate of a Rotator.
type Leaf struct {
	SecretName string
	DNSNames   []string
}

// Rotator keeps the webhook's certificates current. Every replica runs one:
// they share the Secret, so only one generates, and each writes the pair to
// its own CertDir.
type Rotator struct {
	// Client must read directly from the API (not a cache): Ensure runs
	// before the manager's caches start.
	Client     client.Client
	Namespace  string
	SecretName string
	// CASecretName, when set, names a second Secret that holds only the CA
	// bundle (ca.crt), kept equal to SecretName's: what clients that verify
	// the certificate (Prometheus' ServiceMonitor) are pointed at, so that
	// none of them is given a Secret holding the CA's private key.
	CASecretName string
	// Leaves are further serving certificates signed by the same CA, each
	// in a kubernetes.io/tls Secret of its own (tls.crt, tls.key and the CA
	// bundle as ca.crt, never the CA's key), for a process that serves TLS
	// without holding the CA or the webhook's key: the bridge's metrics
	// endpoint, which Prometheus verifies against the same CA Secret.
	Leaves []Leaf
	// DNSNames and IPs are the serving certificate's subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// CertDir receives tls.crt and tls.key for the webhook server, which
	// reloads them when they change.
	CertDir string
	// MutatingWebhooks and ValidatingWebhooks name the configurations whose
	// caBundle is kept equal to the CA bundle.
	MutatingWebhooks, ValidatingWebhooks []string

	Clock        clock.PassiveClock
	CAValidity   time.Duration // default 10 years
	CertValidity time.Duration // default 1 year; renewed with a third left
	Interval     time.Duration // how often Start checks; default 1 hour
}

func (r *Rotator) defaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.CAValidity == 0 {
		r.CAValidity = 10 * 365 * 24 * time.Hour
	}
	if r.CertValidity == 0 {
		r.CertValidity = 365 * 24 * time.Hour
	}
	if r.Interval == 0 {
		r.Interval = time.Hour
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Start checks the certificates every Interval until ctx ends.
func (r *Rotator) Start(ctx context.Context) error {
	r.defaults()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Ensure(ctx); err != nil {
				log.FromContext(ctx).Error(err, "renewing the webhook certificates")
			}
		}
	}
}

// Ensure makes the Secret hold a valid CA and serving certificate, writes the
// pair to CertDir and injects the CA bundle. Call it once before the webhook
// server starts.
func (r *Rotator) Ensure(ctx context.Context) error {
	r.defaults()
	var sec *corev1.Secret
	if err := retryRaces(func() (err error) {
		sec, err = r.ensureSecret(ctx)
		return err
	}); err != nil {
		return err
	}
	if err := r.writeFiles(sec); err != nil {
		return err
	}
	if r.CASecretName != "" {
		if err := retryRaces(func() error { return r.writeCA(ctx, sec.Data[keyCACert]) }); err != nil {
			return fmt.Errorf("CA Secret %s: %w", r.CASecretName, err)
		}
	}
	for _, l := range r.Leaves {
		if err := retryRaces(func() error { return r.writeLeaf(ctx, l, sec.Data) }); err != nil {
			return fmt.Errorf("certificate Secret %s: %w", l.SecretName, err)
		}
	}
	return r.inject(ctx, sec.Data[keyCACert])
}

// retryRaces runs write again (a few times) while it loses a race with
// another replica that wrote the same Secret between its read and its
// write: the next try reads theirs.
func retryRaces(write func() error) error {
	for attempt := 0; ; attempt++ {
		err := write()
		if err == nil || attempt >= 5 || !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) {
			return err
		}
	}
}

// writeCA makes CASecretName hold exactly the CA bundle.
func (r *Rotator) writeCA(ctx context.Context, bundle []byte) error {
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.CASecretName}, sec)
	if apierrors.IsNotFound(err) {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: r.CASecretName,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "trainyard"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{keyCACert: bundle},
		}
		return r.Client.Create(ctx, sec)
	}
	if err != nil {
		return err
	}
	if len(sec.Data) == 1 && bytes.Equal(sec.Data[keyCACert], bundle) {
		return nil
	}
	sec.Data = map[string][]byte{keyCACert: bundle} // nothing else, whatever was added
	return r.Client.Update(ctx, sec)
}

// writeLeaf makes l's Secret hold a serving certificate for l.DNSNames
// signed by the CA of ca (the main Secret's data), and the CA bundle.
func (r *Rotator) writeLeaf(ctx context.Context, l Leaf, ca map[string][]byte) error {
	caCert, caKey, err := parsePair(ca[keyCACert], ca[keyCAKey])
	if err != nil {
		return err
	}
	sec := &corev1.Secret{}
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: l.SecretName}, sec)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return err
	}
	now := r.Clock.Now()
	if cert, _, perr := parsePair(sec.Data[keyCert], sec.Data[keyKey]); perr == nil && len(sec.Data) == 3 &&
		bytes.Equal(sec.Data[keyCACert], ca[keyCACert]) && fits(cert, caCert, now, l.DNSNames, nil) {
		return nil
	}
	cert, key, err := newServingCert(now, r.CertValidity, caCert, caKey, l.DNSNames, nil)
	if err != nil {
		return err
	}
	sec.Data = map[string][]byte{keyCert: encodeCert(cert), keyKey: encodeKey(key), keyCACert: ca[keyCACert]}
	return r.write(ctx, sec, l.SecretName, create)
}

// write creates the TLS Secret name with sec's data, or updates sec (its
// resourceVersion guards against another replica's write meanwhile).
func (r *Rotator) write(ctx context.Context, sec *corev1.Secret, name string, create bool) error {
	var err error
	if create {
		sec.ObjectMeta = metav1.ObjectMeta{Namespace: r.Namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "trainyard"}}
		sec.Type = corev1.SecretTypeTLS
		err = r.Client.Create(ctx, sec)
	} else {
		err = r.Client.Update(ctx, sec)
	}
	if err == nil {
		log.FromContext(ctx).Info("wrote certificates", "secret", name)
	}
	return err
}

func (r *Rotator) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.SecretName}, sec)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return nil, err
	}
	data, changed, err := r.renew(sec.Data)
	if err != nil {
		return nil, err
	}
	if !changed {
		return sec, nil
	}
	sec.Data = data
	err = r.write(ctx, sec, r.SecretName, create)
	return sec, err
}

// renew returns the Secret data with whatever was missing, invalid or due
// for renewal replaced.
func (r *Rotator) renew(data map[string][]byte) (map[string][]byte, bool, error) {
	now := r.Clock.Now()
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	changed := false

	ca, caKey, err := parsePair(data[keyCACert], data[keyCAKey])
	// A CA must outlive every certificate it signs.
	if err != nil || now.Add(r.CertValidity).After(ca.NotAfter) {
		old := data[keyCACert]
		ca, caKey, err = newCA(now, r.CAValidity)
		if err != nil {
			return nil, false, err
		}
		out[keyCACert] = encodeCert(ca)
		// Keep the previous CA in the bundle while it is valid, so that
		// certificates it signed keep working during the switch.
		if prev, perr := parseCert(old); perr == nil && now.Before(prev.NotAfter) {
			out[keyCACert] = append(out[keyCACert], encodeCert(prev)...)
		}
		out[keyCAKey] = encodeKey(caKey)
		changed = true
	}

	cert, _, err := parsePair(data[keyCert], data[keyKey])
	if changed || err != nil || !fits(cert, ca, now, r.DNSNames, r.IPs) {
		cert, key, err := newServingCert(now, r.CertValidity, ca, caKey, r.DNSNames, r.IPs)
		if err != nil {
			return nil, false, err
		}
		out[keyCert], out[keyKey] = encodeCert(cert), encodeKey(key)
		changed = true
	}
	return out, changed, nil
}

// fits tells whether cert is signed by ca, names the hosts dnsNames and
// ips, and has more than a third of its validity left.
func fits(cert, ca *x509.Certificate, now time.Time, dnsNames []string, ips []net.IP) bool {
	if cert.CheckSignatureFrom(ca) != nil {
		return false
	}
	left := cert.NotAfter.Sub(now)
	if left < cert.NotAfter.Sub(cert.NotBefore)/3 {
		return false
	}
	if !slices.Equal(sorted(cert.DNSNames), sorted(dnsNames)) {
		return false
	}
	var want, have []string
	for _, ip := range ips {
		want = append(want, ip.String())
	}
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	return slices.Equal(sorted(want), sorted(have))
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// writeFiles writes the serving pair where the webhook server reads it,
// only when it changed, each file replaced atomically.
func (r *Rotator) writeFiles(sec *corev1.Secret) error {
	if err := os.MkdirAll(r.CertDir, 0o700); err != nil {
		return err
	}
	for name, content := range map[string][]byte{keyCert: sec.Data[keyCert], keyKey: sec.Data[keyKey]} {
		path := filepath.Join(r.CertDir, name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, content) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

// inject sets caBundle on every webhook of the named configurations.
func (r *Rotator) inject(ctx context.Context, bundle []byte) error {
	var errs []error
	for _, name := range r.MutatingWebhooks {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		errs = append(errs, r.injectInto(ctx, name, cfg, bundle, func() []*[]byte {
			var b []*[]byte
			for i := range cfg.Webhooks {
				b = append(b, &cfg.Webhooks[i].ClientConfig.CABundle)
			}
			return b
		}))
	}
	for _, name := range r.ValidatingWebhooks {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		errs = append(errs, r.injectInto(ctx, name, cfg, bundle, func() []*[]byte {
			var b []*[]byte
			for i := range cfg.Webhooks {
				b = append(b, &cfg.Webhooks[i].ClientConfig.CABundle)
			}
			return b
		}))
	}
	return errors.Join(errs...)
}

// injectInto reads one webhook configuration and patches its caBundles
// (reached through bundles, after the read) when they differ.
func (r *Rotator) injectInto(ctx context.Context, name string, cfg client.Object, bundle []byte, bundles func() []*[]byte) error {
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, cfg); err != nil {
		return fmt.Errorf("webhook configuration %s: %w", name, err)
	}
	before := cfg.DeepCopyObject().(client.Object)
	changed := false
	for _, b := range bundles() {
		if !bytes.Equal(*b, bundle) {
			*b, changed = bundle, true
		}
	}
	if !changed {
		return nil
	}
	return r.Client.Patch(ctx, cfg, client.MergeFrom(before))
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "trainyard-webhook-ca"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newServingCert(now time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey,
	dnsNames []string, ips []net.IP) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cn := "trainyard-webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func encodeKey(k *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// parseCert parses the first certificate of a PEM bundle.
func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the key does not match the certificate")
	}
	return cert, key, nil
}
