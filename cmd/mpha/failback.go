package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/failback"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgrepl"
	"github.com/mpha-dev/mpha/internal/redact"
)

type failbackOptions struct {
	repo   repoFlags
	output string
	dryRun bool
	// dbFrom and dbTo are the new active's and the demoted site's MP databases; database the
	// database copied when they are set.
	dbFrom, dbTo, database string
}

func newFailbackCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "failback", Short: "Turn the old active of a failover back into a proper standby, ready to fail back to"}
	cmd.AddCommand(newFailbackPrepareCommand(o))
	return cmd
}

// newFailbackPrepareCommand assesses the demoted cluster from Git and, once the new active has
// re-seeded it, resumes its restore job with one commit.
func newFailbackPrepareCommand(o *globalOptions) *cobra.Command {
	fo := &failbackOptions{}
	cmd := &cobra.Command{
		Use:   "prepare [--repo URL|PATH] [--dry-run] [-o table|json]",
		Short: "Resume the demoted cluster's restore job once the new active has re-seeded it",
		Long: `After a failover the old active is a demoted standby: tsb/iam at 0 and its restore job suspended,
because restoring the new active's backups into it is safe only once it holds the new active's
secrets and values. This command reads pair.yaml's last failover and checks, from Git alone:

  secrets  every secret the pair exports is sealed for the demoted cluster's current certificate,
           last written by the new active's export;
  values   the demoted cluster's standby HelmRelease was last rendered by the new active;
  restore  the demoted cluster's role.yaml: its restore job and whether it is suspended.

With --db-from (the new active's MP database) and --db-to (the demoted site's), a fourth check
brings the demoted site's database in step with the new active's:

  database when the demoted site follows the new active by mpha's logical replication
           (postgres.replication logical: its agent re-subscribes it), the subscription's state
           and lag (initial copy done, within 16 MiB); otherwise mpha's own verified copy
           (` + "`mpha db sync`" + `) is made now (not with --dry-run), which needs the demoted
           site's MP at 0, as the failover left it.

When all pass it commits role.yaml with the restore job resumed (Mpha-Kind: failback-prepare)
to --branch, which Flux applies; --dry-run only reports. The pair is then ready to fail back:
` + "`mpha failover request --to <demoted> --mode planned`" + `. Exit status 2 when the demoted cluster is
not re-seeded yet (run it again later); 0 when prepared, now or before.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fo.output != "table" && fo.output != "json" {
				return fmt.Errorf("--output %q: want table or json", fo.output)
			}
			l, err := fo.repo.layout()
			if err != nil {
				return err
			}
			auth, err := readAuth(fo.repo.repo, fo.repo.insecureHTTP)
			if err != nil {
				return err
			}
			r, err := audit.Open(cmd.Context(), fo.repo.repo, auth, fo.repo.branch)
			if err != nil {
				return err
			}
			h, err := gitrepo.NewHistory(r, fo.repo.branch)
			if err != nil {
				return err
			}
			a, err := assessFailback(cmd.Context(), h, l)
			if err != nil {
				return err
			}
			if fo.dbFrom != "" || fo.dbTo != "" {
				if fo.dbFrom == "" || fo.dbTo == "" {
					return errors.New("--db-from and --db-to go together (or MPHA_DB_FROM and MPHA_DB_TO)")
				}
				a.Checks = append(a.Checks, reseedDatabase(cmd.Context(), o, fo, a))
			}
			commit := ""
			if a.Ready() && a.Suspended && !fo.dryRun {
				if !fo.repo.isURL() {
					return errors.New("the demoted cluster is re-seeded, but --repo is a local checkout: pass the clone URL to commit, or --dry-run")
				}
				ch, err := failback.Change(a, l)
				if err != nil {
					return err
				}
				w, err := fo.repo.writer()
				if err != nil {
					return err
				}
				res, err := w.Apply(cmd.Context(), ch)
				if err != nil {
					return fmt.Errorf("committing the failback preparation: %w", err)
				}
				commit = res.Commit
			}
			if err := printFailback(o.stdout, fo.output, a, commit, fo.dryRun); err != nil {
				return err
			}
			if !a.Ready() {
				var failed []string
				for _, c := range a.Checks {
					if c.Result != failback.Pass {
						failed = append(failed, c.Name)
					}
				}
				return &checksFailedError{failed: failed}
			}
			return nil
		},
	}
	fo.repo.bind(cmd.Flags())
	cmd.Flags().BoolVar(&fo.dryRun, "dry-run", false, "report only; commit and copy nothing")
	cmd.Flags().StringVar(&fo.dbFrom, "db-from", "", "the new active's MP database (DSN; keep passwords in MPHA_DB_FROM)")
	cmd.Flags().StringVar(&fo.dbTo, "db-to", "", "the demoted site's MP database (DSN; MPHA_DB_TO), as a role that may read its subscription and replace it")
	cmd.Flags().StringVar(&fo.database, "database", pgcopy.DefaultDatabase, "the MP's database, copied when not replicated")
	cmd.Flags().StringVarP(&fo.output, "output", "o", "table", "table|json")
	return cmd
}

// maxReseedLag bounds a logical subscription's lag for the demoted site to count as re-seeded:
// the database check's default (postgres.maxLagBytes).
const maxReseedLag = 16 << 20

// reseedDatabase brings the demoted site's database in step with the new active's: a logical
// subscription of mpha's is judged on its state and lag; without one, mpha's own verified copy
// is made now (reported only, with --dry-run).
func reseedDatabase(ctx context.Context, o *globalOptions, fo *failbackOptions, a failback.Assessment) failback.Check {
	c := failback.Check{Name: "database", Result: failback.Fail}
	from, to := database.Describe(fo.dbFrom), database.Describe(fo.dbTo)
	name := database.SubscriptionName(a.Demoted)
	sub, err := pgrepl.ReadSubscription(ctx, fo.dbTo, name)
	if err != nil {
		c.Evidence = "the demoted site's database " + to + ": " + redact.String(err.Error())
		return c
	}
	if sub.Exists {
		lag, err := pgrepl.MeasureLag(ctx, fo.dbFrom, fo.dbTo, name)
		switch {
		case err != nil:
			c.Evidence = fmt.Sprintf("subscription %s on %s: %s", name, to, redact.String(err.Error()))
		case !lag.Synced:
			c.Evidence = fmt.Sprintf("subscription %s on %s follows %s, but its initial copy of %d tables is under way", name, to, from, len(sub.Tables))
		case lag.Bytes > maxReseedLag:
			c.Evidence = fmt.Sprintf("subscription %s on %s is %s behind %s, over %s", name, to, database.FormatBytes(lag.Bytes), from, database.FormatBytes(maxReseedLag))
		default:
			c.Result = failback.Pass
			c.Evidence = fmt.Sprintf("re-seeded by logical replication: subscription %s on %s is %s behind %s, %d tables", name, to, database.FormatBytes(lag.Bytes), from, len(sub.Tables))
		}
		return c
	}
	if fo.dryRun {
		c.Evidence = fmt.Sprintf("%s does not follow %s by logical replication; without --dry-run a verified copy is made", to, from)
		return c
	}
	res, err := pgcopy.Sync(ctx, fo.dbFrom, fo.dbTo, pgcopy.Options{Database: fo.database, Logger: o.logger})
	if err != nil {
		c.Evidence = fmt.Sprintf("copying %s from %s into %s: %s", fo.database, from, to, redact.String(err.Error()))
		return c
	}
	c.Result = failback.Pass
	c.Evidence = fmt.Sprintf("re-seeded by mpha's copy: %s from %s into %s, verified, %d tables, %d rows, in %s", fo.database, from, to,
		len(res.Tables), res.Rows, res.Duration.Round(time.Millisecond))
	return c
}

// assessFailback reads what failback.Assess weighs from h: the files, then the last commit of
// those whose author counts.
func assessFailback(ctx context.Context, h *gitrepo.History, l gitops.Layout) (failback.Assessment, error) {
	snap, err := h.Read(failback.Inputs(l)...)
	if err != nil {
		return failback.Assessment{}, err
	}
	paths, err := failback.Authored(snap.Files, l)
	if err != nil {
		return failback.Assessment{}, err
	}
	last, err := h.LastChanges(ctx, paths...)
	if err != nil {
		return failback.Assessment{}, err
	}
	return failback.Assess(failback.Input{Commit: snap.Commit, Files: snap.Files, Last: last}, l)
}

func printFailback(w io.Writer, output string, a failback.Assessment, commit string, dryRun bool) error {
	next := ""
	switch {
	case !a.Ready():
		next = fmt.Sprintf("%s is not re-seeded by %s yet: its restore job stays suspended; run this again once the checks pass", a.Demoted, a.Active)
	case commit != "":
		next = fmt.Sprintf("committed %.12s: %s's restore job resumes when its Flux applies it; the pair is ready to fail back (mpha failover request --to %s)", commit, a.Demoted, a.Demoted)
	case a.Suspended && dryRun:
		next = fmt.Sprintf("ready: without --dry-run this resumes %s's restore job", a.Demoted)
	default:
		next = fmt.Sprintf("prepared: the pair is ready to fail back (mpha failover request --to %s)", a.Demoted)
	}
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Active   string           `json:"active"`
			Demoted  string           `json:"demoted"`
			Event    string           `json:"event"`
			Epoch    int64            `json:"epoch"`
			Checks   []failback.Check `json:"checks"`
			Ready    bool             `json:"ready"`
			Prepared bool             `json:"prepared"`
			Commit   string           `json:"commit,omitempty"`
			Next     string           `json:"next"`
		}{a.Active, a.Demoted, a.Event, a.Epoch, a.Checks, a.Ready(), a.Prepared() || commit != "", commit, next})
	}
	fmt.Fprintf(w, "failover %s (epoch %d) made %s active; %s is the demoted standby\n\n", a.Event, a.Epoch, a.Active, a.Demoted)
	rows := [][]string{{"CHECK", "RESULT", "EVIDENCE"}}
	for _, c := range a.Checks {
		rows = append(rows, []string{c.Name, string(c.Result), c.Evidence})
	}
	if err := writeTable(w, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s\n", next)
	return err
}
