package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/russross/blackfriday/v2"
	"github.com/spf13/pflag"
)

// docCommand is one mpha command line found in a Markdown file.
type docCommand struct {
	file string
	line string   // as written (continuations joined), for messages
	args []string // after the binary, brackets of optional parts and "..." removed
}

// mphaBinaries are the ways the docs spell the binary at the start of a command.
var mphaBinaries = []string{"mpha", "bin/mpha", "./bin/mpha", "$mpha", "${mpha}"}

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// shellBlocks are the info strings of the code blocks that hold commands (```sh); the others
// hold files and trees, where "mpha" at the start of a line is a name.
var shellBlocks = []string{"sh", "bash", "shell", "console"}

// docCommands returns every mpha command of a Markdown document: each command line in its shell
// code blocks (after environment assignments, `&&`, `|` or `;`), and each inline code span that
// starts with "mpha ".
func docCommands(file string, src []byte) []docCommand {
	var out []docCommand
	md := blackfriday.New(blackfriday.WithExtensions(blackfriday.CommonExtensions))
	md.Parse(src).Walk(func(n *blackfriday.Node, entering bool) blackfriday.WalkStatus {
		if !entering {
			return blackfriday.GoToNext
		}
		switch n.Type {
		case blackfriday.CodeBlock:
			if lang, _, _ := strings.Cut(string(n.Info), " "); !slices.Contains(shellBlocks, lang) {
				return blackfriday.GoToNext
			}
			text := strings.ReplaceAll(string(n.Literal), "\\\n", " ")
			for _, line := range strings.Split(text, "\n") {
				for _, args := range commandsOfLine(line) {
					out = append(out, docCommand{file: file, line: strings.TrimSpace(line), args: args})
				}
			}
		case blackfriday.Code:
			if span := string(n.Literal); strings.HasPrefix(span, "mpha ") {
				for _, args := range commandsOfLine(span) {
					out = append(out, docCommand{file: file, line: span, args: args})
				}
			}
		}
		return blackfriday.GoToNext
	})
	return out
}

// commandsOfLine splits a shell line into its simple commands and returns the arguments of those
// that run mpha.
func commandsOfLine(line string) [][]string {
	var out [][]string
	var seg []string
	flush := func() {
		for len(seg) > 0 && envAssignment.MatchString(seg[0]) {
			seg = seg[1:]
		}
		if len(seg) > 0 && slices.Contains(mphaBinaries, seg[0]) {
			out = append(out, cleanArgs(seg[1:]))
		}
		seg = nil
	}
	for _, tok := range shellFields(line) {
		switch {
		case tok == "&&" || tok == "||" || tok == "|" || tok == ";":
			flush()
		default:
			seg = append(seg, tok)
		}
	}
	flush()
	return out
}

// cleanArgs drops what only tells the reader something: "..." and the brackets around optional
// parts ("[--force]", "[-o json]").
func cleanArgs(args []string) []string {
	var out []string
	for _, a := range args {
		a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		if a == "" || a == "..." || a == "…" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// shellFields splits a line into words the way a shell would for the docs' commands: quotes
// group, a word starting with # starts a comment, and a redirection ends the command. (The docs
// need no more of the shell's grammar than that.)
func shellFields(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		if w == ">" || w == ">>" || w == "2>" || w == "2>&1" {
			return words[:i]
		}
	}
	return words
}

// checkCommand runs args through the real command tree, without running anything: the
// subcommands exist, every flag exists on the command it is given to (long and short forms),
// takes a value of its type, and no stray argument is left.
func checkCommand(args []string) error {
	root := newRootCommand(io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil && !errors.Is(err, pflag.ErrHelp) {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	positional := cmd.Flags().Args()
	if cmd.HasSubCommands() && len(positional) > 0 {
		return fmt.Errorf("%s has no subcommand %q", cmd.CommandPath(), positional[0])
	}
	if err := cmd.ValidateArgs(positional); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return nil
}

// docFiles are the Markdown files whose commands a reader copies.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"../../README.md"}
	for _, glob := range []string{"../../docs/*.md", "../../*/README.md"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// Every mpha command in the README and docs/ runs as written: its subcommands and flags exist.
func TestDocsCommandsExist(t *testing.T) {
	perFile := map[string]int{}
	for _, file := range docFiles(t) {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(file, "../../")
		for _, c := range docCommands(name, src) {
			perFile[name]++
			if err := checkCommand(c.args); err != nil {
				t.Errorf("%s: `%s`: %v", c.file, c.line, err)
			}
		}
	}
	// The extraction itself must keep finding the commands these files are known to hold.
	for _, f := range []string{"README.md", "docs/runbook.md", "docs/install.md", "docs/troubleshooting.md"} {
		if perFile[f] < 3 {
			t.Errorf("%s: %d mpha commands found, want at least 3: is the extraction broken?", f, perFile[f])
		}
	}
}

// The extraction finds commands where the docs write them, and the check catches what is wrong.
func TestDocCommandExtraction(t *testing.T) {
	src := "Run `mpha secrets export --once` or `mpha_split_brain`, not `mpha.<pair>.dlq`.\n\n" +
		"```sh\n" +
		"make build && bin/mpha version   # the binary\n" +
		"MPHA_FROM=postgres://a MPHA_TO=postgres://b bin/mpha db sync [--force]\n" +
		"mpha failover request --to west --reason \"east # degraded\" \\\n" +
		"    --sign-key me.pem                                      # if signed\n" +
		"                                  # a comment only: mpha nothing\n" +
		"$mpha status --repo <repo> ... | head > out.txt\n" +
		"kubectl get pods\n" +
		"```\n\n" +
		"```\nmpha        ./mpha/clusters/<c>   a Kustomization, in a block that is no shell\n```\n"
	var got [][]string
	for _, c := range docCommands("x.md", []byte(src)) {
		got = append(got, c.args)
	}
	want := [][]string{
		{"secrets", "export", "--once"},
		{"version"},
		{"db", "sync", "--force"},
		{"failover", "request", "--to", "west", "--reason", "east # degraded", "--sign-key", "me.pem"},
		{"status", "--repo", "<repo>"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("extracted commands (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		args []string
		want string // "" when the command is right
	}{
		{[]string{"secrets", "export", "--once", "--config", "agent.yaml"}, ""},
		{[]string{"--log-level", "debug", "doctor", "--active", "a", "--standby", "b", "-o", "json"}, ""},
		{[]string{"failover", "request", "--to", "<cluster>", "--reason", "x", "--force", "database,root-ca"}, ""},
		{[]string{"doctor", "--help"}, ""},
		{[]string{"export"}, `unknown command "export"`},
		{[]string{"secrets", "exprt"}, `no subcommand "exprt"`},
		{[]string{"config", "check", "--file", "a.yaml"}, "unknown flag: --file"},
		{[]string{"values", "render", "-x"}, "unknown shorthand flag: 'x'"},
		{[]string{"db", "sync", "--jobs", "four"}, "invalid argument"},
		{[]string{"version", "extra"}, `unknown command "extra"`},
	} {
		err := checkCommand(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
