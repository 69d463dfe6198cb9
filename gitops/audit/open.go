package audit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/mpha-dev/mpha/internal/redact"
)

// scpLike matches Git's short SSH form, user@host:path.
var scpLike = regexp.MustCompile(`^[^/\s@]+@[^/\s:]+:`)

// IsURL reports whether repoOrURL names a remote repository (scheme://... or user@host:path)
// rather than a local path.
func IsURL(repoOrURL string) bool {
	return strings.Contains(repoOrURL, "://") || scpLike.MatchString(repoOrURL)
}

// Open opens the repository at a local path (a work tree, any directory inside one, or a bare
// repository), or clones a URL into memory: branch only, its full history, no tags and no
// checkout. auth may be nil (anonymous, or the SSH agent for ssh URLs); it is not used for a
// local path. branch "" means DefaultBranch; a URL without it gives ErrBranchNotFound.
func Open(ctx context.Context, repoOrURL string, auth transport.AuthMethod, branch string) (*gogit.Repository, error) {
	if !IsURL(repoOrURL) {
		return openPath(repoOrURL)
	}
	if branch == "" {
		branch = DefaultBranch
	}
	ref := plumbing.NewBranchReferenceName(branch)
	if strings.HasPrefix(branch, "refs/") {
		ref = plumbing.ReferenceName(branch)
	}
	r, err := gogit.CloneContext(ctx, memory.NewStorage(), nil, &gogit.CloneOptions{
		URL: repoOrURL, Auth: auth, ReferenceName: ref, SingleBranch: true, Tags: gogit.NoTags,
	})
	if errors.Is(err, gogit.NoMatchingRefSpecError{}) {
		return nil, fmt.Errorf("cloning %s: %w: %s", redact.String(repoOrURL), ErrBranchNotFound, branch)
	}
	if err != nil {
		return nil, redact.Error(fmt.Errorf("cloning %s (branch %s): %w", redact.String(repoOrURL), branch, err))
	}
	return r, nil
}

// openPath opens a work tree or bare repository at path, else the work tree path is inside (go-git
// looks for a .git above path, which a bare repository has not).
func openPath(path string) (*gogit.Repository, error) {
	r, err := gogit.PlainOpen(path)
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		r, err = gogit.PlainOpenWithOptions(path, &gogit.PlainOpenOptions{DetectDotGit: true})
	}
	if err != nil {
		return nil, fmt.Errorf("opening repository %s: %w", path, err)
	}
	return r, nil
}
