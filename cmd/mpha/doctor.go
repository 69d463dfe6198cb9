package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/values"
)

// Doctor's exit statuses besides 0 (no check failed, warnings allowed); 1 is every mpha error.
const exitChecksFailed = 2

// checksFailedError reports failed checks; main exits with its ExitCode.
type checksFailedError struct{ failed []string }

func (e *checksFailedError) Error() string {
	return fmt.Sprintf("%d check(s) failed: %s", len(e.failed), strings.Join(e.failed, ", "))
}

// ExitCode is the process's exit status for this error.
func (e *checksFailedError) ExitCode() int { return exitChecksFailed }

type doctorOptions struct {
	active, standby    string
	namespace, release string
	floatingFQDN       string
	secrets            []string
	config, output     string
	render             values.Options
}

// newDoctorCommand checks a pair's readiness live from a workstation: the checks the agents run,
// with both clusters in view.
func newDoctorCommand(o *globalOptions) *cobra.Command {
	do := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor --active CONTEXT --standby CONTEXT",
		Short: "Check that the standby management plane could take over (kids, secrets, root CA, values)",
		Long: `Reads both management planes live through two contexts of the kubeconfig and runs the readiness
checks of docs/design.md §7, as the agents do:

` + doctorChecks() + `
Digests are keyed with a random key made for this run. Evidence names secrets, kids, fingerprints
and value paths, never values. A failover's preflight adds the checks that only the target's
agent can run: ` + strings.Join(preflightOnlyChecks(), ", ") + ` (` + "`mpha failover request --dry-run`" + ` shows them).

Exit status: 0 when no check fails (warnings allowed), 1 when doctor could not run (bad flags, an
unreachable cluster), 2 when at least one check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := do.complete(cmd, o); err != nil {
				return err
			}
			return runDoctor(cmd.Context(), o, do)
		},
	}
	f := cmd.Flags()
	f.StringVar(&do.active, "active", "", "the kubeconfig context of the active management plane's cluster")
	f.StringVar(&do.standby, "standby", "", "the kubeconfig context of the standby's cluster")
	f.StringVar(&do.namespace, "namespace", "tsb", "the management plane's namespace (when not given: --config's kubernetes.namespace)")
	f.StringVar(&do.release, "release", "mp", "the management plane's Helm release (when not given: --config's kubernetes.helmRelease)")
	f.StringVar(&do.floatingFQDN, "floating-fqdn", "", "the pair's floating FQDN, which the leaf certificates must carry (unchecked when unset)")
	f.StringSliceVar(&do.secrets, "secrets", nil, "the exported secrets to compare (default: the config's secrets.names, then "+strings.Join(agent.DefaultSecretNames("helm"), ",")+")")
	f.StringVar(&do.config, "config", "", "an agent configuration file: standby.overrides, secrets.names, kubernetes.namespace and helmRelease")
	f.StringVarP(&do.output, "output", "o", "table", "table|json")
	return cmd
}

// doctorChecks lists the checks doctor runs, one per line, from the readiness package: its help
// cannot fall behind what it runs.
func doctorChecks() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, c := range readiness.Checks() {
		fmt.Fprintf(tw, "  %s\t%s\n", c, readiness.Describe(c))
	}
	tw.Flush()
	return b.String()
}

// preflightOnlyChecks are the failover preflight's checks doctor does not run.
func preflightOnlyChecks() []string {
	var out []string
	for _, c := range event.CheckNames() {
		if !slices.Contains(readiness.Checks(), c) {
			out = append(out, c)
		}
	}
	return out
}

// complete checks the flags and fills what they leave unset from --config, then the defaults.
func (do *doctorOptions) complete(cmd *cobra.Command, o *globalOptions) error {
	switch {
	case do.active == "" || do.standby == "":
		return errors.New("--active and --standby are required")
	case do.active == do.standby:
		return fmt.Errorf("--active and --standby are both %q", do.active)
	case do.output != "table" && do.output != "json":
		return fmt.Errorf("--output %q: want table or json", do.output)
	}
	// Both contexts exist before either cluster is read.
	if err := checkContexts(o, contextFlag{"active", do.active}, contextFlag{"standby", do.standby}); err != nil {
		return err
	}
	if do.config == "" {
		if len(do.secrets) == 0 {
			do.secrets = agent.DefaultSecretNames("helm")
		}
		return nil
	}
	cfg, err := agent.Load(do.config)
	if err != nil {
		return fmt.Errorf("%s: %w", do.config, err)
	}
	f := cmd.Flags()
	if !f.Changed("namespace") {
		do.namespace = cfg.Kubernetes.Namespace
	}
	if !f.Changed("release") {
		do.release = cfg.Kubernetes.HelmRelease
	}
	if !f.Changed("secrets") {
		do.secrets = cfg.Secrets.Names
	}
	// Compared as the agent renders them; a refusal is the agent's to report, the doctor compares.
	do.render = cfg.Standby.RenderOptions()
	do.render.SecretValues = values.SecretsStrip
	return nil
}

func runDoctor(ctx context.Context, o *globalOptions, do *doctorOptions) error {
	// A key for this run only: digests compare the two sides and mean nothing afterwards.
	key := make([]byte, seal.MinKeyLen)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("making the digest key: %w", err)
	}
	in := readiness.Input{FloatingFQDN: do.floatingFQDN, Names: do.secrets}
	for _, side := range []struct {
		context string
		site    *readiness.Site
	}{{do.active, &in.Active}, {do.standby, &in.Standby}} {
		cs, err := clientsetFor(o, side.context)
		if err != nil {
			return err
		}
		if *side.site, err = readiness.LocalSite(ctx, cs, readiness.Local{Cluster: side.context,
			Namespace: do.namespace, Release: do.release, Names: do.secrets, Key: key}); err != nil {
			return err
		}
	}
	if in.Active.Values == nil {
		in.RenderedUnknown = fmt.Sprintf("no deployed Helm release %s/%s on %s", do.namespace, do.release, do.active)
	} else {
		rendered, err := values.Render(in.Active.Values, do.render)
		if err != nil {
			return fmt.Errorf("rendering the standby's values from %s: %w", do.active, err)
		}
		in.Rendered = rendered.Values
	}
	rep := readiness.NewReport(do.active, do.standby, readiness.Evaluate(in))
	if err := printDoctor(o, do.output, rep); err != nil {
		return err
	}
	var failed []string
	for _, r := range rep.Checks {
		if r.Status == readiness.Fail {
			failed = append(failed, r.Check)
		}
	}
	if len(failed) > 0 {
		return &checksFailedError{failed: failed}
	}
	return nil
}

// clientsetFor connects to one context of the kubeconfig the global flags select.
func clientsetFor(o *globalOptions, kubeContext string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig context %q: %w", kubeContext, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for context %q: %w", kubeContext, err)
	}
	return cs, nil
}

func printDoctor(o *globalOptions, output string, rep readiness.Report) error {
	if output == "json" {
		b, err := rep.Marshal()
		if err != nil {
			return err
		}
		_, err = o.stdout.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK\tSTATUS\tEVIDENCE\n")
	for _, r := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, r.Status, r.Evidence)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the checks: %w", err)
	}
	_, err := fmt.Fprintf(o.stdout, "%s → %s: %s\n", rep.Active, rep.Standby, rep.Status)
	return err
}
