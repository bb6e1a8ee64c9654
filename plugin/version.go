package plugin

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trainyard-dev/trainyard/internal/version"
)

func versionCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "The plugin's version and commit",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if g.output == "json" || g.output == "yaml" {
				return g.print(version.Get(), nil)
			}
			_, err := fmt.Fprintln(g.out(), "kubectl-trainyard", version.Get())
			return err
		},
	}
	g.addOutput(cmd, "text", "json", "yaml")
	return cmd
}
