package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A process whose certificate arrives later (a Secret volume the manager
// fills) serves a self-signed one meanwhile, then the files, then their
// renewal, without a restart; a broken pair keeps the last good one.
func TestFileCertificate(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFileCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.recheck = 0
	leafName := func() string {
		t.Helper()
		c, err := f.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(x.DNSNames) == 0 {
			return ""
		}
		return x.DNSNames[0]
	}
	if got := leafName(); got != "localhost" {
		t.Fatalf("without files: %q, want the self-signed localhost", got)
	}
	write := func(name string) {
		t.Helper()
		now := time.Now()
		ca, caKey, err := newCA(now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := newServingCert(now, time.Hour, ca, caKey, []string{name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for file, data := range map[string][]byte{"tls.crt": encodeCert(cert), "tls.key": encodeKey(key)} {
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
				t.Fatal(err)
			}
			// A later modification time, as a Secret volume's swap gives.
			later := now.Add(time.Duration(len(name)) * time.Second)
			if err := os.Chtimes(filepath.Join(dir, file), later, later); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("bridge-metrics.ns.svc")
	if got := leafName(); got != "bridge-metrics.ns.svc" {
		t.Fatalf("after the files arrived: %q", got)
	}
	write("bridge-metrics.renewed.svc")
	if got := leafName(); got != "bridge-metrics.renewed.svc" {
		t.Fatalf("after a renewal: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := leafName(); got != "bridge-metrics.renewed.svc" {
		t.Fatalf("with a broken pair: %q, want the last good one", got)
	}
}
