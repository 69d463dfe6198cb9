//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// exported are the secrets the agents export (the Helm install model's default set).
var exported = []string{"iam-signing-key", "tsb-iam-jwks"}

// secretsReachStandby (step a): east's agent seals the TSB secrets for west and commits them;
// west's Flux applies the SealedSecrets and west's own controller unseals them, data identical.
func (p *pair) secretsReachStandby(t *testing.T) {
	p.secretsReach(t, p.east, p.west, exported, 3*time.Minute)
}

// secretsReach waits until each named secret of from is in to with the same data, unsealed by
// to's controller from the SealedSecret in Git, which is sealed for to's certificate and stamped
// with the data's keyed digest.
func (p *pair) secretsReach(t *testing.T, from, to *site, names []string, timeout time.Duration) {
	t.Helper()
	cert, err := seal.ParseCert(to.sealed.Cert(t))
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, name := range names {
		want, err := from.cluster.Clientset.CoreV1().Secrets(mpNS).Get(p.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if digests[name], err = seal.Digest(p.hmacKey, want); err != nil {
			t.Fatal(err)
		}
		testrig.Eventually(t, fmt.Sprintf("%s's %s unsealed in %s", from.name, name, to.name), timeout, func(ctx context.Context) error {
			got, err := to.cluster.Clientset.CoreV1().Secrets(mpNS).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !maps.EqualFunc(got.Data, want.Data, bytes.Equal) {
				return fmt.Errorf("%s in %s: data differs from %s's", name, to.name, from.name)
			}
			if !ownedBySealedSecret(got) {
				return fmt.Errorf("%s in %s: not (yet) owned by a SealedSecret", name, to.name)
			}
			return nil
		})
	}
	// The file on main is sealed for to and holds from's current data. Waited for, not read once:
	// when to already holds the data (a key it rotated itself), the check above passes at once
	// while from's exporter is still re-sealing it.
	for _, name := range names {
		path := p.layout.Secret(to.name, name)
		testrig.Eventually(t, fmt.Sprintf("%s sealed for %s with %s's data", path, to.name, from.name), timeout, func(context.Context) error {
			st, err := seal.ReadStamp(p.files(t, path)[path])
			if err != nil {
				return fmt.Errorf("%s on main: %w", path, err)
			}
			if st.CertFingerprint != cert.Fingerprint || st.Digest != digests[name] {
				return fmt.Errorf("%s on main: sealed for %.12s with digest %.20s, want %s's certificate %.12s and the data's digest", path,
					st.CertFingerprint, st.Digest, to.name, cert.Fingerprint)
			}
			return nil
		})
	}
	p.say("%s's %s reached %s: sealed for %s's certificate in %s, applied by %s's Flux, unsealed by %s's controller, data identical",
		from.name, strings.Join(names, " and "), to.name, to.name, p.layout.SecretsDir(to.name), to.name, to.name)
}

// rotateSigningKey (step e): after the failover the roles have swapped. West's agent exports to
// east now (east's own copies are taken over by the SealedSecrets); then iam-signing-key is rotated
// on west and the new key reaches east, sealed for east and unsealed by east's controller.
func (p *pair) rotateSigningKey(t *testing.T) {
	t.Helper()
	p.secretsReach(t, p.west, p.east, exported, 3*time.Minute)
	sec, err := p.west.cluster.Clientset.CoreV1().Secrets(mpNS).Get(p.ctx, "iam-signing-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := sealtest.NewSigningKey(t).PEM
	p.leaks.Add(key)
	sec.Data = map[string][]byte{"kid": []byte("iam-key-2026-2"), "private.key": key}
	rotated := time.Now()
	if _, err := p.west.cluster.Clientset.CoreV1().Secrets(mpNS).Update(p.ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.say("Rotated iam-signing-key on west (kid iam-key-2026-2)")
	// A rotation, unlike a failover, invalidates the tokens the old key signed: west's MP refuses
	// them at once (what shows that it enforces the key it holds now), and the clients log in
	// again. Their name, CA and DNS server stay as they were.
	for _, c := range p.clients {
		a := c.WaitFor(t, "west's 401 for the old token", rotated, time.Minute, func(a testrig.Attempt) bool {
			return a.Outcome == testrig.OutcomeUnauthorized && a.Cluster == "west"
		})
		if !strings.Contains(a.Err, "unknown kid") {
			t.Errorf("client %s: west refused the old token for another reason: %s", c.Name(), a.Err)
		}
	}
	p.say("West's MP refuses the tokens signed with the old key (401, unknown kid); the clients log in again on west")
	p.secretsReach(t, p.west, p.east, []string{"iam-signing-key"}, 3*time.Minute)
	p.ownCopyCurrent(t, p.west, "iam-signing-key")
	loggedIn := time.Now()
	p.login(t, p.west)
	for _, c := range p.clients {
		c.WaitAnswered(t, "west", loggedIn, time.Minute)
	}
	p.say("The clients' new tokens, signed with the rotated key, are accepted by west; after the failback east must accept them too")
}

// ownCopyCurrent: the copy east sealed for west before the failover stays in west's folder and
// west's Flux keeps applying it; west's exporter refreshes it with the rotation, so that a restart
// of west's controller restores the rotated key rather than the old one (agent/export's
// TestExporterRefreshesItsOwnCopies restarts the controller; here the refresh is followed to the
// live SealedSecret).
func (p *pair) ownCopyCurrent(t *testing.T, s *site, name string) {
	t.Helper()
	live, err := s.cluster.Clientset.CoreV1().Secrets(mpNS).Get(p.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := seal.Digest(p.hmacKey, live)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := seal.ParseCert(s.sealed.Cert(t))
	if err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, fmt.Sprintf("%s's own copy of %s refreshed and applied", s.name, name), 3*time.Minute, func(ctx context.Context) error {
		path := p.layout.Secret(s.name, name)
		st, err := seal.ReadStamp(p.files(t, path)[path])
		if err != nil {
			return fmt.Errorf("%s on main: %w", path, err)
		}
		if st.CertFingerprint != cert.Fingerprint || st.Digest != digest {
			return fmt.Errorf("%s on main: not sealed for %s with its current data", path, s.name)
		}
		u, err := s.dynamic.Resource(sealedSecrets).Namespace(mpNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := u.GetAnnotations()[seal.DigestAnnotation]; got != digest {
			return fmt.Errorf("the SealedSecret %s in %s still carries the old digest", name, s.name)
		}
		return nil
	})
	p.say("%s's own copy of %s in %s was refreshed with the rotation and applied by its Flux", s.name, name, p.layout.SecretsDir(s.name))
}

func ownedBySealedSecret(s *corev1.Secret) bool {
	for _, o := range s.OwnerReferences {
		if o.Kind == "SealedSecret" && o.Name == s.Name {
			return true
		}
	}
	return false
}

// standbyReachesWest (step b): east's agent renders west's HelmRelease and both roles; west's
// Flux scales tsb and iam to 0 and stores the HelmRelease with the rendered values.
func (p *pair) standbyReachesWest(t *testing.T) {
	t.Helper()
	p.waitScale(t, p.west, 0, 3*time.Minute)
	p.checkScale(t, p.east, 1)
	p.checkRestoreSuspended(t, p.west, false) // a standby restores the active's backups
	r, err := values.Render(helmtest.Values(), values.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := r.Values
	var hr *unstructured.Unstructured
	testrig.Eventually(t, "west's HelmRelease tsb/mp", time.Minute, func(ctx context.Context) error {
		hr, err = p.west.dynamic.Resource(helmReleases).Namespace(mpNS).Get(ctx, "mp", metav1.GetOptions{})
		return err
	})
	got, _, _ := unstructured.NestedMap(hr.Object, "spec", "values")
	if !reflect.DeepEqual(normalize(t, got), normalize(t, want)) {
		t.Errorf("west's HelmRelease values differ from those rendered from east's release:\n got %v\nwant %v", got, want)
	}
	if _, ok := got["secrets"]; ok {
		t.Error("west's HelmRelease values carry the secrets key")
	}
	p.say("west's Flux applied its role (tsb and iam at 0, tsb-restore running) and stored HelmRelease tsb/mp with the values "+
		"rendered from east's release %s; helm-controller cannot be built here, so nothing installs it", p.layout.HelmRelease("west"))
}

func normalize(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitScale waits until s's tsb and iam Deployments are at n replicas.
func (p *pair) waitScale(t *testing.T, s *site, n int32, timeout time.Duration) {
	t.Helper()
	testrig.Eventually(t, fmt.Sprintf("%s's tsb and iam at %d", s.name, n), timeout, func(ctx context.Context) error {
		return scaleIs(ctx, s, n)
	})
}

func (p *pair) checkScale(t *testing.T, s *site, n int32) {
	t.Helper()
	if err := scaleIs(p.ctx, s, n); err != nil {
		t.Error(err)
	}
}

func scaleIs(ctx context.Context, s *site, n int32) error {
	for _, name := range mpDeployments {
		d, err := s.cluster.Clientset.AppsV1().Deployments(mpNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != n {
			return fmt.Errorf("%s: Deployment %s at %v replicas, want %d", s.name, name, ptrString(d.Spec.Replicas), n)
		}
	}
	return nil
}

func ptrString(p *int32) string {
	if p == nil {
		return "nil"
	}
	return strconv.Itoa(int(*p))
}

func (p *pair) checkRestoreSuspended(t *testing.T, s *site, want bool) {
	t.Helper()
	cj, err := s.cluster.Clientset.BatchV1().CronJobs(mpNS).Get(p.ctx, restoreCronJob.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := cj.Spec.Suspend != nil && *cj.Spec.Suspend
	if got != want {
		t.Errorf("%s: CronJob %s suspended %v, want %v", s.name, restoreCronJob.Name, got, want)
	}
	if cj.Spec.Schedule != restoreCronJob.Schedule {
		t.Errorf("%s: CronJob %s schedule %q changed", s.name, restoreCronJob.Name, cj.Spec.Schedule)
	}
}

// doctor (step c): `mpha doctor` with both clusters' contexts passes (exit 0), and the checks
// that compare the two sites pass outright.
func (p *pair) doctor(t *testing.T, active, standby *site) {
	t.Helper()
	env := []string{"KUBECONFIG=" + active.cluster.Kubeconfig + ":" + standby.cluster.Kubeconfig}
	out, code := p.cli(t, env, "doctor", "--active", active.name, "--standby", standby.name, "--floating-fqdn", floatingFQDN, "-o", "json")
	if code != 0 {
		t.Fatalf("mpha doctor exited %d:\n%s", code, out)
	}
	var rep readiness.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	must := map[string]bool{readiness.SigningKeyKid: true, readiness.JWKSKid: true, readiness.SecretsInSync: true, readiness.RootCA: true,
		readiness.SecretsManaged: true}
	for _, c := range rep.Checks {
		if must[c.Check] && c.Status != readiness.Pass {
			t.Errorf("doctor: %s %s: %s", c.Check, c.Status, c.Evidence)
		}
		delete(must, c.Check)
	}
	if len(must) > 0 {
		t.Errorf("doctor ran no %v check", slicesOf(must))
	}
	verdicts := make([]string, 0, len(rep.Checks))
	for _, c := range rep.Checks {
		verdicts = append(verdicts, c.Check+" "+string(c.Status))
	}
	p.say("`mpha doctor --active %s --standby %s` exits 0 (%s): %s", active.name, standby.name, rep.Status, strings.Join(verdicts, ", "))
}

func slicesOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// cli runs the mpha binary and returns its combined output and exit status.
func (p *pair) cli(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.mpha, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("running mpha %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// failover (steps d and f): `mpha failover request --to` the target; the pull request is merged
// through the forge's API; both clusters' Flux apply the merge; the agent reports verified. Then
// the clusters, the DNSEndpoint and pair.yaml are checked.
func (p *pair) failover(t *testing.T, to *site, id string) {
	t.Helper()
	before := p.pairFile(t)
	if before.Active != p.other(to).name {
		t.Fatalf("pair.yaml says %s is active, want %s", before.Active, p.other(to).name)
	}
	pr := p.request(t, to, id)
	p.complete(t, to, id, pr, before.Epoch, completion{})
}

// completion says what complete may expect.
type completion struct {
	// fromDown: the old active is down; its side is checked when it comes back.
	fromDown bool
	// repeats: the request was delivered more than once (copies, a redelivery after a crash), so
	// a phase may be reported more than once; their order still holds.
	repeats bool
}

// request runs `mpha failover request --to` and returns the pull request it printed.
func (p *pair) request(t *testing.T, to *site, id string) string {
	t.Helper()
	p.writeSetting(t, p.other(to), "written on "+p.other(to).name+" before "+id)
	p.requested = time.Now()
	sts, code := p.requestWith(t, to, id, "--reason", "e2e drill: move the MP to "+to.name)
	if code != 0 {
		t.Fatalf("mpha failover request exited %d: %+v", code, sts)
	}
	if len(sts) == 0 || sts[len(sts)-1].Phase != event.PhaseProposed || sts[len(sts)-1].PR == "" {
		t.Fatalf("failover request ended without a pull request: %+v", sts)
	}
	pr := sts[len(sts)-1].PR
	p.say("`mpha failover request --to %s`: %s's agent accepted it, ran the preflight and proposed pull request %s\n%s",
		to.name, to.name, pr, p.prChanges(t, pr))
	return pr
}

// requestWith runs `mpha failover request --to` with more flags and returns every status it
// printed and its exit status.
func (p *pair) requestWith(t *testing.T, to *site, id string, args ...string) ([]event.FailoverStatus, int) {
	t.Helper()
	// A later --reason overrides this one (pflag keeps the last).
	args = append([]string{"failover", "request", "--to", to.name, "--reason", "e2e negative control", "--id", id,
		"--requested-by", "e2e@example.com", "--nats-url", p.nats.URL, "--timeout", "3m", "-o", "json"}, args...)
	out, code := p.cli(t, nil, args...)
	var sts []event.FailoverStatus
	// The statuses are the first JSON value; a refusal is explained on stderr after it.
	if i := strings.Index(out, "\n["); i < 0 || json.NewDecoder(strings.NewReader(out[i:])).Decode(&sts) != nil || len(sts) == 0 {
		t.Fatalf("mpha %s exited %d and printed no statuses:\n%s", strings.Join(args, " "), code, out)
	}
	return sts, code
}

// checksSummary counts the preflight's verdicts: "8 checks: 7 pass, 1 warn".
func checksSummary(checks []event.Check) string {
	n := map[string]int{}
	for _, c := range checks {
		n[c.Result]++
	}
	var parts []string
	for _, r := range []string{"pass", "warn", "fail", "forced"} {
		if n[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[r], r))
		}
	}
	return fmt.Sprintf("%d checks: %s", len(checks), strings.Join(parts, ", "))
}

// prChanges lists the files the pull request changes, as Gitea shows them.
func (p *pair) prChanges(t *testing.T, pr string) string {
	t.Helper()
	c, err := gitea.NewClient(p.gitea.URL, gitea.SetToken(p.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	files, _, err := c.ListPullRequestFiles(p.gitea.Admin, repoName, int64(prNumber(t, pr)), gitea.ListPullRequestFilesOptions{})
	if err != nil {
		t.Fatalf("listing the files of %s: %v", pr, err)
	}
	if len(files) == 0 {
		t.Fatalf("pull request %s changes no file", pr)
	}
	lines := []string{"It changes, in one commit:"}
	for _, f := range files {
		lines = append(lines, fmt.Sprintf("  %-40s %s +%d -%d", f.Filename, f.Status, f.Additions, f.Deletions))
	}
	return strings.Join(lines, "\n")
}

func prNumber(t *testing.T, pr string) int {
	t.Helper()
	n, err := strconv.Atoi(pr[strings.LastIndex(pr, "/")+1:])
	if err != nil {
		t.Fatalf("PR URL %s: %v", pr, err)
	}
	return n
}

// complete merges pr, waits for verified and checks the end state: from's side too unless it is
// down (a failed site is checked when it comes back); the floating name resolves, by a real DNS
// query, to to's MP with pair.yaml's TTL, and stays there.
func (p *pair) complete(t *testing.T, to *site, id, pr string, epoch int64, c completion) {
	t.Helper()
	from := p.other(to)
	if err := p.approveAndMerge(p.ctx, prNumber(t, pr), "Merge failover "+id); err != nil {
		t.Fatalf("merging %s: %v", pr, err)
	}
	watch := p.watchFloating(to, "the merge")
	defer watch.stop()
	p.say("Merged %s through Gitea's API (a person's review and merge)", pr)
	all := withoutSteps(p.waitPhase(t, id, event.PhaseVerified, 5*time.Minute))
	p.say("%s", p.timeline(t, id))
	want := "accepted,preflight,proposed,merged,applied,verified"
	if got := failovertest.Phases(all); got != want && (!c.repeats || failovertest.Phases(failovertest.Distinct(all)) != want) {
		t.Errorf("phases of %s: %s", id, got)
	}
	p.checkScale(t, to, 1)
	p.checkRestoreSuspended(t, to, true)
	up := []*site{to}
	if !c.fromDown {
		p.checkScale(t, from, 0)
		p.checkRestoreSuspended(t, from, true) // demoted: not until it is re-seeded
		up = append(up, from)
	}
	after := p.pairFile(t)
	if after.Active != to.name || after.Epoch != epoch+1 || after.LastFailover == nil || after.LastFailover.Event != id {
		t.Errorf("pair.yaml after the failover: active %s epoch %d last %+v; want %s at %d by %s",
			after.Active, after.Epoch, after.LastFailover, to.name, epoch+1, id)
	}
	p.dnsAgrees(t, to, up)
	a := p.waitFloating(t, to, after.RecordTTL(), time.Minute)
	moved := watch.stop()
	p.dnsMoves = append(p.dnsMoves, id+": "+moved)
	p.say("A real DNS query to BIND: %s, %s's MP, with pair.yaml's floatingTTL; the answer %s", a, to.name, moved)
	p.say("The agents' probe, a client of the floating name, now reaches %s: %s", to.name, p.askProbe(t))
	p.clientsReach(t, to, id, p.requested)
	if c.fromDown {
		p.say("Failover %s verified without %s: %s tsb/iam 1, tsb-restore suspended, %s CNAME → %s, pair.yaml epoch %d",
			id, from.name, to.name, floatingFQDN, to.fqdn, after.Epoch)
		return
	}
	p.say("Failover %s verified: %s tsb/iam 0, %s tsb/iam 1, tsb-restore suspended on both, %s CNAME → %s, pair.yaml epoch %d",
		id, from.name, to.name, floatingFQDN, to.fqdn, after.Epoch)
}

func (p *pair) other(s *site) *site {
	if s == p.east {
		return p.west
	}
	return p.east
}

// askProbe asks the rig's stand-in for the floating name and the MP behind it, as a client would.
func (p *pair) askProbe(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(p.ctx, http.MethodGet, p.probe.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("asking the floating name: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the floating name answers %s: %s", resp.Status, body)
	}
	return strings.TrimSpace(string(body))
}

// timeline tells request id's statuses as the agents published them, in seconds from the first.
func (p *pair) timeline(t *testing.T, id string) string {
	t.Helper()
	tl := failovertest.Stream{JS: p.js, Subjects: p.subj}.Timeline(t, p.ctx, id)
	if len(tl) == 0 {
		t.Fatalf("request %s: no status", id)
	}
	lines := []string{"The agent's statuses on NATS (seconds from accepted):"}
	for _, st := range tl {
		var what []string
		if len(st.Checks) > 0 {
			what = append(what, checksSummary(st.Checks))
		}
		for _, s := range st.Steps {
			what = append(what, fmt.Sprintf("%s %s: %s", s.Name, s.Result, s.Detail))
		}
		// A step's status repeats it as its message.
		if st.Message != "" && !slices.Contains(what, st.Message) {
			what = append(what, st.Message)
		}
		if st.Phase == event.PhaseProposed && !strings.Contains(st.Message, st.PR) {
			what = append(what, st.PR)
		}
		lines = append(lines, fmt.Sprintf("  %+6.1f  %-9s  %s", st.At.Sub(tl[0].At).Seconds(), st.Phase, strings.Join(what, "; ")))
	}
	return strings.Join(lines, "\n")
}

// waitPhase waits until request id reached phase and returns its statuses.
func (p *pair) waitPhase(t *testing.T, id string, phase event.Phase, timeout time.Duration) []event.FailoverStatus {
	t.Helper()
	return failovertest.Stream{JS: p.js, Subjects: p.subj}.WaitPhase(t, p.ctx, id, phase, timeout)
}

// statuses are request id's statuses in the stream so far.
func (p *pair) statuses(t testing.TB, id string) []event.FailoverStatus {
	t.Helper()
	return failovertest.Stream{JS: p.js, Subjects: p.subj}.Statuses(t, p.ctx, id)
}
