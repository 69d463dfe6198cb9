// Package forge opens, finds and merges the pull requests that carry a failover, on GitHub,
// GitLab and Gitea behind one interface (Forge). It is built on
// github.com/fluxcd/go-git-providers; the SDK under it (go-github, GitLab client-go, the Gitea
// SDK) is used directly only to list pull requests with filters and paging, which the library's
// List does not offer.
//
// Errors never carry the access token: URLs are redacted and the token text is removed.
// It imports no other mpha package except internal/redact.
package forge
