package plan

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// message is the failover commit's message: what changes, who asked and why, the preflight
// table, and how to roll back.
func message(pairName string, p *Plan, req Request) string {
	var b strings.Builder
	verb := "Fail over"
	if req.Mode == ModeDrill {
		verb = "Drill: fail over"
	}
	fmt.Fprintf(&b, "%s %s from %s to %s (epoch %d)\n\n", verb, pairName, p.From, p.To, p.Epoch)
	fmt.Fprintf(&b, "Requested by %s (%s): %s\n\n", oneLine(req.RequestedBy, "unknown"), req.Mode, oneLine(req.Reason, "no reason given"))
	for _, s := range p.Summary {
		b.WriteString("- " + s + "\n")
	}
	for _, w := range p.Warnings {
		b.WriteString("- warning: " + w + "\n")
	}
	if len(req.Checks) > 0 {
		fmt.Fprintf(&b, "\nPreflight: %s\n\n| check | result | evidence |\n|---|---|---|\n", req.Preflight)
		for _, c := range req.Checks {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(c.Name), cell(c.Result), cell(c.Evidence))
		}
		if forced := forcedChecks(req.Checks); forced != "" {
			fmt.Fprintf(&b, "\nEmergency: the failing checks %s were forced by the requester.\n", forced)
		}
	}
	fmt.Fprintf(&b, "\nRoll back: revert this commit (or fail over back to %s with a new request).\n", p.From)
	return b.String()
}

// maxEvidence caps one check's evidence in the commit message.
const maxEvidence = 300

// cell makes s one Markdown table cell: one line, no pipes, capped.
func cell(s string) string {
	s = strings.ReplaceAll(oneLine(s, "-"), "|", "\\|")
	if len(s) > maxEvidence {
		cut := maxEvidence
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// forcedChecks lists the checks an emergency overrode, for the Mpha-Forced trailer.
func forcedChecks(checks []Check) string {
	var names []string
	for _, c := range checks {
		if c.Result == PreflightForced {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ",")
}

// oneLine makes s a trailer value: one line, no surrounding space, not empty.
func oneLine(s, empty string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return empty
	}
	return s
}
