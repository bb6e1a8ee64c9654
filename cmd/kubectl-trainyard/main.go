// Command kubectl-trainyard is the kubectl plugin `kubectl trainyard`: put it
// on PATH (or install it with krew, plugins/krew/trainyard.yaml) and run
// `kubectl trainyard --help`. See docs/cli.md.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trainyard-dev/trainyard/plugin"
)

func main() {
	os.Exit(plugin.Run(os.Args[1:], plugin.Options{
		Streams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	}))
}
