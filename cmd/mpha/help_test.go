package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/agent/readiness"
)

// walk calls fn on cmd and every command below it.
func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		walk(c, fn)
	}
}

// No flag prints its default twice: once in its own words and once more by pflag. Defaults that
// come from the environment would hide the fault, so the environment gives them values here.
func TestFlagDefaultsPrintedOnce(t *testing.T) {
	t.Setenv("POD_NAME", "mpha-7d9f")
	t.Setenv("POD_NAMESPACE", "ops")
	n := 0
	walk(newRootCommand(io.Discard, io.Discard), func(cmd *cobra.Command) {
		usages := cmd.LocalFlags().FlagUsages() + cmd.InheritedFlags().FlagUsages()
		for _, line := range strings.Split(usages, "\n") {
			n++
			if strings.Count(line, "(default") > 1 {
				t.Errorf("%s: %s", cmd.CommandPath(), strings.TrimSpace(line))
			}
		}
	})
	if n < 50 {
		t.Errorf("only %d flag lines seen: is the walk broken?", n)
	}
}

// `mpha doctor --help` lists every check doctor can report.
func TestDoctorHelpListsEveryCheck(t *testing.T) {
	var out bytes.Buffer
	root := newRootCommand(&out, io.Discard)
	root.SetArgs([]string{"doctor", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	// What doctor reports is what Evaluate returns, whatever the facts.
	for _, r := range readiness.Evaluate(readiness.Input{}) {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(r.Check) + `  +\S`).MatchString(out.String()) {
			t.Errorf("doctor --help does not list %s:\n%s", r.Check, out.String())
		}
	}
	for _, c := range preflightOnlyChecks() {
		if !strings.Contains(out.String(), c) {
			t.Errorf("doctor --help does not name the preflight's %s", c)
		}
	}
}
