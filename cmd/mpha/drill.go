package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/user"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/agent/drill"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/internal/natsconn"
)

type drillOptions struct {
	nats                          natsconn.Options
	repo                          repoFlags
	id, requestedBy, output       string
	forgeKind, forgeURL, forgeTok string
	probeURL, probeCA, dnsServer  string
	signKey                       string
	legTimeout                    time.Duration
}

func newDrillCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Game days: a failover that really happens, and back, with a report in Git"}
	cmd.AddCommand(newDrillRunCommand(o))
	return cmd
}

func newDrillRunCommand(o *globalOptions) *cobra.Command {
	do := &drillOptions{}
	cmd := &cobra.Command{
		Use:   "run --repo URL --nats-url URL [--forge-kind gitea --forge-url URL] [--probe-url URL]",
		Short: "Fail the pair over to its standby and back, verified from the clients' side, and commit the report",
		Long: `A game day on the real pair, as docs/runbook.md describes it:

1. readiness: a dry-run planned failover to the standby; when its preflight fails the drill
   stops there and changes nothing (exit 3);
2. the failover: a planned request to the standby, its pull request approved and merged with
   the forge token of whoever runs the drill (MPHA_FORGE_TOKEN; without --forge-kind the drill
   waits for people to merge), followed through to verified;
3. the failback, the same way back to the old active. When the failover fails once merged,
   the drill fails back at once;
4. the report, committed to mpha/drills/<date>-<id>.md on --branch: each phase's time, the
   clients' longest outage and when the new active first answered them (--probe-url: a request
   through the floating name every 200ms, from here, with --probe-ca and --dns-server as a
   client would have them), the database's RPO as the agents reported it (their sync or
   promotion step), the preflight's evidence and the pull requests.

The branch protection of docs/install.md holds: each pull request needs its mpha/preflight
status green and an approval by someone other than the agents' bot. Run it from a CronJob for a
schedule. Exit status: 0 passed; 3 not started (the preflight fails); 4 failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDrill(cmd.Context(), o, do) },
	}
	f := cmd.Flags()
	do.nats.BindFlags(f)
	do.repo.bind(f)
	f.StringVar(&do.id, "id", "", "the drill's id (default drill-<UTC time>)")
	f.StringVar(&do.requestedBy, "requested-by", "", "who runs the drill (default: the local user name)")
	f.StringVar(&do.forgeKind, "forge-kind", "", "github | gitlab | gitea: approve and merge the pull requests (default: wait for people)")
	f.StringVar(&do.forgeURL, "forge-url", "", "the forge's URL (GitHub Enterprise, GitLab, Gitea)")
	f.StringVar(&do.forgeTok, "forge-token", "", "the token of whoever runs the drill (keep it in MPHA_FORGE_TOKEN)")
	f.StringVar(&do.probeURL, "probe-url", "", "a URL through the floating name that the clients use (https://<floating FQDN>:8443/)")
	f.StringVar(&do.probeCA, "probe-ca", "", "the CA file the clients trust for --probe-url")
	f.StringVar(&do.dnsServer, "dns-server", "", "host:port of the DNS server the clients ask (default: the system's)")
	f.StringVar(&do.signKey, "sign-key", "", "PKCS#8 PEM ed25519 private key that signs the requests")
	f.DurationVar(&do.legTimeout, "leg-timeout", 15*time.Minute, "how long each failover may take, from the request to verified")
	f.StringVarP(&do.output, "output", "o", "text", "text (the report) | json")
	return cmd
}

func runDrill(ctx context.Context, o *globalOptions, do *drillOptions) error {
	if do.output != "text" && do.output != "json" {
		return fmt.Errorf("--output %q: want text or json", do.output)
	}
	if !do.repo.isURL() {
		return errors.New("--repo: the drill commits its report, so it needs the clone URL")
	}
	if do.requestedBy == "" {
		do.requestedBy = "unknown"
		if u, err := user.Current(); err == nil {
			do.requestedBy = u.Username
		}
	}
	l, err := do.repo.layout()
	if err != nil {
		return err
	}
	w, err := do.repo.writer()
	if err != nil {
		return err
	}
	defer w.Close()
	opts := drill.Options{ID: do.id, Layout: l, Repo: w, RequestedBy: do.requestedBy, LegTimeout: do.legTimeout, Logger: o.logger}
	if do.signKey != "" {
		if opts.Signer, err = readSigningKey(do.signKey); err != nil {
			return err
		}
	}
	if do.forgeKind != "" {
		repo, err := forge.RepositoryFromURL(do.repo.repo)
		if err != nil {
			return err
		}
		if opts.Forge, err = forge.New(ctx, forge.Options{Kind: do.forgeKind, URL: do.forgeURL, Token: do.forgeTok, Repository: repo}); err != nil {
			return err
		}
	}
	if do.probeURL != "" {
		files, _, err := do.repo.read(ctx, l.Pair())
		if err != nil {
			return err
		}
		pair, err := gitops.ParsePair(files[l.Pair()])
		if err != nil {
			return err
		}
		if opts.Probe, opts.Who, err = clientProbe(ctx, do, pair); err != nil {
			return err
		}
	}
	do.nats.Name = "mpha drill " + do.requestedBy
	nc, err := natsconn.Connect(ctx, do.nats, o.logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	if opts.JS, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r, runErr := drill.Run(ctx, opts)
	if r == nil {
		return runErr
	}
	if do.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		fmt.Fprint(o.stdout, drill.Markdown(r))
		if r.Commit != "" {
			fmt.Fprintf(o.stdout, "\nreport committed: %s (%.12s)\n", r.Path, r.Commit)
		}
	}
	switch {
	case errors.Is(runErr, drill.ErrNotReady):
		return &requestEndedError{exitRefused, "the drill did not start: " + r.Summary}
	case runErr != nil:
		return &requestEndedError{exitFailed, "the drill " + r.Verdict + ": " + r.Summary}
	}
	return nil
}

// clientProbe is a client of the floating name as the drill's runner has it: its own DNS server
// and CA. Who answered is told by the address it connected to, against the MPs' addresses.
func clientProbe(ctx context.Context, do *drillOptions, pair *gitops.Pair) (func(context.Context) (string, error), func(string) string, error) {
	resolver := net.DefaultResolver
	if do.dnsServer != "" {
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, do.dnsServer)
		}}
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if do.probeCA != "" {
		pem, err := os.ReadFile(do.probeCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--probe-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--probe-ca %s holds no certificate", do.probeCA)
		}
		tlsConfig.RootCAs = pool
	}
	addrs := map[string]string{}
	for _, c := range pair.Clusters {
		ips, err := resolver.LookupHost(ctx, c.MPFQDN)
		if err != nil {
			return nil, nil, fmt.Errorf("resolving %s's MP %s: %w", c.Name, c.MPFQDN, err)
		}
		for _, ip := range ips {
			addrs[ip] = c.Name
		}
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second, Resolver: resolver}
	// A new connection and a new DNS query each time, as a client that just started.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext,
		TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
	probe := func(ctx context.Context) (string, error) {
		var remote string
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if host, _, err := net.SplitHostPort(i.Conn.RemoteAddr().String()); err == nil {
				remote = host
			}
		}})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, do.probeURL, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return "", fmt.Errorf("%s answered %s", remote, resp.Status)
		}
		return remote, nil
	}
	who := func(addr string) string {
		if c, ok := addrs[addr]; ok {
			return c
		}
		return addr
	}
	return probe, who, nil
}
