package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/agent/runtime"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

type exportOptions struct {
	config, namespace, peer string
	once, insecureHTTP      bool
}

// newSecretsExportCommand runs one pass of the agent's secret exporter from a workstation or a
// Job: seal what changed for the peer and commit it.
func newSecretsExportCommand(o *globalOptions) *cobra.Command {
	eo := &exportOptions{}
	cmd := &cobra.Command{
		Use:   "export --once --config FILE",
		Short: "Export this cluster's TSB secrets, sealed for the peer, into Git (one pass of the agent's exporter)",
		Long: `Reads the agent configuration, the HMAC key, the Git credentials and the commit signing key
(git.signingKeySecret, if set) from Secrets in --namespace, the peer from pair.yaml in Git (or
--peer), and the peer's sealing certificate from Git; seals every configured secret whose data or
certificate changed and commits them in one commit, as the agent would: same author, signed when
the agent signs. Prints what it did with each secret.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !eo.once {
				return errors.New("--once is required: `mpha secrets export --once --config FILE` runs one pass; the continuous exporter runs in `mpha agent`")
			}
			if eo.config == "" {
				return errors.New("--config is required")
			}
			if err := checkNames(clusterFlag("peer", eo.peer, false)); err != nil {
				return err
			}
			eo.namespace = cmp.Or(eo.namespace, agentNamespace())
			return runExportOnce(cmd.Context(), o, eo)
		},
	}
	cmd.Flags().BoolVar(&eo.once, "once", false, "run one export pass and exit")
	cmd.Flags().StringVar(&eo.config, "config", "", "the agent's configuration file")
	cmd.Flags().StringVar(&eo.namespace, "namespace", "", "the namespace of the agent's Secrets: HMAC key, Git credentials, commit signing key (default $POD_NAMESPACE, else mpha)")
	cmd.Flags().StringVar(&eo.peer, "peer", "", "the cluster to seal for (default: the other cluster in pair.yaml)")
	cmd.Flags().BoolVar(&eo.insecureHTTP, "insecure-http-credentials", false, "allow Git credentials over plain http:// (test and in-cluster servers)")
	return cmd
}

// agentNamespace is the agent's own namespace: POD_NAMESPACE in a pod, else "mpha".
func agentNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "mpha"
}

func runExportOnce(ctx context.Context, o *globalOptions, eo *exportOptions) error {
	cfg, err := agent.Load(eo.config)
	if err != nil {
		return fmt.Errorf("%s: %w", eo.config, err)
	}
	rc, err := o.restConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// The agent's writer: its credentials, its author, and its signing key when one is configured.
	w, err := runtime.NewGitWriter(ctx, cs, eo.namespace, cfg, gitrepo.Options{AllowHTTPCredentials: eo.insecureHTTP, Logger: o.logger})
	if err != nil {
		return err
	}
	layout, err := gitops.NewLayout(cfg.Git.Root)
	if err != nil {
		return err
	}
	peer, err := resolvePeer(ctx, w, layout, cfg.Cluster, eo.peer)
	if err != nil {
		return err
	}
	key, err := export.LoadKey(ctx, cs, eo.namespace, cfg.Secrets.HMACKeySecret)
	if err != nil {
		return err
	}
	exp, err := export.New(cs, w, export.Options{
		Self: cfg.Cluster, Peer: peer, Namespace: cfg.Kubernetes.Namespace, Names: cfg.Secrets.Names, Facts: readiness.CheckedSecrets(),
		Key: key, Layout: layout, DeleteRemoved: cfg.Secrets.DeleteRemoved, Logger: o.logger,
	})
	if err != nil {
		return err
	}
	rep, err := exp.RunOnce(ctx)
	if err != nil {
		return err
	}
	return printReport(o, peer, rep)
}

// resolvePeer takes --peer, or the other cluster of pair.yaml.
func resolvePeer(ctx context.Context, w *gitrepo.Writer, l gitops.Layout, self, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	snap, err := w.Read(ctx, l.Pair())
	if err != nil {
		return "", err
	}
	b, ok := snap.Files[l.Pair()]
	if !ok {
		return "", fmt.Errorf("%s is not in Git yet: pass --peer", l.Pair())
	}
	p, err := gitops.ParsePair(b)
	if err != nil {
		return "", err
	}
	return p.Peer(self)
}

func printReport(o *globalOptions, peer string, rep export.Report) error {
	if rep.NotActive != "" {
		_, err := fmt.Fprintf(o.stdout, "pair.yaml names %s the active cluster: only the active exports; nothing done\n", rep.NotActive)
		return err
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SECRET\tRESULT\n")
	for _, n := range slices.Sorted(maps.Keys(rep.Secrets)) {
		fmt.Fprintf(tw, "%s\t%s\n", n, rep.Secrets[n])
	}
	// The copies in this cluster's own folder (from its standby days), refreshed alongside.
	for _, n := range slices.Sorted(maps.Keys(rep.Own)) {
		fmt.Fprintf(tw, "%s (own copy)\t%s\n", n, rep.Own[n])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.Commit == "" {
		_, err := fmt.Fprintf(o.stdout, "nothing to commit for %s\n", peer)
		return err
	}
	_, err := fmt.Fprintf(o.stdout, "committed %s for %s\n", rep.Commit, peer)
	return err
}
