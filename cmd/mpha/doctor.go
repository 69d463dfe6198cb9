package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mpha-dev/mpha/agent"
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
checks of architecture.md §7: signing-key-kid, jwks-kid, secrets-in-sync (digests under a random
key made for this run), root-ca (one CA in tsb-certs and xcp-central-cert on both, the floating FQDN
in the leaf SANs, no spec.certIssuer.selfSigned) and values-drift (the standby's Helm values against
those rendered now from the active's release). Evidence names secrets, kids, fingerprints and value
paths, never values.

Exit status: 0 when no check fails (warnings allowed), 1 when doctor could not run (bad flags, an
unreachable cluster), 2 when at least one check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := do.complete(cmd); err != nil {
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

// complete checks the flags and fills what they leave unset from --config, then the defaults.
func (do *doctorOptions) complete(cmd *cobra.Command) error {
	switch {
	case do.active == "" || do.standby == "":
		return errors.New("--active and --standby are required")
	case do.active == do.standby:
		return fmt.Errorf("--active and --standby are both %q", do.active)
	case do.output != "table" && do.output != "json":
		return fmt.Errorf("--output %q: want table or json", do.output)
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
