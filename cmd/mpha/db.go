package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/internal/pgcopy"
)

type dbSyncOptions struct {
	from, to, database, output string
	jobs, splitMiB             int
	force, progress, readBack  bool
}

// newDBCommand groups the database commands (docs/design.md §8).
func newDBCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Work with the management plane's Postgres database",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newDBSyncCommand(o))
	return cmd
}

func newDBSyncCommand(o *globalOptions) *cobra.Command {
	so := &dbSyncOptions{}
	cmd := &cobra.Command{
		Use:   "sync --from DSN --to DSN [--database tsb] [--jobs 4] [--force]",
		Short: "Copy the MP database from the active's server into the standby's, verified, all or nothing",
		Long: `Copies one database (default tsb) from the server of --from into the server of --to: a
consistent snapshot of the source (every stream sees the same instant), the schema recreated
(tables, sequences with their values, indexes, constraints, views, triggers, functions, grants;
everything owned by the target database's owner), the rows in --jobs parallel binary COPY
streams. It verifies every table: the rows in the source's snapshot, sent, loaded and in the
copy are one count, and each server's own keyed digest of its rows (a hash of every row, summed;
both servers compute it in parallel, nothing is read back) is equal. --read-back also reads every
table of the copy back through mpha and compares it with what the source sent (slower). The copy
is built in a new database and replaces the target only once verified: on any error (the source
dying mid-copy included) the target is left as it was. The replaced database records the import
(its time, source and LSN), which the agent's database check reads; the database it replaced is
dropped after (the cleanup phase), and an existing but empty target before the load.

It checks the source before it touches the target: the source must answer, must not be the
target's own server (whatever the DSNs say: the target is asked whether it lists the source
session; refused even with --force, since the database would be replaced by itself), and must
hold only what the copy can make. It refuses a target server in recovery (a standby: promote
it, or sync into its primary) and a target database with sessions (tsb and iam connected: scale
them to 0 first), unless --force, which terminates them. Objects it cannot recreate (materialized views, partitions, rules,
policies, domains, large objects) are refused before anything is written. Two syncs of one
database into one server do not run at once: the second is refused.

A sync that dies mid-copy (kill -9, a crash of this machine) leaves its unfinished database
<database>_mpha_<8 hex digits> on the target server. The next sync drops such leftovers of its
own, unless a session is connected to them, and logs each one it drops. A database
<database>_mpha_old_... is the previous target renamed aside by a sync that died while
swapping; it is never dropped automatically (a warning names it): rename it back or drop it.

It prints where the time went: schema, copy, indexes, verify (these three overlap: each table
is indexed and verified as soon as its rows are in), constraints, publish and cleanup.

The DSNs are libpq URLs or key=value strings; their database names are ignored. Keep passwords
off the command line: use MPHA_FROM / MPHA_TO, or PGPASSFILE / ~/.pgpass. Nothing printed shows
a password. The role on the target needs CREATEDB and to own (or be a member of the owner of)
the target database; on the source, read access to every table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := so.validate(); err != nil {
				return err
			}
			return runDBSync(cmd, o, so)
		},
	}
	f := cmd.Flags()
	f.StringVar(&so.from, "from", "", "the source server's DSN (the active MP's database)")
	f.StringVar(&so.to, "to", "", "the target server's DSN (the standby MP's database)")
	f.StringVar(&so.database, "database", pgcopy.DefaultDatabase, "the database to copy, on both servers")
	f.IntVar(&so.jobs, "jobs", 4, "parallel COPY streams")
	f.BoolVar(&so.force, "force", false, "terminate the sessions connected to the target database")
	f.IntVar(&so.splitMiB, "split-larger-than", 0, "split a table larger than this many MiB (and far larger than the rest) over the streams; 0: never (a split pays only where both servers have cores to spare)")
	f.BoolVar(&so.readBack, "read-back", false, "also read every table of the copy back and compare it with what the source sent")
	f.BoolVar(&so.progress, "progress", false, "print progress to stderr (default: when stderr is a terminal)")
	f.StringVarP(&so.output, "output", "o", "table", "table|json")
	return cmd
}

func (so *dbSyncOptions) validate() error {
	switch {
	case so.from == "" || so.to == "":
		return errors.New("--from and --to are required (or MPHA_FROM and MPHA_TO)")
	case so.jobs < 1 || so.jobs > 64:
		return fmt.Errorf("--jobs %d: want 1 to 64", so.jobs)
	case so.splitMiB < 0:
		return fmt.Errorf("--split-larger-than %d: want 0 (never) or a size in MiB", so.splitMiB)
	case so.output != "table" && so.output != "json":
		return fmt.Errorf("--output %q: want table or json", so.output)
	case so.database == "" || len(so.database) > 63:
		return fmt.Errorf("--database %q: want a Postgres database name", so.database)
	}
	return nil
}

func runDBSync(cmd *cobra.Command, o *globalOptions, so *dbSyncOptions) error {
	opts := pgcopy.Options{Database: so.database, Jobs: so.jobs, Force: so.force, ReadBack: so.readBack,
		ChunkSize: int64(so.splitMiB) << 20, Logger: o.logger}
	// Not the flag's default: help would print this terminal's answer next to the rule.
	if !cmd.Flags().Changed("progress") {
		so.progress = isTerminal(o.stderr)
	}
	if so.progress {
		opts.Progress = progressPrinter(o.stderr)
	}
	res, err := pgcopy.Sync(cmd.Context(), so.from, so.to, opts)
	if err != nil {
		return fmt.Errorf("db sync: %w", err)
	}
	if so.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printSyncResult(o.stdout, res)
	return nil
}

// progressPrinter rewrites one status line: phase, tables, rows, bytes and rate.
func progressPrinter(w io.Writer) func(pgcopy.Progress) {
	return func(p pgcopy.Progress) {
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Bytes) / s / (1 << 20)
		}
		fmt.Fprintf(w, "\r%-8s %d/%d tables  %d rows  %.1f MiB  %.1f MiB/s  %s   ", p.Phase, p.TablesDone, p.Tables, p.Rows,
			float64(p.Bytes)/(1<<20), rate, p.Elapsed.Round(time.Second))
		if p.Phase == "done" {
			fmt.Fprintln(w)
		}
	}
}

func printSyncResult(w io.Writer, res *pgcopy.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tROWS\tBYTES\tVERIFIED")
	for _, t := range res.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%d\tyes\n", t.Name, t.Rows, t.Bytes)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ncopied %s: %d tables, %d rows, %.1f MiB in %s (%.1f MiB/s); row counts and digests equal on both sides\n",
		res.Database, len(res.Tables), res.Rows, float64(res.Bytes)/(1<<20), res.Duration.Round(time.Millisecond),
		float64(res.Bytes)/(1<<20)/max(res.Duration.Seconds(), 0.001))
	fmt.Fprintf(w, "source: system %s at LSN %s; the import is recorded on the target database (%s)\n",
		res.Source.SystemID, res.Source.LSN, res.At.Format(time.RFC3339))
	// Where the time went; copy, indexes and verify overlap, busy adds up the streams.
	fmt.Fprintf(w, "phases: %s\n", res.PhaseSummary())
	for _, warning := range res.Warnings {
		fmt.Fprintln(w, "warning: "+warning)
	}
}

// isTerminal says whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
