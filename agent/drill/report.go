package drill

import (
	"fmt"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
)

// Markdown is the report as committed: what an auditor asks of a game day.
func Markdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Game day %s of %s: %s\n\n", r.ID, r.Pair, r.Verdict)
	fmt.Fprintf(&b, "Run by %s from %s to %s (%s). %s was active and %s the standby.\n\n", r.RequestedBy,
		r.Started.UTC().Format(time.RFC3339), r.Ended.UTC().Format(time.RFC3339), r.Ended.Sub(r.Started).Round(time.Second), r.From, r.To)
	fmt.Fprintf(&b, "**%s**: %s.\n", r.Verdict, r.Summary)
	b.WriteString("\n## Readiness before the drill\n\n")
	if len(r.Readiness) == 0 {
		b.WriteString("No preflight verdicts were received.\n")
	}
	checks(&b, r.Readiness)
	for _, l := range r.Legs {
		fmt.Fprintf(&b, "\n## %s\n\n", capitalise(l.Name))
		fmt.Fprintf(&b, "Request %s", l.Event)
		if l.PR != "" {
			fmt.Fprintf(&b, ", pull request %s", l.PR)
		}
		b.WriteString(".")
		if l.Waited > 0 {
			fmt.Fprintf(&b, " It waited %s for %s to pass the preflight (re-seeded by the new active)", l.Waited.Round(time.Second), l.To)
			if l.WaitedFor != "" {
				fmt.Fprintf(&b, "; the last refusal: %s", l.WaitedFor)
			}
			b.WriteString(".")
		}
		b.WriteString("\n\n| phase | at (UTC) | since the request |\n|---|---|---|\n")
		for _, ph := range l.Phases {
			if len(ph.Status.Steps) > 0 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %+.1f s |\n", ph.Status.Phase, ph.At.UTC().Format("15:04:05.0"), ph.At.Sub(l.Requested).Seconds())
		}
		b.WriteString("\n")
		if l.Probes > 0 {
			fmt.Fprintf(&b, "- RTO seen by the clients: the longest time without an answer through the floating name was %s", l.Outage.Round(100*time.Millisecond))
			if l.Switched > 0 {
				fmt.Fprintf(&b, "; %s answered %s after the merge", l.To, l.Switched.Round(100*time.Millisecond))
			}
			fmt.Fprintf(&b, " (%d requests, %d without an answer).\n", l.Probes, l.Failed)
		}
		if m, v := l.At(event.PhaseMerged), l.At(event.PhaseVerified); !m.IsZero() && !v.IsZero() {
			fmt.Fprintf(&b, "- From the merge to verified (the new active answering through the floating name): %s.\n", v.Sub(m).Round(100*time.Millisecond))
		}
		steps := l.Steps()
		if len(steps) == 0 {
			b.WriteString("- Database (RPO): no step reported (a shared or embedded database).\n")
		}
		for _, s := range steps {
			fmt.Fprintf(&b, "- Database (RPO): %s %s: %s\n", s.Name, s.Result, s.Detail)
		}
		if l.Err != "" {
			fmt.Fprintf(&b, "- **Error**: %s\n", l.Err)
		}
		if c := l.Checks(); len(c) > 0 {
			b.WriteString("\nPreflight evidence:\n\n")
			checks(&b, c)
		}
	}
	return b.String()
}

func checks(b *strings.Builder, cs []event.Check) {
	if len(cs) == 0 {
		return
	}
	b.WriteString("| check | result | evidence |\n|---|---|---|\n")
	for _, c := range cs {
		fmt.Fprintf(b, "| %s | %s | %s |\n", c.Name, c.Result, strings.ReplaceAll(c.Evidence, "|", "\\|"))
	}
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
