package testrig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Gitea is a Gitea forge (SQLite, no SSH, no web assets) for pull-request tests. The admin user
// owns an access token with every scope.
type Gitea struct {
	// URL is the server's root (http://127.0.0.1:PORT/), also its API base without /api/v1.
	URL string
	// Admin and Password log in as the site administrator; Token is their API token.
	Admin, Password, Token string

	proc *Process
}

// StartGitea initialises a fresh forge and starts it; it stops when t ends.
func StartGitea(t testing.TB) *Gitea {
	t.Helper()
	bin := Bin(t, "gitea")
	static := binFile(t, "gitea-static")
	dir := t.TempDir()
	port := freePort(t)
	g := &Gitea{URL: fmt.Sprintf("http://127.0.0.1:%d/", port), Admin: "forgeadmin", Password: "Rig-" + randomHex(t, 8)}
	conf := filepath.Join(dir, "custom", "conf", "app.ini")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	// Gitea rewrites app.ini (it adds secrets), so each instance has its own copy.
	if err := os.WriteFile(conf, []byte(giteaINI(t, dir, port, static)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GITEA_WORK_DIR=" + dir, "HOME=" + dir, "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true"}
	run := func(args ...string) string {
		cmd := exec.Command(bin, append(args, "--config", conf)...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), append(env, OwnerEnv+"="+strconv.Itoa(os.Getpid()))...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gitea %s: %v\n%s", args[0], err, out)
		}
		return string(out)
	}
	run("migrate")
	run("admin", "user", "create", "--admin", "--username", g.Admin, "--password", g.Password,
		"--email", "admin@mpha.invalid", "--must-change-password=false")
	// The CLI logs to stdout too: the token is the last line.
	out := strings.Fields(run("admin", "user", "generate-access-token", "--username", g.Admin,
		"--token-name", "rig", "--scopes", "all", "--raw"))
	if len(out) == 0 {
		t.Fatal("gitea printed no access token")
	}
	g.Token = out[len(out)-1]
	g.proc = startProcess(t, procSpec{
		name: "gitea", path: bin, args: []string{"web", "--config", conf}, env: env, dir: dir, logDir: logDir(t, dir),
	})
	waitFor(t, "gitea /api/healthz", 60*time.Second, g.proc, func(ctx context.Context) error {
		return HTTPOK(ctx, g.URL+"api/healthz")
	})
	return g
}

// CloneURL returns the HTTP clone URL of owner/repo.
func (g *Gitea) CloneURL(owner, repo string) string {
	return fmt.Sprintf("%s%s/%s.git", g.URL, owner, repo)
}

// Process is the forge's process, for fault tests.
func (g *Gitea) Process() *Process { return g.proc }

func giteaINI(t testing.TB, dir string, port int, static string) string {
	t.Helper()
	return fmt.Sprintf(`APP_NAME = mpha test forge
RUN_USER = %s
RUN_MODE = prod
WORK_PATH = %[2]s
[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]d
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:%[3]d/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = %[2]s/data
STATIC_ROOT_PATH = %[4]s
[database]
DB_TYPE = sqlite3
PATH = %[2]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL
[repository]
ROOT = %[2]s/repos
DEFAULT_BRANCH = main
[security]
INSTALL_LOCK = true
SECRET_KEY = %[5]s
INTERNAL_TOKEN = %[6]s
[oauth2]
ENABLED = false
[service]
DISABLE_REGISTRATION = true
[mailer]
ENABLED = false
[log]
MODE = console
LEVEL = warn
ROOT_PATH = %[2]s/log
[actions]
ENABLED = false
[packages]
ENABLED = false
[cron]
ENABLED = false
[cron.update_checker]
ENABLED = false
[indexer]
REPO_INDEXER_ENABLED = false
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[queue]
TYPE = channel
[webhook]
ALLOWED_HOST_LIST = loopback
`, currentUser(), dir, port, static, randomHex(t, 32), randomHex(t, 32))
}

// currentUser is the login Gitea must run as (RUN_USER must match it).
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}
