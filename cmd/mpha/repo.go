package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/fluxcd/pkg/git"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// repoFlags locate the GitOps repository for the commands that read it: a clone URL (credentials
// from MPHA_GIT_USERNAME and MPHA_GIT_PASSWORD, never from flags, so they stay out of shell
// history) or a local checkout.
type repoFlags struct {
	repo, branch, root string
	insecureHTTP       bool
	// backoff bounds the attempts of a read (zero: gitrepo's default, about 30 s).
	backoff wait.Backoff
	logger  *slog.Logger
}

func (f *repoFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.repo, "repo", ".", "the GitOps repository: a clone URL (https://, http://, ssh://) or a local checkout")
	fs.StringVar(&f.branch, "branch", "main", "the branch Flux reads (for a URL)")
	fs.StringVar(&f.root, "root", gitops.DefaultRoot, "the folder of the repository mpha owns")
	fs.BoolVar(&f.insecureHTTP, "insecure-http-credentials", false, "allow Git credentials over plain http:// (test and in-cluster servers)")
}

func (f *repoFlags) layout() (gitops.Layout, error) { return gitops.NewLayout(f.root) }

func (f *repoFlags) isURL() bool { return strings.Contains(f.repo, "://") }

// read returns the files at paths (see gitrepo.Writer.Read for "dir/" and "dir/**") and what was
// read: the commit of a URL's branch, or the checkout's path.
func (f *repoFlags) read(ctx context.Context, paths ...string) (map[string][]byte, string, error) {
	if f.isURL() {
		w, err := f.writer()
		if err != nil {
			return nil, "", err
		}
		snap, err := w.Read(ctx, paths...)
		if err != nil {
			return nil, "", err
		}
		return snap.Files, snap.Commit, nil
	}
	files := map[string][]byte{}
	root := os.DirFS(f.repo)
	for _, p := range paths {
		if err := readLocal(root, p, files); err != nil {
			return nil, "", fmt.Errorf("reading %s in %s: %w", p, f.repo, err)
		}
	}
	return files, f.repo, nil
}

// writer is a Git client of the URL with the environment's credentials (a token goes in the
// password; the user defaults to "git"). Over plain http:// gitrepo.New refuses them unless allowed.
func (f *repoFlags) writer() (*gitrepo.Writer, error) {
	var creds map[string][]byte
	if user, pass := os.Getenv("MPHA_GIT_USERNAME"), os.Getenv("MPHA_GIT_PASSWORD"); user+pass != "" {
		creds = map[string][]byte{"username": []byte(cmp.Or(user, "git")), "password": []byte(pass)}
	}
	// The flags name what git.url and git.branch name in the agent's configuration.
	return agent.Git{URL: f.repo, Branch: f.branch}.NewWriter(agent.GitSecrets{Auth: creds}, gitrepo.Options{
		Author: git.Signature{Name: "mpha cli", Email: "mpha@cli.invalid"}, AllowHTTPCredentials: f.insecureHTTP, Backoff: f.backoff, Logger: f.logger})
}

func readLocal(root fs.FS, p string, into map[string][]byte) error {
	if dir, ok := strings.CutSuffix(p, "/**"); ok {
		err := fs.WalkDir(root, dir, func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			return readLocal(root, name, into)
		})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if dir, ok := strings.CutSuffix(p, "/"); ok {
		entries, err := fs.ReadDir(root, dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		for _, e := range entries {
			if !e.IsDir() {
				if err := readLocal(root, path.Join(dir, e.Name()), into); err != nil {
					return err
				}
			}
		}
		return err
	}
	b, err := fs.ReadFile(root, filepath.ToSlash(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	into[p] = b
	return nil
}
