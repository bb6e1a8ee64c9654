package certs

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// FileCertificate serves the tls.crt and tls.key of dir, read again when
// they change (looked at at most every recheck), and a self-signed
// certificate while they are not there: a process whose certificate a
// mounted Secret brings, once another process has made it (the bridge's,
// from the manager), starts and serves at once instead of waiting for it.
// Clients that verify (Prometheus) fail until the files arrive, then pass
// without a restart.
type FileCertificate struct {
	dir     string
	recheck time.Duration
	self    *tls.Certificate

	mu      sync.Mutex
	checked time.Time
	modTime [2]time.Time
	current *tls.Certificate
}

// NewFileCertificate makes the self-signed fallback and reads dir once.
func NewFileCertificate(dir string) (*FileCertificate, error) {
	cert, key, err := certutil.GenerateSelfSignedCertKeyWithFixtures("localhost", []net.IP{{127, 0, 0, 1}}, nil, "")
	if err != nil {
		return nil, err
	}
	self, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	f := &FileCertificate{dir: dir, recheck: 10 * time.Second, self: &self}
	f.load(time.Now())
	return f, nil
}

// GetCertificate is tls.Config's.
func (f *FileCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= f.recheck {
		f.load(now)
	}
	if f.current != nil {
		return f.current, nil
	}
	return f.self, nil
}

// load reads the pair when either file changed since the last read; a pair
// that does not load keeps the last good one (a Secret volume swaps both
// files at once, but a half-written pair must not end serving).
func (f *FileCertificate) load(now time.Time) {
	f.checked = now
	certPath, keyPath := filepath.Join(f.dir, "tls.crt"), filepath.Join(f.dir, "tls.key")
	var mod [2]time.Time
	for i, p := range []string{certPath, keyPath} {
		st, err := os.Stat(p)
		if err != nil {
			return
		}
		mod[i] = st.ModTime()
	}
	if f.current != nil && mod == f.modTime {
		return
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return
	}
	f.current, f.modTime = &pair, mod
}
