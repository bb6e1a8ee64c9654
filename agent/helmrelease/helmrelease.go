// Package helmrelease reads the deployed Helm releases of a cluster from
// Helm 3's storage Secrets (type helm.sh/release.v1), for the agent to
// report charts as components.
package helmrelease

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// Helm's storage driver labels its release Secrets with these.
const (
	SecretType  = "helm.sh/release.v1"
	LabelOwner  = "owner"
	LabelStatus = "status"
	LabelName   = "name"
)

// MaxRelease bounds a release's decompressed JSON: a Secret holds at most
// 1 MiB, and gzip's best ratio is about 1:1000, so this only stops a bomb.
const MaxRelease = 64 << 20

// pageSize keeps one page of release Secrets (up to 1 MiB each) in memory.
const pageSize = 10

// Release is what the agent reports of a deployed Helm release.
type Release struct {
	Namespace, Name string
	// Labels of the release Secret (`helm install --labels` sets them).
	Labels                          map[string]string
	Chart, ChartVersion, AppVersion string
}

// List returns the deployed releases in namespaces (all when empty), reading
// the Secrets page by page from the API server (core is a core/v1 REST
// client) rather than caching them: they are large and read only at
// check-in time.
func List(ctx context.Context, core rest.Interface, namespaces []string) ([]Release, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	selector := labels.SelectorFromSet(labels.Set{LabelOwner: "helm", LabelStatus: "deployed"}).String()
	var out []Release
	for _, ns := range namespaces {
		cont := ""
		for {
			var page corev1.SecretList
			err := core.Get().Namespace(ns).Resource("secrets").
				VersionedParams(&metav1.ListOptions{Limit: pageSize, Continue: cont, LabelSelector: selector,
					FieldSelector: fields.OneTermEqualSelector("type", SecretType).String()}, metav1.ParameterCodec).
				Do(ctx).Into(&page)
			if err != nil {
				return nil, err
			}
			for _, s := range page.Items {
				r := Release{Namespace: s.Namespace, Name: s.Labels[LabelName], Labels: s.Labels}
				if r.Name == "" {
					r.Name = s.Name
				}
				if r.Chart, r.ChartVersion, r.AppVersion, err = Decode(s.Data["release"]); err != nil {
					// One unreadable release does not hide the others.
					r.Chart = ""
				}
				out = append(out, r)
			}
			if cont = page.Continue; cont == "" {
				break
			}
		}
	}
	return out, nil
}

// Decode reads the chart of a release from the Secret's "release" value:
// base64 of (usually gzipped) JSON.
func Decode(data []byte) (chart, version, appVersion string, err error) {
	if len(data) == 0 {
		return "", "", "", errors.New("no release data")
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(data)))
	n, err := base64.StdEncoding.Decode(raw, data)
	if err != nil {
		return "", "", "", fmt.Errorf("release data is not base64: %w", err)
	}
	var r io.Reader = bytes.NewReader(raw[:n])
	if n >= 3 && bytes.Equal(raw[:3], []byte{0x1f, 0x8b, 0x08}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", "", "", fmt.Errorf("release data: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	var rel struct {
		Chart struct {
			Metadata struct {
				Name       string `json:"name"`
				Version    string `json:"version"`
				AppVersion string `json:"appVersion"`
			} `json:"metadata"`
		} `json:"chart"`
	}
	if err := json.NewDecoder(io.LimitReader(r, MaxRelease)).Decode(&rel); err != nil {
		return "", "", "", fmt.Errorf("release data is not a Helm release: %w", err)
	}
	m := rel.Chart.Metadata
	if m.Name == "" || m.Version == "" {
		return "", "", "", errors.New("release has no chart name or version")
	}
	return m.Name, m.Version, m.AppVersion, nil
}
