package forge

// SetGiteaPageSize makes f, a Gitea forge, list n pull requests per page, so that tests see
// paging with a few pull requests.
func SetGiteaPageSize(f Forge, n int) {
	f.(*client).d.(*giteaDialect).pageSize = n
}
