package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WebhookPrefix is what InstallWebhooks puts before the generated names, to
// match the manager's default --mutating-webhook-configuration and
// --validating-webhook-configuration (the names its self-signed CA goes to).
const WebhookPrefix = "trainyard-"

// ReadObjects decodes the objects of a multi-document YAML file.
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// InstallWebhooks creates the generated webhook configurations in path
// (config/webhook/manifests.yaml) under the names the manager expects,
// calling https://127.0.0.1:port instead of a Service. A manager started
// with --webhook-port=port --webhook-host=127.0.0.1 --webhook-ip-sans=127.0.0.1
// and a --namespace injects its CA into them.
func InstallWebhooks(ctx context.Context, c client.Client, path string, port int) error {
	objs, err := ReadObjects(path)
	if err != nil {
		return err
	}
	for _, u := range objs {
		u.SetName(WebhookPrefix + u.GetName())
		hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		for i, h := range hooks {
			hm := h.(map[string]any)
			svcPath, _, _ := unstructured.NestedString(hm, "clientConfig", "service", "path")
			hm["clientConfig"] = map[string]any{"url": fmt.Sprintf("https://127.0.0.1:%d%s", port, svcPath)}
			hooks[i] = hm
		}
		if err := unstructured.SetNestedSlice(u.Object, hooks, "webhooks"); err != nil {
			return err
		}
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("%s: %w", u.GetName(), err)
		}
	}
	// The admission policies beside them (policy.yaml), as the chart
	// installs both. An older commit's configuration (a benchmark's
	// before) has none beside it.
	if p := filepath.Join(filepath.Dir(path), "policy.yaml"); fileExists(p) {
		if err := InstallPoliciesFrom(ctx, c, p); err != nil {
			return err
		}
		return WaitPolicies(c)
	}
	return nil
}

// WaitPolicies waits until the API server runs the report policy. It runs
// a policy for a custom resource only once it has the resource's schema
// (polled every 5 s), and until then refuses the writes the policy matches
// with 503. Called before the webhook is served, a dry-run create of a
// report fails either way, and where it fails tells: at the validating
// webhook once the policy has cleared the managedFields (the mutating one's
// matchConditions skip it), at the mutating webhook before the policy is
// loaded. So it is called before the manager starts.
func WaitPolicies(c client.Client) error {
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trainyard.dev/v1alpha1", "kind": "ClusterReport",
		"metadata": map[string]any{"namespace": "default", "name": "policy-probe"},
		"spec":     map[string]any{"clusterID": "policy-probe"},
	}}
	var err error
	if wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err = c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), `"vclusterreport.trainyard.dev"`), nil
	}) != nil {
		return fmt.Errorf("the API server did not run the report policy within a minute; a dry-run create: %v", err)
	}
	return nil
}

// InstallPolicies creates the admission policies of config/webhook/policy.yaml
// (the MutatingAdmissionPolicy that drops a report's managedFields in the
// API server), as the chart does on Kubernetes >= 1.36.
func InstallPolicies(ctx context.Context, c client.Client) error {
	return InstallPoliciesFrom(ctx, c, filepath.Join(RepoRoot(), "config", "webhook", "policy.yaml"))
}

// InstallPoliciesFrom creates the objects of path as they are, or updates
// them to that (a dev control plane's data outlives its runs).
func InstallPoliciesFrom(ctx context.Context, c client.Client, path string) error {
	objs, err := ReadObjects(path)
	if err != nil {
		return err
	}
	for _, u := range objs {
		err := c.Create(ctx, u)
		if apierrors.IsAlreadyExists(err) {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(u.GroupVersionKind())
			if err = c.Get(ctx, client.ObjectKeyFromObject(u), cur); err == nil {
				u.SetResourceVersion(cur.GetResourceVersion())
				err = c.Update(ctx, u)
			}
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// RemoveWebhooks deletes what InstallWebhooks created, if it is there.
func RemoveWebhooks(ctx context.Context, c client.Client) error {
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("admissionregistration.k8s.io/v1")
		u.SetKind(kind)
		u.SetName(WebhookPrefix + strings.ToLower(strings.TrimSuffix(kind, "WebhookConfiguration")) + "-webhook-configuration")
		if err := c.Delete(ctx, u); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}
