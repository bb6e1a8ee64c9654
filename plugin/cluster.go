package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/credential"
)

// clusterCommand is a cluster's bridge identity (docs/bridge.md, "Cluster
// identity"): revoking its credential, and re-opening a revoked cluster for
// one registration.
func clusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "A cluster's bridge identity: revoke its credential, or reissue it for one registration",
	}
	cmd.AddCommand(revokeCommand(g), reissueCommand(g))
	return cmd
}

func revokeCommand(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke <cluster-id> --reason <why>",
		Short:   "Revoke every credential of a cluster: its check-ins answer 401 until it is reissued",
		Example: `  kubectl trainyard cluster revoke 9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c --reason "laptop stolen"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("give --reason: why the credential is revoked (it is kept on the report)")
			}
			// An open reissue token is closed too: whoever revokes wants
			// nobody in until a new one is made.
			value := g.Now().UTC().Format(time.RFC3339) + " " + reason
			return g.patchIdentity(cmd.Context(), args[0], "revoked", map[string]*string{
				trainyardv1.AnnotationCredentialRevoked: &value, trainyardv1.AnnotationReissueHash: nil, trainyardv1.AnnotationReissueExpires: nil,
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "Why the credential is revoked (kept in the annotation, after the time).")
	return cmd
}

func reissueCommand(g *globals) *cobra.Command {
	ttl := time.Hour
	cmd := &cobra.Command{
		Use:   "reissue <cluster-id> [--ttl 1h]",
		Short: "Print a single-use token that registers this one cluster again (after a revocation, or a lost credential)",
		Long: "reissue re-opens a cluster for one registration through the bridge: it prints a token (tyr....) that " +
			"registers that cluster ID only, once, within --ttl. Give it to the cluster's agent as its registration " +
			"token; the registration issues a new credential and closes the token. A registration token does not take " +
			"a revoked cluster back: it usually sits next to the stolen credential. The token goes to standard output " +
			"alone; what to do with it, to standard error.",
		Example: `  TOKEN=$(kubectl trainyard cluster reissue 9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c --ttl 30m)`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Minute || ttl > trainyardv1.MaxReissueLifetime {
				return fmt.Errorf("--ttl must be between 1m and %s, not %s", trainyardv1.MaxReissueLifetime, ttl)
			}
			token, hash := credential.New(credential.ReissuePrefix)
			expires := g.Now().Add(ttl).UTC().Truncate(time.Second).Format(time.RFC3339)
			if err := g.patchIdentity(cmd.Context(), args[0], "", map[string]*string{
				trainyardv1.AnnotationReissueHash: &hash, trainyardv1.AnnotationReissueExpires: &expires,
			}); err != nil {
				return err
			}
			fmt.Fprintf(g.Streams.ErrOut, "A single-use token that registers cluster %s once, until %s (only the newest token made works).\n"+
				"Put it in the agent's registration-token Secret on that cluster (it is read at each attempt); "+
				"the registration issues a new credential.\n", args[0], expires)
			_, err := fmt.Fprintln(g.out(), token)
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", ttl, "How long the token registers the cluster (at most 24h).")
	return cmd
}

// patchIdentity merge-patches the identity annotations of the report of
// clusterID, and says verb (when not "") as kubectl does. No
// resourceVersion: the patch touches only these annotations, and the
// bridge's own identity writes are optimistic, so they see it and decide
// again; a check-in meanwhile must not make a revocation fail.
func (g *globals) patchIdentity(ctx context.Context, clusterID, verb string, annotations map[string]*string) error {
	c, ns, err := g.clientIn("cluster")
	if err != nil {
		return err
	}
	r := &trainyardv1.ClusterReport{}
	name := trainyardv1.ClusterReportName(clusterID)
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, r); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster %s has no ClusterReport in namespace %q (no clusterreport %s): a cluster that never registered registers with a registration token", clusterID, ns, name)
		}
		return err
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, r, client.RawPatch(types.MergePatchType, body)); err != nil {
		return err
	}
	if verb == "" {
		return nil
	}
	_, err = fmt.Fprintf(g.out(), "clusterreport.trainyard.dev/%s %s\n", name, verb)
	return err
}
