package plugin

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/trainyard-dev/trainyard/internal/osv"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

func advisoryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "advisory",
		Short: "Work with Advisories (docs/advisories.md)",
	}
	var component string
	var trains []string
	imp := &cobra.Command{
		Use:   "import <osv.json|->",
		Short: "Turn an OSV record (a file, or - for standard input) into an Advisory of a component, printed for kubectl apply -f -",
		Long: `Turn an OSV record into an Advisory of a component, and print it. Nothing is read from the
network and nothing is written to the cluster: pipe the output to kubectl apply -f -.
What trainyard cannot use (GIT ranges, versions that are not semantic versions, CVSS v4
vectors, whose score is not computed) is left out, each with a warning on stderr. The
Advisory is checked as the webhook would check it.`,
		Example: `  kubectl trainyard advisory import GHSA-h62f-wm92-2cmw.json --component registry | kubectl apply -f -
  curl -s https://api.osv.dev/v1/vulns/GO-2021-0072 | kubectl trainyard advisory import - --component registry --train stable`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			d, err := osv.Decode(in)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			a, warnings, err := osv.ToAdvisory(d, component, trains)
			for _, w := range warnings {
				fmt.Fprintln(g.Streams.ErrOut, "warning:", w)
			}
			if err != nil {
				return err
			}
			if errs := validation.Advisory(a); len(errs) > 0 {
				return fmt.Errorf("the Advisory would be refused: %w", errs.ToAggregate())
			}
			return g.print(a, nil)
		},
	}
	imp.Flags().StringVar(&component, "component", "", "The component the record's packages are, as ComponentReleases name it (required).")
	imp.Flags().StringSliceVar(&trains, "train", nil, "Only these trains (repeat or comma-separate); default: every train.")
	_ = imp.MarkFlagRequired("component")
	g.addOutput(imp, "yaml", "json")
	cmd.AddCommand(imp)
	return cmd
}
