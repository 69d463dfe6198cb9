//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/fluxcd/pkg/git"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The pair as its operators name it.
const (
	pairName     = "tsb-mp"
	floatingFQDN = "active.tsb.example.com"
	agentNS      = "mpha"
	mpNS         = "tsb"
	repoName     = "fleet"
	// fluxInterval is how often each cluster's Flux fetches and applies unasked: short, so the
	// drill waits on Flux as a user would, without nudging it.
	fluxInterval = 5 * time.Second
	// mergePoll is the agents' forge.mergePollInterval: a person merges at once here, so the
	// default 30s would be most of each failover's time.
	mergePoll = 5 * time.Second
)

// pair is the whole rig: two sites, the forge, NATS and what the steps share.
type pair struct {
	// fluxApplied, set by the failover benchmark, records when each cluster's Flux applied what.
	fluxApplied *fluxApplies
	ctx         context.Context
	say         func(format string, args ...any)
	east, west  *site
	nats        *testrig.NATS
	js          jetstream.JetStream
	subj        event.Subjects
	gitea       *testrig.Gitea
	forge       forge.Forge
	reviewer    *gitea.Client // a second person, who approves the failover pull requests
	// reviewerForge and reviewerToken are the reviewer's, through mpha's forge client: the
	// approvals, and the game day the reviewer runs.
	reviewerForge forge.Forge
	reviewerToken string
	gitURL        string
	repo          *gitrepo.Writer // reads the repository like a person with a clone
	layout        gitops.Layout
	mpha          string // the binary
	probe         *httptest.Server
	// The MPs' clients (clients_test.go): the port both MPs serve on, the root CA, the clients
	// configured once, the agents' probe, the setting last written before a failover and when
	// that failover was requested, and each client's view of each failover.
	mpPort      int
	ca          *sealtest.CA
	clients     []*testrig.Client
	probeClient atomic.Pointer[testrig.Client]
	setting     string
	requested   time.Time
	clientRows  []clientRow
	dns         *testrig.DNS // BIND, authoritative for the pair's zone
	dnsMoves    []string     // per failover, how the floating name's answer moved (dnsWatch)
	hmacKey     []byte
	leaks       *sealtest.Leaks
	dir         string
	db          *mpDB // the MP databases (postgres_test.go)
	opts        rigOptions
}

// rigOptions tune the rig for the benchmarks: zero values keep the drill's settings.
type rigOptions struct {
	// fluxInterval replaces the constant fluxInterval; mergePoll sets the agents'
	// forge.mergePollInterval (the drill: mergePoll).
	fluxInterval, mergePoll time.Duration
	// The negative controls (negative_test.go): exportNames replaces the secrets the agents
	// export (secrets.names); westOwnKey gives west an iam-signing-key of its own, as a standby
	// installed on its own would have; westCA issues west's certificates from a CA of its own.
	exportNames []string
	westOwnKey  bool
	westCA      bool
}

// site is one cluster and what runs against it.
type site struct {
	name, fqdn string
	// addr is the MP's own loopback address: its FQDN's A record in BIND, and where an HTTPS
	// stand-in of the MP would serve.
	addr        string
	mp          *testrig.MP // the MP stand-in serving on addr
	cluster     *testrig.Cluster
	flux        *testrig.Flux
	externalDNS *testrig.ExternalDNS
	sealed      *testrig.SealedSecrets
	dynamic     dynamic.Interface
	agent       *testrig.Process
	agentURL    string
	config      string
}

// startPair starts every component, the fixtures, the repository's bootstrap and both agents, and
// returns once both agents serve /readyz. say narrates (the demo prints, the drill logs).
func startPair(t *testing.T, say func(string, ...any), opts ...rigOptions) *pair {
	t.Helper()
	if testing.Short() {
		t.Skip("the end-to-end drill starts two clusters, Flux, sealed-secrets, Gitea and NATS")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &pair{ctx: ctx, say: say, leaks: &sealtest.Leaks{}, dir: t.TempDir()}
	p.opts.mergePoll = mergePoll
	for _, o := range opts {
		p.opts = o
	}
	p.layout, _ = gitops.NewLayout(gitops.DefaultRoot)
	p.subj, _ = event.NewSubjects(pairName)
	p.mpha = mphaBinary(t)

	say("Starting two clusters (etcd + kube-apiserver each): east, the active, and west, the standby")
	cs := testrig.StartClusters(t, "east", "west")
	p.east = &site{name: "east", fqdn: "mp1.tsb.example.com", addr: "127.0.10.1", cluster: cs[0]}
	p.west = &site{name: "west", fqdn: "mp2.tsb.example.com", addr: "127.0.10.2", cluster: cs[1]}
	for _, s := range p.sites() {
		s.dynamic = s.cluster.Dynamic(t)
	}
	p.dns = testrig.StartDNS(t, testrig.DNSOptions{TTL: floatingTTL,
		A: map[string]string{p.east.fqdn: p.east.addr, p.west.fqdn: p.west.addr}})
	say("Starting BIND (named) on %s, authoritative for %s: %s → %s, %s → %s", p.dns.Addr, p.dns.Zone,
		p.east.fqdn, p.east.addr, p.west.fqdn, p.west.addr)
	say("Starting NATS JetStream and the Gitea forge")
	p.nats = testrig.StartNATS(t)
	p.js = p.nats.JetStream(t)
	p.gitea = testrig.StartGitea(t)
	p.leaks.Add([]byte(p.gitea.Token), []byte(p.gitea.Password))
	p.hmacKey = randomBytes(t, 32)
	p.leaks.Add(p.hmacKey)
	p.createRepo(t)

	ca := sealtest.NewCA(t, "tsb root CA")
	p.ca = ca
	for _, s := range p.sites() {
		say("Cluster %s: Flux (source + kustomize), sealed-secrets, and the TSB stand-ins in namespace %s", s.name, mpNS)
		s.cluster.ApplyFiles(t, crd(t, "dnsendpoints.externaldns.k8s.io.yaml"))
		s.flux = testrig.StartFlux(t, s.cluster)
		s.sealed = testrig.StartSealedSecrets(t, s.cluster)
		p.fixtures(t, s, ca)
		p.runKubelet(t, s)
		// After fixtures: the CRD and the namespace exist, so its first sync (nothing yet) succeeds.
		s.externalDNS = testrig.StartExternalDNS(t, s.cluster, p.dns, testrig.ExternalDNSOptions{})
		say("Cluster %s: external-dns publishes the DNSEndpoints it holds to BIND (RFC 2136, TSIG-signed; owner %s, upsert-only)",
			s.name, testrig.DefaultDNSOwner)
	}
	p.probe = httptest.NewServer(http.HandlerFunc(p.serveProbe))
	t.Cleanup(p.probe.Close)

	seed := p.bootstrap(t)
	for _, s := range p.sites() {
		for _, src := range []testrig.GitSource{
			{Name: "mpha", Path: "./" + p.layout.ClusterDir(s.name)},
			// One GitRepository feeds both, as a fleet repository's would: the agent's nudge
			// of it after a merge reaches the floating name's folder too.
			{Name: "mpha-dns", Path: "./" + p.layout.Root() + "/dns", Source: "mpha"},
		} {
			src.URL, src.Branch, src.Interval = p.gitURL, "main", cmp.Or(p.opts.fluxInterval, fluxInterval)
			src.Username, src.Password = p.gitea.Admin, p.gitea.Token
			s.flux.Sync(t, src)
		}
	}
	for _, s := range p.sites() {
		s.flux.WaitApplied(t, "mpha", seed, 3*time.Minute)
		s.flux.WaitApplied(t, "mpha-dns", seed, 3*time.Minute)
	}
	say("Both clusters' Flux applied the bootstrap commit %s", short(seed))
	a := p.waitFloating(t, p.east, floatingTTL, time.Minute)
	say("A real DNS query to BIND: %s, east's MP: external-dns published the DNSEndpoint both clusters hold", a)
	p.startPostgres(t)
	p.startMPs(t)
	p.startClients(t)
	for _, s := range p.sites() {
		p.startAgent(t, s)
	}
	return p
}

func (p *pair) sites() []*site { return []*site{p.east, p.west} }

// mphaBinary is $MPHA_E2E_MPHA if set, else a fresh build of ./cmd/mpha (the Go build cache makes
// it a link step).
func mphaBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("MPHA_E2E_MPHA"); b != "" {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("MPHA_E2E_MPHA: %v", err)
		}
		return b
	}
	out := filepath.Join(t.TempDir(), "mpha")
	cmd := exec.Command("go", "build", "-o", out, "github.com/mpha-dev/mpha/cmd/mpha")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mpha: %v\n%s", err, b)
	}
	return out
}

func crd(t *testing.T, name string) string {
	t.Helper()
	dir, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "crds", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `%s`", p, testrig.ToolsTarget)
	}
	return p
}

// createRepo makes the GitOps repository on Gitea and the clients that read it.
func (p *pair) createRepo(t *testing.T) {
	t.Helper()
	c, err := gitea.NewClient(p.gitea.URL, gitea.SetToken(p.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateRepo(gitea.CreateRepoOption{Name: repoName, AutoInit: true, DefaultBranch: "main", Readme: "Default"}); err != nil {
		t.Fatalf("creating the repository: %v", err)
	}
	p.protectMain(t, c)
	p.gitURL = p.gitea.CloneURL(p.gitea.Admin, repoName)
	auth, err := gitrepo.NewAuth(p.gitURL, p.gitCreds())
	if err != nil {
		t.Fatal(err)
	}
	p.repo, err = gitrepo.New(gitrepo.Options{URL: p.gitURL, Auth: auth, AllowHTTPCredentials: true, Branch: "main",
		Author:  git.Signature{Name: "platform team", Email: "platform@example.invalid"},
		Backoff: wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 6}})
	if err != nil {
		t.Fatal(err)
	}
	p.forge, err = forge.New(p.ctx, forge.Options{Kind: forge.KindGitea, URL: p.gitea.URL, Token: p.gitea.Token,
		Repository: p.gitea.Admin + "/" + repoName})
	if err != nil {
		t.Fatal(err)
	}
}

// protectMain protects main as docs/install.md advises: a merge needs the agent's mpha/preflight
// status to be success and one approval, by a reviewer other than the agent's bot, whom it adds.
// Pushes (the agents' exports and values) stay allowed.
func (p *pair) protectMain(t *testing.T, c *gitea.Client) {
	t.Helper()
	const reviewer = "platform-reviewer"
	password := "Review-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mustChange := false
	if _, _, err := c.AdminCreateUser(gitea.CreateUserOption{Username: reviewer, Email: reviewer + "@example.invalid", Password: password,
		MustChangePassword: &mustChange}); err != nil {
		t.Fatalf("creating the reviewer: %v", err)
	}
	if _, err := c.AddCollaborator(p.gitea.Admin, repoName, reviewer, gitea.AddCollaboratorOption{Permission: ptr(gitea.AccessModeWrite)}); err != nil {
		t.Fatalf("adding the reviewer: %v", err)
	}
	if _, _, err := c.CreateBranchProtection(p.gitea.Admin, repoName, gitea.CreateBranchProtectionOption{BranchName: "main",
		EnablePush: true, EnableStatusCheck: true, StatusCheckContexts: []string{failover.StatusContext}, RequiredApprovals: 1}); err != nil {
		t.Fatalf("protecting main: %v", err)
	}
	var err error
	if p.reviewer, err = gitea.NewClient(p.gitea.URL, gitea.SetBasicAuth(reviewer, password)); err != nil {
		t.Fatal(err)
	}
	p.leaks.Add([]byte(password))
	tok, _, err := p.reviewer.CreateAccessToken(gitea.CreateAccessTokenOption{Name: "game-days", Scopes: []gitea.AccessTokenScope{gitea.AccessTokenScopeAll}})
	if err != nil {
		t.Fatalf("the reviewer's token: %v", err)
	}
	p.reviewerToken = tok.Token
	p.leaks.Add([]byte(tok.Token))
	if p.reviewerForge, err = forge.New(p.ctx, forge.Options{Kind: forge.KindGitea, URL: p.gitea.URL, Token: tok.Token,
		Repository: p.gitea.Admin + "/" + repoName}); err != nil {
		t.Fatal(err)
	}
}

// approveAndMerge approves pull request number as the reviewer, then merges it through the
// forge's API, as people would.
func (p *pair) approveAndMerge(ctx context.Context, number int, message string) error {
	pr, err := p.forge.Get(ctx, number)
	if err != nil {
		return err
	}
	if err := p.reviewerForge.Approve(ctx, number, pr.Head, "Reviewed the plan and the preflight evidence."); err != nil {
		return err
	}
	return p.forge.Merge(ctx, number, message)
}

func ptr[T any](v T) *T { return &v }

func (p *pair) gitCreds() map[string][]byte {
	return map[string][]byte{"username": []byte(p.gitea.Admin), "password": []byte(p.gitea.Token)}
}

// files reads paths (folders end in /) from the head of main, as a fresh clone sees them.
func (p *pair) files(t testing.TB, paths ...string) map[string][]byte {
	t.Helper()
	snap, err := p.repo.Read(p.ctx, paths...)
	if err != nil {
		t.Fatalf("reading the repository: %v", err)
	}
	return snap.Files
}

// pairFile reads pair.yaml from main.
func (p *pair) pairFile(t testing.TB) *gitops.Pair {
	t.Helper()
	b, ok := p.files(t, p.layout.Pair())[p.layout.Pair()]
	if !ok {
		t.Fatal("pair.yaml is not on main")
	}
	pr, err := gitops.ParsePair(b)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// serveProbe is the agents' probe URL (health.probeURL): plain HTTP for them, it asks as a client
// would, over HTTPS through the floating name resolved by BIND, with a token and the root CA, and
// answers 200 only when an MP of the pair answered 200. While the two clusters' Flux disagree, the
// name alternates between their targets, and so may the probe's answer.
func (p *pair) serveProbe(w http.ResponseWriter, r *http.Request) {
	if p.probeClient.Load() == nil {
		http.Error(w, "no MP stand-in yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	a := p.probeMP(ctx)
	if a.Outcome != testrig.OutcomeOK {
		http.Error(w, fmt.Sprintf("https://%s:%d (%s): %s: %s", floatingFQDN, p.mpPort, a.IP, a.Outcome, a.Err), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "%s's MP (%s) answers for %s\n", a.Cluster, a.IP, floatingFQDN)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func short(commit string) string {
	if i := strings.LastIndex(commit, ":"); i >= 0 {
		commit = commit[i+1:]
	}
	if len(commit) > 10 {
		return commit[:10]
	}
	return commit
}
