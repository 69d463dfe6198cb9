package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/runtime"
)

type agentOptions struct {
	config, namespace, identity, listen, gitCache string
	sets                                          []string
	leaderElect, insecureHTTP, pprof              bool
	leaseDuration, renewDeadline, retry           time.Duration
}

// newAgentCommand runs the agent: what the chart's Deployment starts in each cluster.
func newAgentCommand(o *globalOptions) *cobra.Command {
	ao := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the agent of this cluster (the chart's Deployment runs this)",
		Long: `Loads and validates the configuration (docs/design.md §10), serves /healthz, /readyz and
/metrics on --listen, and, once this replica holds the Lease mpha-agent-<cluster> in --namespace,
runs the loops of docs/design.md §2: the sealing certificate, the heartbeat, the readiness checks,
the failover requests, the split-brain watch, the watch on the active MP (health.*) and the alert
bridge (alerts.*); and, while pair.yaml says this cluster is active, the secret export and the
standby's values and roles. Secrets named by the configuration are read from --namespace.
SIGTERM releases the Lease at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ao.config == "" {
				return errors.New("--config is required")
			}
			// Resolved here, not as the flags' defaults: help shows where they come from, not
			// what they happen to be on the machine printing it.
			ao.namespace = cmp.Or(ao.namespace, agentNamespace())
			ao.identity = cmp.Or(ao.identity, podName())
			ao.gitCache = cmp.Or(ao.gitCache, filepath.Join(os.TempDir(), "mpha-git"))
			cfg, err := agent.LoadWithOverrides(ao.config, ao.sets)
			if err != nil {
				return fmt.Errorf("%s: %w", ao.config, err)
			}
			rc, err := o.restConfig()
			if err != nil {
				return err
			}
			return runtime.Run(cmd.Context(), runtime.Options{
				Config: cfg, Namespace: ao.namespace, Identity: ao.identity, Rest: rc, Listen: ao.listen,
				LeaderElection: ao.leaderElect, LeaseDuration: ao.leaseDuration, RenewDeadline: ao.renewDeadline,
				RetryPeriod: ao.retry, InsecureHTTPCredentials: ao.insecureHTTP, GitCacheDir: ao.gitCache, Pprof: ao.pprof, Logger: o.logger,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&ao.config, "config", "", "the agent's configuration file (required)")
	f.StringArrayVar(&ao.sets, "set", nil, "override a configuration key, Helm-style (forge.mode=branch; repeatable; env MPHA_SET)")
	f.StringVar(&ao.namespace, "namespace", "", "the agent's namespace: its Secrets, Lease, ConfigMap and Events (default $POD_NAMESPACE, else mpha)")
	f.StringVar(&ao.identity, "identity", "", "this replica's name in the Lease (default $POD_NAME, else the host name)")
	f.StringVar(&ao.listen, "listen", ":8080", "address of /healthz, /readyz and /metrics")
	f.BoolVar(&ao.leaderElect, "leader-elect", true, "elect one acting replica on a Lease (off: act at once)")
	f.DurationVar(&ao.leaseDuration, "lease-duration", 15*time.Second, "how long a lost leader's Lease blocks the others")
	f.DurationVar(&ao.renewDeadline, "renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it gives up")
	f.DurationVar(&ao.retry, "retry-period", 2*time.Second, "between attempts to take or renew the Lease")
	f.StringVar(&ao.gitCache, "git-cache-dir", "", "where the Git writer keeps its shallow copy of the repository between writes (default $TMPDIR/mpha-git: the chart's emptyDir)")
	f.BoolVar(&ao.pprof, "enable-pprof", false, "serve Go's profiles under /debug/pprof/ on --listen")
	f.BoolVar(&ao.insecureHTTP, "insecure-http-credentials", false, "allow Git credentials over plain http:// (test and in-cluster servers)")
	return cmd
}

func podName() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}
