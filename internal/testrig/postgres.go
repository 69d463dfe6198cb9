package testrig

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDirs are where Debian's postgresql packages put the server binaries, newest first.
var pgBinDirs = []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"}

// Postgres is a PostgreSQL server from the machine's binaries, with trust authentication on
// loopback. When the test runs as root, the server runs as the `postgres` user (it refuses root).
type Postgres struct {
	Port    int
	DataDir string
	// Replica is true for a streaming standby made by StartReplica.
	Replica bool

	proc    *Process
	bin     string
	logical bool
	cred    *syscall.Credential
	dir     string
}

// StartPostgres initialises a fresh primary and starts it; it stops when t ends.
func StartPostgres(t testing.TB) *Postgres { return StartPostgresWith(t, PostgresOptions{}) }

// PostgresOptions change a primary's server settings.
type PostgresOptions struct {
	// Logical sets wal_level=logical, for publications and subscriptions.
	Logical bool
}

// StartPostgresWith is StartPostgres with o's settings.
func StartPostgresWith(t testing.TB, o PostgresOptions) *Postgres {
	t.Helper()
	p := newPostgres(t, "postgres-primary")
	if o.Logical {
		p.setLogical()
	}
	p.run(t, p.bin+"/initdb", "-D", p.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	p.launch(t)
	return p
}

// StartReplica makes a streaming standby of p with pg_basebackup -R and starts it.
func (p *Postgres) StartReplica(t testing.TB) *Postgres {
	t.Helper()
	r := newPostgres(t, "postgres-replica")
	r.Replica = true
	if p.logical { // a replica promoted later publishes as its primary did
		r.setLogical()
	}
	r.run(t, r.bin+"/pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres",
		"-D", r.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	r.launch(t)
	return r
}

// setLogical sets wal_level=logical and room for the slots and workers of a publication and a
// subscription.
func (p *Postgres) setLogical() {
	p.logical = true
	for i, a := range p.proc.spec.args {
		if a == "wal_level=replica" {
			p.proc.spec.args[i] = "wal_level=logical"
		}
	}
	p.proc.spec.args = append(p.proc.spec.args, "-c", "max_replication_slots=10", "-c", "max_logical_replication_workers=6")
}

func newPostgres(t testing.TB, name string) *Postgres {
	t.Helper()
	bin := filepath.Dir(systemBin(t, "initdb", pgBinDirs...))
	p := &Postgres{Port: freePort(t), bin: bin}
	// t.TempDir's parent is private to root; the server's user needs its own directory.
	dir, err := os.MkdirTemp("", "mpha-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p.dir, p.DataDir = dir, filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		p.cred = postgresUser(t)
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	p.proc = &Process{spec: procSpec{
		name: name, path: filepath.Join(bin, "postgres"), logDir: logDir(t, t.TempDir()), cred: p.cred,
		args: []string{"-D", p.DataDir, "-p", strconv.Itoa(p.Port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir,
			"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB",
			"-c", "max_connections=50", "-c", "wal_level=replica", "-c", "max_wal_senders=5"},
		stopSignal: syscall.SIGINT, // fast shutdown: roll back open transactions, then stop
	}}
	return p
}

func postgresUser(t testing.TB) *syscall.Credential {
	t.Helper()
	return serviceUser(t, "postgres")
}

// serviceUser is the credential of the system user a Debian package created for its server
// (postgres, bind), for running that server unprivileged when the test runs as root.
func serviceUser(t testing.TB, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("running %s's server as root needs the %s user: %v (run `make deps`)", name, name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// run runs a setup command (initdb, pg_basebackup) as the server's user.
func (p *Postgres) run(t testing.TB, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), OwnerEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
	}
}

func (p *Postgres) launch(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		if err := p.proc.Stop(); err != nil {
			t.Errorf("stopping %s: %v", p.proc.spec.name, err)
		}
		if t.Failed() {
			reportLog(t, p.proc.spec.name, p.proc.LogPath())
		}
	})
	// freePort's port may be taken by another process before the server binds it (the tests of
	// a package start servers in parallel): then the server exits saying so, and starts again
	// on another port.
	for try := 1; ; try++ {
		if err := p.proc.start(); err != nil {
			t.Fatal(err)
		}
		if try == 3 || !p.lostPort(t) {
			break
		}
		port := freePort(t)
		for i, a := range p.proc.spec.args {
			if a == "-p" {
				p.proc.spec.args[i+1] = strconv.Itoa(port)
			}
		}
		p.Port = port
	}
	p.waitReady(t)
}

// lostPort waits until the server answers pg_isready or exits, and says whether it exited
// because its port was taken.
func (p *Postgres) lostPort(t testing.TB) bool {
	t.Helper()
	isready := filepath.Join(p.bin, "pg_isready")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.proc.Done():
			log, err := os.ReadFile(p.proc.LogPath())
			if err != nil {
				return false
			}
			last := log[bytes.LastIndex(log, []byte("\n=== "))+1:] // this start's lines
			return bytes.Contains(last, []byte("Address already in use"))
		default:
		}
		if exec.Command(isready, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres").Run() == nil {
			return false
		}
	}
	return false
}

// waitReady waits until the server accepts TCP connections and pg_isready says so.
func (p *Postgres) waitReady(t testing.TB) {
	t.Helper()
	isready := filepath.Join(p.bin, "pg_isready")
	waitFor(t, p.proc.spec.name+" ready", 60*time.Second, p.proc, func(ctx context.Context) error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), time.Second)
		if err != nil {
			return err
		}
		c.Close()
		out, err := exec.CommandContext(ctx, isready, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v: %s", err, out)
		}
		return nil
	})
}

// ExecSQL runs each statement on dsn, failing the test on the first error.
func ExecSQL(ctx context.Context, t testing.TB, dsn string, stmts ...string) {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// DSN returns a libpq URL for database db as the superuser postgres.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Stop shuts the server down (fast mode).
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err := p.proc.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped server again on the same port and data directory.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	if err := p.proc.Restart(); err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)
}

// Process is the postmaster's process, for fault tests (Kill is a crash).
func (p *Postgres) Process() *Process { return p.proc }

// Tool is the path of a client program (pg_dump, psql, pg_restore) of the server's version.
func (p *Postgres) Tool(name string) string { return filepath.Join(p.bin, name) }
