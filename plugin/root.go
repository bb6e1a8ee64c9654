// Package plugin is `kubectl trainyard`, the command line of platform
// engineers: which clusters run what, which are behind, why, and publishing
// or retracting a release. It reads and writes the custom resources through
// the API server with the user's own kubeconfig and RBAC; it needs no bridge.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// Exit codes, documented in docs/cli.md. outdated and diff use 1 and 2 as
// answers (so that CI jobs and cron checks can use them), which is why an
// error is 3 rather than kubectl's 1.
const (
	ExitOK        = 0
	ExitOutdated  = 1 // outdated: something is behind; diff: the clusters differ
	ExitRetracted = 2 // outdated: some cluster runs a retracted release
	ExitError     = 3
)

// exitCode is an answer carried out of a command as an error.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Options are what a caller (the binary, a test) chooses beyond the flags.
type Options struct {
	Streams genericiooptions.IOStreams
	// Now is the clock that ages are computed against (time.Now when nil).
	Now func() time.Time
	// WrapTransport, when set, wraps the connection to the API server (a
	// test records the requests a command makes).
	WrapTransport transport.WrapperFunc
}

// globals are the flags every command shares.
type globals struct {
	Options
	config        *genericclioptions.ConfigFlags
	allNamespaces bool
	output        string
	noHeaders     bool
	// chunkSize is the page size of the reports' list (kubectl's --chunk-size).
	chunkSize int
	// client, and rest for the pipelined lists, are set up by connect on
	// first use.
	client client.Client
	rest   rest.Interface
}

// Run runs `kubectl trainyard` with args (without the program name) and
// returns the process's exit code.
func Run(args []string, o Options) int {
	out, errOut := newPrintable(o.Streams.Out), newPrintable(o.Streams.ErrOut)
	defer out.flush()
	defer errOut.flush()
	o.Streams.Out, o.Streams.ErrOut = out, errOut
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	err := cmd.Execute()
	var code exitCode
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &code):
		return int(code)
	default:
		fmt.Fprintln(o.Streams.ErrOut, "error:", err)
		return ExitError
	}
}

// NewCommand is the root command with every subcommand.
func NewCommand(o Options) *cobra.Command {
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &globals{Options: o, config: genericclioptions.NewConfigFlags(true)}
	// --cluster is outdated's filter by cluster ID, as users of a fleet
	// tool expect; kubeconfig's cluster is chosen with --context.
	g.config.ClusterName = nil
	root := &cobra.Command{
		Use:   "kubectl-trainyard",
		Short: "The fleet at a glance: which clusters run what, and which are behind",
		Long: "kubectl trainyard reads trainyard's custom resources (ClusterReports, ReleaseTrains, " +
			"ComponentReleases) with your kubeconfig: the fleet, what is outdated and why, trains and their " +
			"adoption, and it publishes and retracts releases.\n\n" +
			"Exit codes: 0 success; outdated: 1 something is behind, 2 some cluster runs a retracted release; " +
			"diff: 1 the clusters differ; exposed: 1 some cluster runs a version the advisory affects; 3 an error.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			// kubectl shows plugin commands as "kubectl trainyard".
			cobra.CommandDisplayNameAnnotation: "kubectl trainyard",
		},
	}
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	root.SetIn(o.Streams.In)
	root.PersistentPreRunE = g.checkOutput
	g.config.AddFlags(root.PersistentFlags())
	root.PersistentFlags().BoolVarP(&g.allNamespaces, "all-namespaces", "A", false,
		"Read every namespace (the namespace of each row is shown).")
	root.AddCommand(fleetCommand(g), outdatedCommand(g), trainCommand(g), whyCommand(g), historyCommand(g), rolloutCommand(g), diffCommand(g),
		publishCommand(g), retractCommand(g), clusterCommand(g), advisoryCommand(g), advisoriesCommand(g), exposedCommand(g), versionCommand(g))
	return root
}

// addOutput adds -o and --no-headers; formats are what the command offers,
// the first the default. The root's PersistentPreRunE checks the choice.
func (g *globals) addOutput(cmd *cobra.Command, formats ...string) {
	// Each command has its own default, so its own variable: checkOutput
	// copies the choice into g.output.
	cmd.Flags().StringP("output", "o", formats[0], "Output format: "+joinOr(formats)+".")
	cmd.Flags().BoolVar(&g.noHeaders, "no-headers", false, "Do not print table headers.")
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[outputsAnnotation] = strings.Join(formats, ",")
}

const outputsAnnotation = "trainyard.dev/outputs"

// checkOutput refuses an -o the command does not offer.
func (g *globals) checkOutput(cmd *cobra.Command, _ []string) error {
	offered, ok := cmd.Annotations[outputsAnnotation]
	if !ok {
		return nil
	}
	formats := strings.Split(offered, ",")
	g.output, _ = cmd.Flags().GetString("output")
	if !slices.Contains(formats, g.output) {
		return fmt.Errorf("--output must be %s, not %q", joinOr(formats), g.output)
	}
	return nil
}

func joinOr(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	default:
		out := s[0]
		for _, x := range s[1 : len(s)-1] {
			out += ", " + x
		}
		return out + " or " + s[len(s)-1]
	}
}

// connect builds the client from kubectl's flags, once.
func (g *globals) connect() (client.Client, error) {
	if g.client != nil {
		return g.client, nil
	}
	cfg, err := g.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	// Reading a fleet is a few large paged lists, not a stream of requests.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "kubectl-trainyard/" + version.Get().Version
	// The webhook's warnings (a version that will never be latest) are
	// printed as kubectl prints them.
	cfg.WarningHandler = rest.NewWarningWriter(g.Streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	if g.WrapTransport != nil {
		cfg.Wrap(g.WrapTransport)
	}
	scheme := runtime.NewScheme()
	if err := trainyardv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	rc := rest.CopyConfig(cfg)
	rc.GroupVersion, rc.APIPath = &trainyardv1.GroupVersion, "/apis"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if g.rest, err = rest.RESTClientFor(rc); err != nil {
		return nil, err
	}
	g.client = c
	return c, nil
}

// namespace is the namespace of single-namespace commands, and of lists
// unless -A: --namespace, else the kubeconfig context's, else "default".
func (g *globals) namespace() (string, error) {
	ns, _, err := g.config.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// listNamespace is a list's namespace ("" with -A).
func (g *globals) listNamespace() (string, error) {
	if g.allNamespaces {
		return "", nil
	}
	return g.namespace()
}

// clientIn is the client and the namespace of a command that works in one
// namespace, which -A cannot choose.
func (g *globals) clientIn(command string) (client.Client, string, error) {
	if g.allNamespaces {
		return nil, "", fmt.Errorf("%s works in one namespace: use -n, not -A", command)
	}
	c, err := g.connect()
	if err != nil {
		return nil, "", err
	}
	ns, err := g.namespace()
	return c, ns, err
}

// clientForList is the client and the namespace of a list ("" with -A).
func (g *globals) clientForList() (client.Client, string, error) {
	c, err := g.connect()
	if err != nil {
		return nil, "", err
	}
	ns, err := g.listNamespace()
	return c, ns, err
}

// pageSize is kubectl's chunk size: a 10,000-report fleet comes in 20
// pages, none of which holds the API server long.
const pageSize = 500

// addChunkSize adds kubectl's --chunk-size to a command that lists reports.
func (g *globals) addChunkSize(cmd *cobra.Command) {
	cmd.Flags().IntVar(&g.chunkSize, "chunk-size", pageSize,
		"Read the ClusterReports in pages of this many, as kubectl does (0: in one request).")
}

// releases lists the ComponentReleases of ns ("": every namespace).
func (g *globals) releases(ctx context.Context, ns string) ([]trainyardv1.ComponentRelease, error) {
	items, _, err := listPipelined[trainyardv1.ComponentReleaseList](ctx, g.rest, "componentreleases", ns, "", "", pageSize,
		func(l *trainyardv1.ComponentReleaseList) []trainyardv1.ComponentRelease { return l.Items })
	return items, err
}

// trains lists the ReleaseTrains of ns ("": every namespace).
func (g *globals) trains(ctx context.Context, ns string) ([]trainyardv1.ReleaseTrain, error) {
	items, _, err := listPipelined[trainyardv1.ReleaseTrainList](ctx, g.rest, "releasetrains", ns, "", "", pageSize,
		func(l *trainyardv1.ReleaseTrainList) []trainyardv1.ReleaseTrain { return l.Items })
	return items, err
}

// out is where a command writes its answer.
func (g *globals) out() io.Writer { return g.Streams.Out }
