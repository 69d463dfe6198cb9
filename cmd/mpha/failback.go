package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/failback"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

type failbackOptions struct {
	repo   repoFlags
	output string
	dryRun bool
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
	cmd.Flags().BoolVar(&fo.dryRun, "dry-run", false, "report only; commit nothing")
	cmd.Flags().StringVarP(&fo.output, "output", "o", "table", "table|json")
	return cmd
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
