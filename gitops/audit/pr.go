package audit

import (
	"regexp"
	"strings"
)

// Merge commit messages that name a pull request, as each forge writes them.
var (
	giteaMerge  = regexp.MustCompile(`^Merge pull request '.*' \(#([0-9]+)\) from `)     // Gitea
	githubMerge = regexp.MustCompile(`^Merge pull request #([0-9]+) from `)              // GitHub
	gitlabMerge = regexp.MustCompile(`(?m)^See merge request [^\s!]+!([0-9]+)[ \t\r]*$`) // GitLab, in the body
)

// PullRequest returns the pull request a merge commit's message names: "#12" for Gitea ("Merge
// pull request 'title' (#12) from branch into main") and GitHub ("Merge pull request #12 from
// owner/branch"), "!12" for GitLab (a body line "See merge request group/project!12"), or "" for
// a merge that names none.
func PullRequest(message string) string {
	subj, _, _ := strings.Cut(message, "\n")
	for _, re := range []*regexp.Regexp{giteaMerge, githubMerge} {
		if m := re.FindStringSubmatch(subj); m != nil {
			return "#" + m[1]
		}
	}
	if m := gitlabMerge.FindStringSubmatch(message); m != nil {
		return "!" + m[1]
	}
	return ""
}
