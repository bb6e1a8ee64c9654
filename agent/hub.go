package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Hub takes the agent's check-ins.
type Hub interface {
	// CheckIn stores a check-in. An error the agent should not retry soon
	// (the hub refused what was sent, or the credential) is errAuth; one
	// worth retrying is errRetry.
	CheckIn(ctx context.Context, c wire.Cluster) error
	// Updates says, for each of cluster's components in order, the latest
	// release when it is newer (UpdateAvailable).
	Updates(ctx context.Context, cluster string, comps []wire.ComponentVersion) ([]wire.ComponentVersion, error)
}

// HTTPHub is the hub's bridge, over HTTP (bridge mode).
type HTTPHub struct {
	URL   string
	Token string
	// TokenFile, when set, is read for the registration token before every
	// registration.
	TokenFile string
	HTTP      *http.Client
	// Credentials keeps the credential the bridge issues the cluster when
	// it registers (nil: in memory only). Check-ins present it rather than
	// the registration token.
	Credentials Credentials

	mu         sync.Mutex
	loaded     bool
	credential string
	// unsaved is a credential the hub issued that could not be stored yet.
	unsaved bool
	// refusals counts the hub's refusals of the credential in a row.
	refusals int
}

// maxRefusals is how many refusals of its credential in a row the agent
// takes before it registers again: one 401 can come from a bridge replica
// whose cache has not yet seen a rotation, and a valid credential thrown
// away for it locks the cluster out (a registered cluster cannot register
// again with the token).
const maxRefusals = 3

// HeaderCredential is where the bridge sends a newly issued credential.
const HeaderCredential = "X-Trainyard-Credential"

// CheckIn posts the check-in to /v3/clusters: with the cluster's credential
// when it has one, else with the registration token, which registers the
// cluster (the answer carries its credential, which is stored). A
// credential refused maxRefusals times in a row (revoked, or the cluster's
// report deleted) makes the cluster register again, when a registration
// token is mounted; the credential is kept until a new one is stored.
func (h *HTTPHub) CheckIn(ctx context.Context, c wire.Cluster) error {
	cred, err := h.loadCredential(ctx)
	if err != nil {
		return errRetry{err: err}
	}
	body, _ := json.Marshal(c)
	resp, msg, err := h.post(ctx, "/v3/clusters", body, cred)
	if err != nil {
		return errRetry{err: fmt.Errorf("checking in at %s: %w", h.URL, err)}
	}
	if resp.StatusCode == http.StatusUnauthorized && cred != "" {
		h.mu.Lock()
		h.refusals++
		n := h.refusals
		h.mu.Unlock()
		if n < maxRefusals {
			return errRetry{err: fmt.Errorf("the hub %s refused the cluster's credential (%s): refusal %d of %d in a row before it registers again",
				h.URL, answerText(resp, msg), n, maxRefusals)}
		}
		if tok, _ := h.registrationToken(); tok == "" {
			return errAuth{msg: fmt.Sprintf("the hub %s refused the cluster's credential (%s), and no registration token is mounted to register it again",
				h.URL, answerText(resp, msg))}
		}
		// Register again; the credential stays stored until the hub issues
		// a new one (a refusal here leaves the cluster as it was).
		if resp, msg, err = h.post(ctx, "/v3/clusters", body, ""); err != nil {
			return errRetry{err: fmt.Errorf("registering at %s: %w", h.URL, err)}
		}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		h.mu.Lock()
		h.refusals = 0
		h.mu.Unlock()
		if issued := resp.Header.Get(HeaderCredential); issued != "" {
			if err := h.setCredential(ctx, issued); err != nil {
				// Kept in memory and stored at the next check-in: the
				// check-in itself is stored.
				return errRetry{err: err}
			}
			// Present the new credential at once: until it is first used,
			// the hub lets a retry of the registration with the same token
			// replace it (its answer may have been lost), and the token is
			// the fleet's. A failure here is the next check-in's to retry.
			_, _, _ = h.post(ctx, "/v3/clusters", body, issued)
		}
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return errAuth{msg: fmt.Sprintf("the hub %s refused the check-in (%d: %s): check the registration token "+
			"(the agent's token Secret) and that this cluster ID (%s) is not registered already (with a credential this agent lacks)",
			h.URL, resp.StatusCode, answerText(resp, msg), c.ID)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return errRetry{err: fmt.Errorf("the hub answered %d: %s", resp.StatusCode, answerText(resp, msg)),
			retryAfter: time.Duration(ra) * time.Second}
	default:
		// The hub refused what we sent: retrying the same soon will not help.
		return errAuth{msg: fmt.Sprintf("the hub refused the check-in (%d): %s", resp.StatusCode, answerText(resp, msg))}
	}
}

// loadCredential is the cluster's credential, read from Credentials once,
// and stored there if an earlier save failed.
func (h *HTTPHub) loadCredential(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Credentials == nil {
		h.Credentials = &MemoryCredentials{}
	}
	if !h.loaded {
		c, err := h.Credentials.Load(ctx)
		if err != nil {
			return "", err
		}
		h.credential, h.loaded = c, true
	}
	if h.unsaved {
		if err := h.Credentials.Save(ctx, h.credential); err != nil {
			return "", err
		}
		h.unsaved = false
	}
	return h.credential, nil
}

// setCredential keeps credential in memory and stores it; a failed save is
// retried at the next check-in.
func (h *HTTPHub) setCredential(ctx context.Context, credential string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.credential, h.loaded, h.unsaved = credential, true, true
	if err := h.Credentials.Save(ctx, credential); err != nil {
		return err
	}
	h.unsaved = false
	return nil
}

// registrationToken is the mounted registration token ("" when none).
func (h *HTTPHub) registrationToken() (string, error) {
	if h.TokenFile == "" {
		return h.Token, nil
	}
	b, err := os.ReadFile(h.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Updates asks the bridge's multi-get, /v3/versions/latest.
func (h *HTTPHub) Updates(ctx context.Context, _ string, comps []wire.ComponentVersion) ([]wire.ComponentVersion, error) {
	body, _ := json.Marshal(map[string]any{"data": comps})
	h.mu.Lock()
	cred := h.credential
	h.mu.Unlock()
	resp, msg, err := h.post(ctx, "/v3/versions/latest", body, cred)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the hub answered %d", resp.StatusCode)
	}
	var latest struct {
		Data []wire.ComponentVersion `json:"data"`
	}
	if err := json.Unmarshal(msg, &latest); err != nil {
		return nil, fmt.Errorf("reading the hub's latest releases: %w", err)
	}
	return latest.Data, nil
}

// post sends a JSON body to the hub, with the credential (else the
// registration token), and reads up to maxAnswer bytes of the answer.
func (h *HTTPHub) post(ctx context.Context, path string, body []byte, credential string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(h.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	token := credential
	if token == "" {
		if token, err = h.registrationToken(); err != nil {
			return nil, nil, err
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := h.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp, msg, err
}

// answerText is what the hub said, for a log line: its JSON error's
// message and the request's ID (X-Request-ID, which the hub's logs
// carry too), or the answer's text.
func answerText(resp *http.Response, msg []byte) string {
	text := strings.TrimSpace(string(msg))
	var e wire.Error
	if json.Unmarshal(msg, &e) == nil && e.Message != "" {
		text = e.Message
	}
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	if id := resp.Header.Get("X-Request-ID"); id != "" {
		text += " (request " + id + ")"
	}
	return text
}

// maxAnswer bounds what the agent reads of an answer (the multi-get of a
// few hundred components is well below it).
const maxAnswer = 4 << 20

// DirectHub writes the ClusterReport straight into the hub's API (direct
// mode), through the check-in store the bridge uses (internal/checkin): the
// same validation, conversion and heartbeat write budget. Run Start beside
// the agent: it writes the held heartbeats.
type DirectHub struct {
	*checkin.Store
	reports   checkin.Reports
	namespace string
}

// NewDirectHub writes into namespace of the hub at cfg.
func NewDirectHub(cfg *rest.Config, namespace string, o checkin.Options) (*DirectHub, error) {
	reports, err := checkin.RESTReports(cfg)
	if err != nil {
		return nil, err
	}
	return &DirectHub{Store: checkin.New(reports, o), reports: reports, namespace: namespace}, nil
}

// CheckIn stores the check-in.
func (d *DirectHub) CheckIn(ctx context.Context, c wire.Cluster) error {
	want, err := checkin.Report(d.namespace, c)
	if err != nil {
		return errAuth{msg: "the check-in is invalid: " + err.Error()}
	}
	_, _, err = d.Store.CheckIn(ctx, want, nil)
	switch {
	case err == nil:
		return nil
	case checkin.IsRetryable(err):
		return errRetry{err: fmt.Errorf("writing the ClusterReport into the hub: %w", err)}
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return errAuth{msg: fmt.Sprintf("the hub refused the ClusterReport of %s: %v (check the hub kubeconfig's identity "+
			"and its Role in docs/agent.md)", c.ID, err)}
	default:
		return errAuth{msg: fmt.Sprintf("the hub refused the ClusterReport of %s: %v", c.ID, err)}
	}
}

// Updates reads what the hub's controllers computed of the report: each
// component's latest release on its train, where it differs from the
// version now reported (as the bridge's multi-get answers).
func (d *DirectHub) Updates(ctx context.Context, cluster string, comps []wire.ComponentVersion) ([]wire.ComponentVersion, error) {
	r, err := d.reports.Get(ctx, types.NamespacedName{Namespace: d.namespace, Name: trainyardv1.ClusterReportName(cluster)}, true)
	if err != nil {
		return nil, err
	}
	type key struct{ name, train, installed string }
	latest := map[key]string{}
	if !r.StatusCurrent() {
		// Computed for an earlier spec: no update is known yet (the next
		// check-in reads the status computed for this one).
		r.Status.Components = nil
	}
	for _, s := range r.Status.Components {
		if l := s.GetLatest(); l != "" && trainyardv1.CanonicalVersion(l) != trainyardv1.CanonicalVersion(s.Installed) {
			latest[key{s.Name, r.TrainOf(s.Name), s.Installed}] = l
		}
	}
	out := make([]wire.ComponentVersion, len(comps))
	for i, cv := range comps {
		out[i] = wire.ComponentVersion{Component: cv.Component, Version: cv.Version}
		if cv.Component != nil && cv.Version != nil {
			out[i].UpdateAvailable = latest[key{cv.Component.Name, cv.Version.Train, cv.Version.Version}]
		}
	}
	return out, nil
}
