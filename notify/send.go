package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// receiver is a target's Secret resolved: where to post and how to sign.
type receiver struct {
	url    *url.URL
	key    []byte // nil: unsigned
	client *http.Client
	dest   Destinations
}

// errConfig is a target that cannot be sent to as configured (no Secret, a
// bad URL): retried, since the user may fix it.
type errConfig struct{ msg string }

func (e errConfig) Error() string { return e.msg }

// resolve reads a target's Secret.
func resolve(s *corev1.Secret, timeout time.Duration, dest Destinations) (*receiver, error) {
	raw := strings.TrimSpace(string(s.Data[trainyardv1.SecretKeyURL]))
	if raw == "" {
		return nil, errConfig{fmt.Sprintf("Secret %s has no key %q", s.Name, trainyardv1.SecretKeyURL)}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// The URL may hold a token: never repeat it.
		return nil, errConfig{fmt.Sprintf("Secret %s: key %q is not an http(s) URL", s.Name, trainyardv1.SecretKeyURL)}
	}
	rc := &receiver{url: u, dest: dest}
	if k, ok := s.Data[trainyardv1.SecretKeySigningKey]; ok && len(k) > 0 {
		rc.key, err = signingKey(string(k))
		if err != nil {
			return nil, errConfig{fmt.Sprintf("Secret %s: key %q: %v", s.Name, trainyardv1.SecretKeySigningKey, err)}
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tr.DialContext = destinations(dest).Dialer(30 * time.Second).DialContext
	if ca, ok := s.Data[trainyardv1.SecretKeyCA]; ok && len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errConfig{fmt.Sprintf("Secret %s: key %q holds no PEM certificate", s.Name, trainyardv1.SecretKeyCA)}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	rc.client = &http.Client{
		Transport: tr, Timeout: timeout,
		// A redirect would carry the signed body somewhere the user did not
		// name: it counts as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return rc, nil
}

// signingKey decodes a Standard Webhooks secret ("whsec_" and base64), or
// takes other text as the key's bytes.
func signingKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		k, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("whsec_ key is not base64: %v", err)
		}
		return k, nil
	}
	return []byte(s), nil
}

// sign returns the Standard Webhooks signature header of a message:
// "v1," and base64 of HMAC-SHA256 over "<id>.<timestamp>.<body>".
func sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// outcome is what one attempt came to.
type outcome struct {
	code       int
	err        error
	retry      bool          // worth trying again
	retryAfter time.Duration // the receiver's Retry-After, if any
}

// maxRetryAfter caps a receiver's Retry-After, so one answer cannot park a
// delivery for days.
const maxRetryAfter = time.Hour

// post delivers one body. The same id goes with every attempt, as the
// webhook-id header too.
func (rc *receiver) post(ctx context.Context, id, contentType string, body []byte, now time.Time) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.url.String(), bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "trainyard/"+version.Get().Version)
	if rc.key != nil {
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sign(rc.key, id, now, body))
	}
	resp, err := rc.client.Do(req)
	if err != nil {
		return outcome{err: scrub(err, rc.url), retry: true}
	}
	defer resp.Body.Close()
	// Drain a little to reuse the connection; a receiver cannot make us
	// read more. Nothing of the answer is kept: a status that repeated it
	// would let whoever names a URL read what answers there.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o := outcome{code: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return o
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout ||
		resp.StatusCode >= 500:
		o.retry = true
		o.retryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	o.err = fmt.Errorf("receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	return o
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// scrub removes the URL (which may hold a token, as Slack's do) from an
// error, keeping the host.
func scrub(err error, u *url.URL) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := strings.ReplaceAll(err.Error(), u.String(), u.Host)
	return fmt.Errorf("POST %s: %s", u.Host, msg)
}

// probe checks that a receiver's address accepts connections, without
// sending a message.
func (rc *receiver) probe(ctx context.Context, timeout time.Duration) error {
	host := rc.url.Host
	if rc.url.Port() == "" {
		port := "443"
		if rc.url.Scheme == "http" {
			port = "80"
		}
		host = net.JoinHostPort(rc.url.Hostname(), port)
	}
	conn, err := destinations(rc.dest).Dialer(timeout).DialContext(ctx, "tcp", host)
	var refused errDestination
	if errors.As(err, &refused) {
		return fmt.Errorf("receiver %s: %w", rc.url.Host, refused)
	}
	if err != nil {
		return fmt.Errorf("receiver %s is unreachable: %w", rc.url.Host, err)
	}
	return conn.Close()
}

// backoff is the wait before attempt n+1 when the receiver names none:
// 1s, 2s, 4s … up to 5 minutes.
func backoff(attempts int32) time.Duration {
	d := time.Second << min(max(attempts-1, 0), 9)
	return min(d, 5*time.Minute)
}
