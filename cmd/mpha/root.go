package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mpha-dev/mpha/internal/logging"
)

// globalOptions are the flags every subcommand shares. Each is also read from MPHA_<FLAG>
// (upper snake case) when not given on the command line.
type globalOptions struct {
	kubeconfig string
	context    string
	logFormat  string
	logLevel   string

	stdout, stderr io.Writer
	logger         *slog.Logger
}

func (o *globalOptions) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	fs.StringVar(&o.context, "context", "", "the kubeconfig context to use (default: its current context)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log encoding: "+strings.Join(logging.Formats, "|"))
	fs.StringVar(&o.logLevel, "log-level", "info", "log threshold: debug|info|warn|error")
}

// restConfig loads the Kubernetes client configuration the way kubectl does.
func (o *globalOptions) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	return newRoot(&globalOptions{stdout: stdout, stderr: stderr})
}

// newRoot builds the command tree around o, which every subcommand reads after flag parsing.
func newRoot(o *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "mpha",
		Short:         "Keep a standby TSB management plane ready and fail over through Git",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			l, err := logging.New(o.stderr, logging.Options{Format: o.logFormat, Level: o.logLevel})
			if err != nil {
				return err
			}
			o.logger = l
			logging.RouteKlog(l)
			return nil
		},
	}
	root.SetOut(o.stdout)
	root.SetErr(o.stderr)
	o.bindFlags(root.PersistentFlags())
	root.AddCommand(newVersionCommand(o), newConfigCommand(o), newSecretsCommand(o), newValuesCommand(o), newDoctorCommand(o), newAuditCommand(o), newStatusCommand(o),
		newFailoverCommand(o), newFailbackCommand(o), newDrillCommand(o), newAgentCommand(o), newDBCommand(o))
	return root
}

// bindEnv fills every flag not set on the command line from MPHA_<NAME> (dashes to underscores),
// so flags win over the environment.
func bindEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "MPHA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %v", errs)
	}
	return nil
}
