package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	return nil
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
