package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The agent keeps its cluster's credential (what the hub's bridge issued it
// at registration) in one Secret of its own namespace; it reads and writes
// that Secret only, by name. `make manifests` writes this Role into
// config/agent; the chart renders its own for the Secret it creates.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=trainyard-agent-credential,verbs=get;patch

// CredentialKey is the Secret key of the credential.
const CredentialKey = "credential"

// Credentials keeps the cluster's credential.
type Credentials interface {
	// Load reads the stored credential ("" when there is none).
	Load(ctx context.Context) (string, error)
	// Save stores credential ("" forgets it).
	Save(ctx context.Context, credential string) error
}

// SecretCredentials keeps the credential in the Secret Namespace/Name of the
// workload cluster. Save patches it; when it does not exist (the chart
// creates it empty), Save creates it, which needs create on Secrets.
type SecretCredentials struct {
	Kube            *Kube
	Namespace, Name string
}

// Load reads the Secret.
func (s SecretCredentials) Load(ctx context.Context) (string, error) {
	sec := &corev1.Secret{}
	err := s.Kube.Core.Get().Namespace(s.Namespace).Resource("secrets").Name(s.Name).Timeout(30 * time.Second).Do(ctx).Into(sec)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading the credential Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return strings.TrimSpace(string(sec.Data[CredentialKey])), nil
}

// Save patches (or creates) the Secret.
func (s SecretCredentials) Save(ctx context.Context, credential string) error {
	patch, _ := json.Marshal(map[string]any{"data": map[string][]byte{CredentialKey: []byte(credential)}})
	err := s.Kube.Core.Patch(types.MergePatchType).Namespace(s.Namespace).Resource("secrets").Name(s.Name).
		Timeout(30 * time.Second).Body(patch).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "trainyard-agent"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{CredentialKey: []byte(credential)}}
		err = s.Kube.Core.Post().Namespace(s.Namespace).Resource("secrets").Timeout(30 * time.Second).Body(sec).Do(ctx).Error()
	}
	if err != nil {
		return fmt.Errorf("storing the credential in the Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// MemoryCredentials keeps the credential in memory only: after a restart
// the agent cannot check in until its credential is revoked on the hub.
type MemoryCredentials struct{ credential string }

func (m *MemoryCredentials) Load(context.Context) (string, error) { return m.credential, nil }

func (m *MemoryCredentials) Save(_ context.Context, c string) error {
	m.credential = c
	return nil
}

// PodNamespace is the namespace the agent runs in: $POD_NAMESPACE, else the
// ServiceAccount's, else "default" (outside a cluster).
func PodNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return metav1.NamespaceDefault
}
