package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// invalid is the error the admission webhook answers for errs, word for
// word: the plugin checks with the same rules before it sends anything.
func invalid(name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: trainyardv1.GroupVersion.Group, Kind: "ComponentRelease"}, name, errs)
}

func publishCommand(g *globals) *cobra.Command {
	var (
		r        trainyardv1.ComponentRelease
		released string
		data     []string
		bundle   string
		dryRun   bool
	)
	cmd := &cobra.Command{
		Use:   "publish <component> <version>",
		Short: "Publish a release: create its ComponentRelease, checked as the admission webhook checks it",
		Example: `  kubectl trainyard publish router v2.5.0 --train stable --image quay.io/example/router:v2.5.0 \
      --description "Router with HTTP/3" --data changelog=https://example.com/router/v2.5.0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.clientIn("publish")
			if err != nil {
				return err
			}
			r.Namespace, r.Spec.Component, r.Spec.Version = ns, args[0], args[1]
			if released != "" {
				t, err := time.Parse(time.RFC3339, released)
				if err != nil {
					return fmt.Errorf("--released must be an RFC 3339 time such as 2026-12-01T09:30:00Z, not %q", released)
				}
				mt := metav1.NewTime(t)
				r.Spec.Released = &mt
			}
			for _, kv := range data {
				k, val, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--data must be key=value, not %q", kv)
				}
				if r.Spec.Data == nil {
					r.Spec.Data = map[string]string{}
				}
				r.Spec.Data[k] = val
			}
			if bundle != "" {
				b, err := g.readBundle(bundle)
				if err != nil {
					return err
				}
				r.Spec.SignatureBundle = string(b)
			}
			r.Name = trainyardv1.ReleaseName(r.Spec.Component, r.Spec.Train, r.Spec.Version)
			if errs := validation.ComponentRelease(&r, nil); len(errs) > 0 {
				return invalid(r.Name, errs)
			}
			var opts []client.CreateOption
			if dryRun {
				opts = append(opts, client.DryRunAll)
			}
			if err := c.Create(cmd.Context(), &r, opts...); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("%s %s is already published on %s (ComponentRelease %s/%s)", r.Spec.Component, r.Spec.Version, r.Spec.Train, ns, r.Name)
				}
				return err
			}
			return g.done(&r, "published", dryRun)
		},
	}
	g.addOutput(cmd, "name", "json", "yaml")
	fl := cmd.Flags()
	fl.StringVar(&r.Spec.Train, "train", trainyardv1.DefaultTrain, "Train to publish on.")
	fl.StringVar(&released, "released", "", "Release time, RFC 3339 (default: now, set by the webhook).")
	fl.StringVar(&r.Spec.Description, "description", "", "What the release is.")
	fl.StringVar(&r.Spec.Fixes, "fixes", "", "What it fixes.")
	fl.StringVar(&r.Spec.Image, "image", "", "Its container image; by digest (@sha256:…) where a TrustPolicy covers the train.")
	fl.StringVar(&bundle, "bundle", "", "A Sigstore bundle signing the image's digest (cosign sign-blob --bundle … --new-bundle-format), a file or - for standard input (docs/verification.md).")
	fl.StringArrayVar(&data, "data", nil, "An extra attribute, key=value (repeatable).")
	fl.BoolVar(&dryRun, "dry-run", false, "Send the request as a server-side dry run: checked by the API server and the webhook, stored nowhere.")
	return cmd
}

// readBundle reads a Sigstore bundle, refusing more than a release holds.
func (g *globals) readBundle(path string) ([]byte, error) {
	in := g.Streams.In
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--bundle: %w", err)
		}
		defer f.Close()
		in = f
	}
	b, err := io.ReadAll(io.LimitReader(in, maxBundle+1))
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	if len(b) > maxBundle {
		return nil, fmt.Errorf("--bundle: %s is larger than %d bytes, more than a Sigstore bundle of one signature", path, maxBundle)
	}
	return bytes.TrimSpace(b), nil
}

// maxBundle is spec.signatureBundle's limit (its schema's maxLength).
const maxBundle = 64 << 10

func retractCommand(g *globals) *cobra.Command {
	var reason string
	var undo, dryRun bool
	cmd := &cobra.Command{
		Use:   "retract <component>[.<train>] <version> --reason <why>",
		Short: "Retract a release with a reason (--undo: withdraw the retraction); clusters running it are flagged",
		Example: `  kubectl trainyard retract controller.stable 1.8.1 --reason "Corrupts the cache on upgrade; use 1.8.0"
  kubectl trainyard retract controller.stable 1.8.1 --undo`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if undo == (reason != "") {
				return fmt.Errorf("give --reason (why the release is withdrawn) or --undo, not both or neither")
			}
			return g.retract(cmd.Context(), args[0], args[1], reason, undo, dryRun)
		},
	}
	g.addOutput(cmd, "name", "json", "yaml")
	cmd.Flags().StringVar(&reason, "reason", "", "Why the release is withdrawn; users see it in `outdated`, `why` and the cluster's conditions.")
	cmd.Flags().BoolVar(&undo, "undo", false, "Withdraw the retraction.")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "Send the request as a server-side dry run.")
	return cmd
}

func (g *globals) retract(ctx context.Context, trainArg, version, reason string, undo, dryRun bool) error {
	c, ns, err := g.clientIn("retract")
	if err != nil {
		return err
	}
	component, train, _ := strings.Cut(trainName(trainArg), ".")
	name := trainyardv1.ReleaseName(component, train, version)
	old := &trainyardv1.ComponentRelease{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, old); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s %s is not published on %s in namespace %q (no ComponentRelease %s)", component, version, train, ns, name)
		}
		return err
	}
	r := old.DeepCopy()
	var patch map[string]any
	if undo {
		if old.Spec.Retracted == nil {
			return fmt.Errorf("%s %s on %s is not retracted", component, version, train)
		}
		r.Spec.Retracted = nil
		patch = map[string]any{"spec": map[string]any{"retracted": nil}}
	} else {
		since := metav1.NewTime(g.Now().UTC().Truncate(time.Second))
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: reason, Since: &since}
		patch = map[string]any{"spec": map[string]any{"retracted": r.Spec.Retracted}}
	}
	if errs := validation.ComponentRelease(r, old); len(errs) > 0 {
		return invalid(r.Name, errs)
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	// A merge patch of spec.retracted only, guarded by the resourceVersion
	// read: a concurrent edit makes this fail rather than be overwritten.
	opts := []client.PatchOption{}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	if err := c.Patch(ctx, r, client.RawPatch(types.MergePatchType, withResourceVersion(body, old.ResourceVersion)), opts...); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("%s changed while it was being retracted; run the command again: %w", name, err)
		}
		return err
	}
	verb := "retracted"
	if undo {
		verb = "no longer retracted"
	}
	return g.done(r, verb, dryRun)
}

// withResourceVersion adds metadata.resourceVersion to a merge patch, which
// makes the API server refuse it with 409 if the object changed since.
func withResourceVersion(patch []byte, rv string) []byte {
	var m map[string]any
	_ = json.Unmarshal(patch, &m)
	m["metadata"] = map[string]any{"resourceVersion": rv}
	b, _ := json.Marshal(m)
	return b
}

// done reports a write: kubectl's "<kind>/<name> <verb>", or the object.
func (g *globals) done(r *trainyardv1.ComponentRelease, verb string, dryRun bool) error {
	if g.output == "json" || g.output == "yaml" {
		r.APIVersion, r.Kind = trainyardv1.GroupVersion.String(), "ComponentRelease"
		return g.print(r, nil)
	}
	suffix := ""
	if dryRun {
		suffix = " (server dry run)"
	}
	_, err := fmt.Fprintf(g.out(), "componentrelease.trainyard.dev/%s %s%s\n", r.Name, verb, suffix)
	return err
}
