package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// Credentials for an http(s) --repo; read from the environment only, never printed.
const (
	envGitUsername = "MPHA_GIT_USERNAME"
	envGitPassword = "MPHA_GIT_PASSWORD"
)

type auditOptions struct {
	repo, branch, output, since string
	kinds                       []string
	insecureHTTP                bool
}

// newAuditCommand rebuilds the history of failovers and exports from the Mpha-* trailers of the
// Git history alone (docs/design.md §5).
func newAuditCommand(o *globalOptions) *cobra.Command {
	ao := &auditOptions{}
	cmd := &cobra.Command{
		Use:   "audit [--repo URL|PATH] [--branch main] [--kind failover,...] [-o table|json]",
		Short: "List the failovers and exports recorded in Git, from the commits' Mpha-* trailers",
		Long: `Reads the history of --branch and lists every commit carrying Mpha-* trailers, newest first in
the order the commits reached the branch: failovers (event, epoch, from→to, mode, who asked and why,
the pull request that merged them and when) and the agents' secrets, values and cert commits. It
needs only the Git repository: no cluster, no forge API.

--repo is a local clone (any directory in it) or a bare repository, or a URL, which is cloned into
memory (that branch only). For an http(s) URL the credentials come from ` + envGitUsername + ` and
` + envGitPassword + ` (a token goes in the password; the username defaults to "git"). Drill
failovers live on mpha/drill/* branches: pass one as --branch to list it.

Commit text is untrusted: in the table a value with a control character (a terminal escape) is
shown Go-quoted ("\x1b[31m"), and a cell is cut at ` + strconv.Itoa(maxCell) + ` characters (a subject line at ` + strconv.Itoa(maxLine) + `)
with "…"; -o json keeps every value whole, escaped. A malformed Mpha-* line, a value the
trailer contract refuses (a kind or cluster that is not a DNS-1123 label, an epoch that is not
a number) and a repeated key (its first value counts, as for the agents) are problems: a
warning line each on stderr, and "problems" in -o json; a refused value's field stays empty.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := ao.complete()
			if err != nil {
				return err
			}
			return runAudit(cmd.Context(), o, ao, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ao.repo, "repo", ".", "the Git repository: a local path or a clone URL")
	f.StringVar(&ao.branch, "branch", audit.DefaultBranch, "the branch to read")
	f.StringSliceVar(&ao.kinds, "kind", nil, "only these Mpha-Kind values (failover,secrets,values,cert,...; default all)")
	f.StringVar(&ao.since, "since", "", "only commits authored at or after this time (RFC 3339 or YYYY-MM-DD, UTC)")
	f.StringVarP(&ao.output, "output", "o", "table", "table|json")
	f.BoolVar(&ao.insecureHTTP, "insecure-http-credentials", false, "allow Git credentials over plain http:// (test and in-cluster servers)")
	return cmd
}

// complete checks the flags and turns them into audit.Options.
func (ao *auditOptions) complete() (audit.Options, error) {
	if ao.output != "table" && ao.output != "json" {
		return audit.Options{}, fmt.Errorf("--output %q: want table or json", ao.output)
	}
	if err := checkNames(kindFlag("kind", ao.kinds)); err != nil {
		return audit.Options{}, err
	}
	opts := audit.Options{Branch: ao.branch, Kinds: ao.kinds}
	if ao.since == "" {
		return opts, nil
	}
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, ao.since); err == nil {
			opts.Since = t
			return opts, nil
		}
	}
	return audit.Options{}, fmt.Errorf("--since %q: want RFC 3339 (2026-08-01T09:00:00Z) or a date (2026-08-01)", ao.since)
}

func runAudit(ctx context.Context, o *globalOptions, ao *auditOptions, opts audit.Options) error {
	auth, err := readAuth(ao.repo, ao.insecureHTTP)
	if err != nil {
		return err
	}
	r, err := audit.Open(ctx, ao.repo, auth, ao.branch)
	if err != nil {
		return err
	}
	es, err := audit.Log(ctx, r, opts)
	if err != nil {
		return err
	}
	return printAudit(o.stdout, o.stderr, ao.output, ao.branch, es)
}

// envAuth returns basic auth from MPHA_GIT_USERNAME and MPHA_GIT_PASSWORD for an http(s) URL;
// false for other repositories or when neither is set.
// readAuth is the authentication for audit.Open's clone of repo: the environment's credentials,
// refused over plain http unless insecureHTTP, as gitrepo.New refuses them; nil (anonymous, or
// the SSH agent) without credentials.
func readAuth(repo string, insecureHTTP bool) (transport.AuthMethod, error) {
	a, ok := envAuth(repo)
	if !ok {
		return nil, nil
	}
	if strings.HasPrefix(strings.ToLower(repo), "http://") && !insecureHTTP {
		return nil, fmt.Errorf("--repo: %w", gitrepo.ErrCredentialsOverHTTP)
	}
	return a, nil
}

func envAuth(repo string) (*githttp.BasicAuth, bool) {
	user, pass := os.Getenv(envGitUsername), os.Getenv(envGitPassword)
	u, err := url.Parse(repo)
	if err != nil || !audit.IsURL(repo) || (u.Scheme != "http" && u.Scheme != "https") || user+pass == "" {
		return nil, false
	}
	if user == "" {
		user = "git"
	}
	return &githttp.BasicAuth{Username: user, Password: pass}, true
}

// printAudit writes the entries as JSON or as a table, and in the table's case each entry's
// trailer problems as warning lines on errw.
func printAudit(w, errw io.Writer, output, branch string, es []audit.Entry) error {
	if output == "json" {
		if es == nil {
			es = []audit.Entry{}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // authors are "name <email>"
		if err := enc.Encode(es); err != nil {
			return fmt.Errorf("encoding the entries: %w", err)
		}
		_, err := w.Write(printableJSON(b.Bytes()))
		return err
	}
	if len(es) == 0 {
		_, err := fmt.Fprintf(w, "no matching mpha commits on %s\n", display(branch, maxLine))
		return err
	}
	rows := [][]string{{"WHEN", "KIND", "EVENT", "EPOCH", "FROM→TO", "MODE", "BY", "REASON", "PR", "MERGED"}}
	for _, e := range es {
		rows = append(rows, auditRow(e))
	}
	if err := writeTable(w, rows); err != nil {
		return err
	}
	for _, e := range es {
		for _, p := range e.Problems {
			if _, err := fmt.Fprintf(errw, "warning: commit %.12s (%s): %s\n", e.Commit, stamp(e.When), display(p, 0)); err != nil {
				return err
			}
		}
	}
	return nil
}

// auditRow is a failover's row, or for other kinds when, kind, and cluster and subject spanning
// the remaining columns. Each value is escaped and cut (display).
func auditRow(e audit.Entry) []string {
	if e.Kind != "failover" {
		text := e.Subject
		if e.Cluster != "" {
			text = e.Cluster + ": " + text
		}
		return []string{stamp(e.When), cell(e.Kind), display(text, maxLine)}
	}
	epoch := ""
	if e.Epoch != 0 {
		epoch = strconv.FormatInt(e.Epoch, 10)
	}
	return []string{stamp(e.When), cell(e.Kind), cell(e.Event), cell(epoch), cell(e.From) + "→" + cell(e.To),
		cell(e.Mode), cell(e.RequestedBy), cell(e.Reason), cell(e.PR), stamp(e.Merged)}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04Z") }

// cell shows an empty value as "-", others escaped and cut to maxCell.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return display(s, maxCell)
}

// writeTable aligns cells in columns two spaces apart, each escaped (display). A row shorter than the first ends with a
// cell that spans the remaining columns and widens none (tabwriter would end the column blocks
// there and misalign the rows around it).
func writeTable(w io.Writer, rows [][]string) error {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			if len(r) < len(widths) && i == len(r)-1 {
				break
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	rows = slices.Clone(rows)
	for i, r := range rows {
		rows[i] = make([]string, len(r))
		for j, c := range r {
			rows[i][j] = display(c, 0) // whatever the caller passed, no escape reaches the terminal
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
