// Package agent is the mpha agent that runs in each cluster: its configuration (this file,
// docs/design.md §10, a contract for the top-level keys) and, as the issues land, its loops.
// It imports gitops, never cmd.
package agent

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/strvals"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/redact"
	"github.com/mpha-dev/mpha/internal/strictyaml"
)

// Config is the agent's configuration file. Durations are Go durations ("10s").
type Config struct {
	// Cluster is this cluster's name in pair.yaml.
	Cluster string `json:"cluster"`
	// Pair names the pair: NATS subjects and the stream name derive from it.
	Pair string `json:"pair"`
	// HeartbeatInterval is how often the agent publishes its heartbeat; a peer's heartbeat older
	// than three intervals is no evidence.
	HeartbeatInterval metav1.Duration `json:"heartbeatInterval"`
	Kubernetes        Kubernetes      `json:"kubernetes"`
	Secrets           Secrets         `json:"secrets"`
	SealedSecrets     SealedSecrets   `json:"sealedSecrets"`
	Git               Git             `json:"git"`
	Forge             Forge           `json:"forge"`
	NATS              NATS            `json:"nats"`
	Postgres          Postgres        `json:"postgres"`
	Health            Health          `json:"health"`
	Standby           Standby         `json:"standby"`
	Flux              Flux            `json:"flux"`
	Alerts            Alerts          `json:"alerts"`
	// SelfFence lets an agent that finds itself in split brain scale its own MP down.
	SelfFence bool `json:"selfFence"`
}

// Kubernetes says where the TSB management plane lives.
type Kubernetes struct {
	// Namespace is the MP's namespace: its Secrets, Deployments and Helm release.
	Namespace string `json:"namespace"`
	// HelmRelease is the MP's Helm release name.
	HelmRelease string `json:"helmRelease"`
	// InstallModel is "helm" (the MP was installed from the Helm chart) or "generic" (tctl).
	InstallModel string `json:"installModel"`
}

// Secrets selects the TSB secrets the active agent exports.
type Secrets struct {
	// Names defaults to DefaultSecretNames(installModel).
	Names []string `json:"names"`
	// HMACKeySecret names the Secret (in the agent's namespace) holding the key of the digests
	// that decide whether a secret changed.
	HMACKeySecret string `json:"hmacKeySecret"`
	// DeleteRemoved deletes a secret's file from Git when the secret is deleted in the cluster.
	DeleteRemoved bool `json:"deleteRemoved"`
}

// SealedSecrets locates this cluster's sealed-secrets controller.
type SealedSecrets struct {
	ControllerNamespace string `json:"controllerNamespace"`
	ControllerName      string `json:"controllerName"`
	// CertURL, if set, is where the controller's certificate is fetched instead of through the
	// API server's service proxy (a controller exposed another way).
	CertURL string `json:"certURL"`
}

// Flux locates the Flux Kustomization that applies this cluster's folder (clusters/<cluster>):
// the agent watches the revision it applied (the follow-through and the heartbeat report it),
// and asks it and its GitRepository to reconcile at once when a failover is merged
// (docs/design.md §6).
type Flux struct {
	Namespace     string `json:"namespace"`
	Kustomization string `json:"kustomization"`
	// GitRepository names the Kustomization's source (its spec.sourceRef) for the chart's Role,
	// which lets the agent patch that object only. Default: the Kustomization's name; set it
	// when the two differ (flux bootstrap names both flux-system).
	GitRepository string `json:"gitRepository"`
}

// Git is the GitOps repository.
type Git struct {
	URL    string `json:"url"`
	Branch string `json:"branch"`
	// Root is the folder holding everything mpha owns (docs/design.md §3).
	Root       string `json:"root"`
	AuthSecret string `json:"authSecret"`
	// SigningKeySecret, if set, names a Secret with an SSH or OpenPGP key that signs commits.
	SigningKeySecret string `json:"signingKeySecret"`
}

// Forge is where failover pull requests are opened.
type Forge struct {
	Kind        string `json:"kind"` // github | gitlab | gitea | none
	URL         string `json:"url"`
	TokenSecret string `json:"tokenSecret"`
	Mode        string `json:"mode"` // pr | branch | direct
	// MergePollInterval is how often a proposed failover looks for its merge on the base branch
	// (a clone each time) and, in pr mode, runs the preflight again to keep the pull request's
	// mpha/preflight commit status current: shorter reacts sooner to the merge and to a check
	// that stops holding, and costs the forge more.
	MergePollInterval metav1.Duration `json:"mergePollInterval"`
}

// NATS is the JetStream server carrying failover events and heartbeats.
type NATS struct {
	URL                 string   `json:"url"`
	CredsSecret         string   `json:"credsSecret"`
	RequireSignedEvents bool     `json:"requireSignedEvents"`
	TrustedKeys         []string `json:"trustedKeys"`
	// SigningKeySecret, if set, names a Secret (key "key": an ed25519 private key, PKCS#8 PEM, as
	// `mpha failover keygen` writes) that signs the requests this agent publishes itself: the
	// health monitor's autoPropose and the alert bridge's "request" rules.
	SigningKeySecret string `json:"signingKeySecret"`
}

// Postgres is the management plane's database, as far as the agent checks it.
type Postgres struct {
	Topology  string          `json:"topology"` // auto | shared | streaming | independent | embedded
	DSNSecret string          `json:"dsnSecret"`
	MaxLag    metav1.Duration `json:"maxLag"`
	// PromoteOnFailover promotes this site's streaming replica (pg_promote) once a failover to it
	// is merged, before Flux starts its MP; never for drills or dry runs. The DSN's role needs
	// EXECUTE on pg_promote granted by a superuser in the server's postgres database, where the
	// agent connects to promote (a grant in the MP's database would be dropped by a db sync).
	PromoteOnFailover bool `json:"promoteOnFailover"`
	// Database is the MP's database (dataStore.postgres.name; default tsb).
	Database string `json:"database"`
	// PeerDSNSecret holds the peer site's DSN, to compare servers and read the active's WAL
	// position directly (without it, from the active's heartbeat).
	PeerDSNSecret string `json:"peerDSNSecret"`
	// MaxLagBytes bounds a streaming replica's unreplayed WAL (default 16 MiB).
	MaxLagBytes int64 `json:"maxLagBytes"`
	// MaxImportAge bounds the age of the last verified `mpha db sync` (independent) or of the
	// last tsb-restore run (embedded) (default 25h: a daily import and some slack).
	MaxImportAge metav1.Duration `json:"maxImportAge"`
	// SyncOnFailover copies the active's database into this site's (`mpha db sync`: a consistent
	// snapshot, verified by row counts and both servers' digests, the target replaced only once
	// verified) when this agent
	// handles a failover to its site and the topology is independent (or auto and detected so),
	// before the checks and the failover commit. The failover's target agent runs it, so it needs
	// postgres.dsnSecret (this site's database, the target: its role needs CREATEDB and to own the
	// database) and postgres.peerDSNSecret (the active's, the source: read access). A planned
	// failover whose sync fails is refused (reason step-failed); an emergency with the active's
	// database unreachable goes on without it and reports the last import's age. Dry runs and
	// drills never sync.
	SyncOnFailover bool `json:"syncOnFailover"`
	// Replication "logical" keeps the standby's database current by PostgreSQL logical
	// replication, set up and reversed by mpha (independent servers only, wal_level=logical on
	// both): the active's agent publishes the MP's tables (publication mpha); the standby's copies
	// the schema (mpha's own copy, the database replaced) and subscribes to it (subscription
	// mpha_<cluster>), and re-seeds when the active's schema changes (a TSB upgrade). Its lag is
	// the database check's RPO (maxLag, maxLagBytes). Once a failover to it is merged, it fences
	// the old active's database (read-only, its sessions ended), waits until it received all of
	// it (RPO 0 when the old active answers), stops the subscription and advances every
	// sequence; the old active, once it is the standby, is re-subscribed the other way. Needs
	// postgres.dsnSecret and postgres.peerDSNSecret (roles owning the MP's database, with
	// REPLICATION); not with syncOnFailover or promoteOnFailover. "none" (default): the
	// topology's own means (streaming, shared, `mpha db sync`).
	Replication string `json:"replication"`
	// SubscriptionDSNSecret is this site's MP database as a role that may create subscriptions
	// (a superuser in PostgreSQL 15, pg_create_subscription in 16 and later) for replication
	// logical; default postgres.dsnSecret.
	SubscriptionDSNSecret string `json:"subscriptionDSNSecret"`
	// MaxSlotAge: a replication slot of mpha's (mpha_*) on this site's server that no subscriber
	// has streamed from for this long is dropped, so that it cannot keep WAL until the disk
	// fills; before that it is reported (mpha_postgres_replication_slot_inactive_seconds). Default 1h.
	MaxSlotAge metav1.Duration `json:"maxSlotAge"`
}

// Health is how the standby's agent watches the active MP (tsb-mp-ha.md §6), and how the
// active's agent tells its peer, in its heartbeat, whether its own MP answers.
type Health struct {
	// ProbeURL is probed too, as a target of its own, and is what the failover's follow-through
	// calls `verified` on (default https://<floating FQDN>:8443/).
	ProbeURL string `json:"probeURL"`
	// SelfURL is where the active's agent probes its own MP for its heartbeat (default
	// https://<its mpFQDN from pair.yaml>:<port>), e.g. front-envoy's in-cluster Service.
	SelfURL string `json:"selfURL"`
	// Organization is the MP's spec.organization, the status probe's path. Unset, it is read at
	// start from the HelmRelease values committed for either cluster; the watch is off while
	// none of these nor probes say it.
	Organization string `json:"organization"`
	// Port is front-envoy's port on both FQDNs (default 8443).
	Port int `json:"port"`
	// Probes replace the default two (/v2/organizations/<org>/status, /promql/api/v1/labels).
	Probes []HealthProbe `json:"probes"`
	// CredentialsSecret names a Secret (agent namespace) with `username` and `password`, or
	// `token`: a TSB user the probes authenticate as.
	CredentialsSecret string `json:"credentialsSecret"`
	// CASecret names a Secret (agent namespace) whose `ca.crt` is the only trust for the MP's
	// certificate (default the system roots).
	CASecret string `json:"caSecret"`
	// Timeout bounds each probe (and each NATS call of a round).
	Timeout metav1.Duration `json:"timeout"`
	// Interval is the time between rounds.
	Interval metav1.Duration `json:"interval"`
	// Failures is how many down rounds in a row make a suggestion.
	Failures int `json:"failures"`
	// Recoveries is how many healthy rounds in a row end an outage (default failures), so a
	// flapping MP is suggested once.
	Recoveries int `json:"recoveries"`
	// AutoPropose also publishes a failover request (mode planned) with the suggestion: its pull
	// request still waits for a person, unless forge.mode is direct.
	AutoPropose bool `json:"autoPropose"`
}

// HealthProbe is one request sent through front-envoy.
type HealthProbe struct {
	// Name labels the probe in metrics, logs and suggestions.
	Name string `json:"name"`
	// Path is the request's path (and query), starting with '/'.
	Path string `json:"path"`
}

// Alerts is the Alertmanager webhook bridge, served on the agent's --listen port by the leader.
type Alerts struct {
	// Enabled serves the webhook; it needs authSecret and at least one rule.
	Enabled bool `json:"enabled"`
	// Path is the webhook's path (default /alerts).
	Path string `json:"path"`
	// AuthSecret names a Secret (agent namespace) with `token` (bearer) and/or `username` and
	// `password` (basic auth), as Alertmanager's http_config sends them. Required when enabled.
	AuthSecret string `json:"authSecret"`
	// Rules map firing alerts to a failover suggestion or request; the first match applies.
	Rules []AlertRule `json:"rules"`
	// Remember is how long a notification's events are remembered as published (default 24h):
	// Alertmanager repeats a firing alert every repeat_interval.
	Remember metav1.Duration `json:"remember"`
}

// AlertRule maps an alert (alertname and labels) to an action for a target cluster.
type AlertRule struct {
	// Alert is the alertname a firing alert must have.
	Alert string `json:"alert"`
	// Labels the alert must also carry, with these values.
	Labels map[string]string `json:"labels,omitempty"`
	// Action is suggest (a person decides) or request (the target proposes the failover).
	Action string `json:"action"`
	// Target is the cluster to fail over to (a name in pair.yaml).
	Target string `json:"target"`
	// Mode of a request: planned (default) or emergency.
	Mode string `json:"mode,omitempty"`
}

// Standby is how the active agent writes its peer's management plane into Git: the Flux
// HelmRelease with the rendered values, and the role manifests (docs/design.md §3, §5).
type Standby struct {
	// ChartRepository is the TSB chart repository the standby's HelmRepository points at.
	ChartRepository string `json:"chartRepository"`
	// ChartRepositorySecret, if set, names a Secret (in the MP namespace) with its credentials.
	ChartRepositorySecret string `json:"chartRepositorySecret"`
	// Overrides set per-site values on the standby ("image.registry": "..."); only the paths of
	// values.AllowedOverrides may be set.
	Overrides values.Overrides `json:"overrides"`
	// RoleMode is "manifest" (role.yaml scales the Deployments) or "values" (the replicas live in
	// the HelmRelease values, spec.components.{apiServer,iamServer}.kubeSpec.deployment.replicaCount).
	RoleMode string `json:"roleMode"`
	// Deployments are the MP Deployments a role scales (default tsb and iam).
	Deployments []string `json:"deployments"`
	// RestoreCronJob is the job restoring the active's backups on the standby (default
	// tsb-restore); it is written into role.yaml only where it exists.
	RestoreCronJob string `json:"restoreCronJob"`
	// SecretValues is what becomes of a value under a key that names a credential (password,
	// secret, token, private key, client secret, credentials, API key: anywhere under spec or
	// operator, env entries such as DB_PASSWORD included) and of a PEM private key or a URL with
	// a password: "strip" (removed; the paths, never the values, are logged and named in the
	// commit) or "refuse" (nothing is committed until the release holds none). The standby's
	// values go to Git: credentials reach the chart through Secrets.
	SecretValues string `json:"secretValues"`
	// NotSecret lists keys that only look like credentials and whose values are kept: a key name
	// with * wildcards ("*SecretName") or a dotted path, * for any key and [] for any list index
	// ("spec.components.*.kubeSpec.deployment.env[].value"). Added to the built-in list, which
	// `mpha values render --help` prints: references to a Secret (secretName, *SecretRef,
	// existingSecret, imagePullSecrets, TSB's spec.tokenIssuer.jwt.signingKeysSecret and
	// issuers[].signingKey) and durations (tokenTTL, tokenExpiration). A key matched keeps its
	// value; the keys below it are judged by their own names.
	NotSecret []string `json:"notSecret"`
}

// RenderOptions are the values rendering's options this configuration sets.
func (s Standby) RenderOptions() values.Options {
	return values.Options{Overrides: s.Overrides, SecretValues: s.SecretValues, NotSecret: s.NotSecret}
}

// Install models and the other enumerations of the configuration.
var (
	installModels = []string{"helm", "generic"}
	forgeKinds    = []string{"github", "gitlab", "gitea", "none"}
	forgeModes    = []string{"pr", "branch", "direct"}
	topologies    = []string{"auto", "shared", "streaming", "independent", "embedded"}
	replications  = []string{"none", "logical"}
	roleModes     = []string{"manifest", "values"}
)

// Enumerations lists the allowed values of each enumerated key, by key path: the chart's
// values.schema.json and docs/configuration.md are generated from it (charts/configref.go).
func Enumerations() map[string][]string {
	return map[string][]string{
		"kubernetes.installModel": slices.Clone(installModels),
		"forge.kind":              slices.Clone(forgeKinds),
		"forge.mode":              slices.Clone(forgeModes),
		"postgres.topology":       slices.Clone(topologies),
		"postgres.replication":    slices.Clone(replications),
		"standby.roleMode":        slices.Clone(roleModes),
		"standby.secretValues":    values.SecretPolicies(),
		"alerts.rules[].action":   {"suggest", "request"},
		"alerts.rules[].mode":     {"planned", "emergency"},
	}
}

// DefaultSecretNames lists the TSB secrets a management plane needs on its standby
// (docs/design.md §4): the Helm model's two, and for the generic model ten more.
func DefaultSecretNames(installModel string) []string {
	names := []string{"iam-signing-key", "tsb-iam-jwks"}
	if installModel == "generic" {
		names = append(names, "admin-credentials", "azure-credentials", "custom-host-ca", "elastic-credentials",
			"es-certs", "iam-oidc-client-secret", "ldap-credentials", "postgres-credentials", "tsb-certs", "xcp-central-cert")
	}
	return names
}

// MaxConfigSize bounds a configuration file: a real one is a few KiB, and decoding a huge one
// costs seconds and hundreds of MB before it is refused anyway.
const MaxConfigSize = 1 << 20

// ErrConfigTooLarge refuses a configuration over MaxConfigSize.
var ErrConfigTooLarge = fmt.Errorf("config is larger than the limit of %d bytes (1 MiB)", MaxConfigSize)

// Load reads the file at path strictly (an unknown key is an error naming it), fills defaults
// and validates the result.
func Load(path string) (*Config, error) {
	b, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// readConfig reads at most MaxConfigSize+1 bytes of the file: a larger one (or a device that
// never ends) is refused without being read.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if len(b) > MaxConfigSize {
		return nil, ErrConfigTooLarge
	}
	return b, nil
}

// LoadWithOverrides is Load with Helm-style overrides applied to the file first ("forge.mode=branch",
// "health.failures=5", "secrets.names={iam-signing-key,tsb-iam-jwks}"): the agent's --set flags
// and MPHA_SET. An override naming an unknown key is refused like the same key in the file.
func LoadWithOverrides(path string, sets []string) (*Config, error) {
	b, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	if len(sets) == 0 {
		return Parse(b)
	}
	doc := map[string]any{}
	// Strict like Parse: a key given twice would otherwise be merged away before Parse sees it.
	if err := sigsyaml.UnmarshalStrict(b, &doc); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, doc); err != nil {
			return nil, fmt.Errorf("override %q: %w", redact.String(s), err)
		}
	}
	merged, err := sigsyaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("applying overrides: %w", err)
	}
	return Parse(merged)
}

// Parse decodes, defaults and validates a configuration document.
func Parse(b []byte) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, ErrConfigTooLarge
	}
	var c Config
	if err := strictyaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default fills every unset field with its default.
func (c *Config) Default() {
	setDuration(&c.HeartbeatInterval, 10*time.Second)
	setString(&c.Kubernetes.Namespace, "tsb")
	setString(&c.Kubernetes.HelmRelease, "mp")
	setString(&c.Kubernetes.InstallModel, "helm")
	if len(c.Secrets.Names) == 0 {
		c.Secrets.Names = DefaultSecretNames(c.Kubernetes.InstallModel)
	}
	setString(&c.Secrets.HMACKeySecret, "mpha-hmac")
	setString(&c.SealedSecrets.ControllerNamespace, "kube-system")
	setString(&c.SealedSecrets.ControllerName, "sealed-secrets-controller")
	setString(&c.Git.Branch, "main")
	setString(&c.Git.Root, gitops.DefaultRoot)
	setString(&c.Git.AuthSecret, "mpha-git")
	setString(&c.Forge.Kind, "none")
	setString(&c.Forge.Mode, "pr")
	setDuration(&c.Forge.MergePollInterval, 30*time.Second)
	setString(&c.Postgres.Topology, "auto")
	setDuration(&c.Postgres.MaxLag, 30*time.Second)
	setString(&c.Postgres.Database, "tsb")
	if c.Postgres.MaxLagBytes == 0 {
		c.Postgres.MaxLagBytes = 16 << 20
	}
	setDuration(&c.Postgres.MaxImportAge, 25*time.Hour)
	setString(&c.Postgres.Replication, "none")
	setDuration(&c.Postgres.MaxSlotAge, time.Hour)
	setDuration(&c.Health.Interval, 10*time.Second)
	setDuration(&c.Health.Timeout, 5*time.Second)
	if c.Health.Port == 0 {
		c.Health.Port = 8443
	}
	if c.Health.Failures == 0 {
		c.Health.Failures = 3
	}
	if c.Health.Recoveries == 0 {
		c.Health.Recoveries = c.Health.Failures
	}
	setString(&c.Alerts.Path, "/alerts")
	setDuration(&c.Alerts.Remember, 24*time.Hour)
	setString(&c.Standby.ChartRepository, values.DefaultChartRepository)
	setString(&c.Standby.RoleMode, "manifest")
	if len(c.Standby.Deployments) == 0 {
		c.Standby.Deployments = []string{"tsb", "iam"}
	}
	setString(&c.Standby.RestoreCronJob, "tsb-restore")
	setString(&c.Standby.SecretValues, values.SecretsStrip)
	setString(&c.Flux.Namespace, "flux-system")
	setString(&c.Flux.Kustomization, "mpha")
	setString(&c.Flux.GitRepository, c.Flux.Kustomization)
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDuration(d *metav1.Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

// Validate returns every problem in the configuration, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	check := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	oneOf := func(key, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %v", v, allowed)
		}
	}
	positive := func(key string, d metav1.Duration) {
		if d.Duration <= 0 {
			bad(key, "must be a positive duration, got %s", d.Duration)
		}
	}

	required := func(key, v string, validate func(string) error) {
		if v == "" {
			bad(key, "required")
		} else {
			check(key, validate(v))
		}
	}
	required("cluster", c.Cluster, gitops.ValidateClusterName)
	required("pair", c.Pair, gitops.ValidateClusterName)
	positive("heartbeatInterval", c.HeartbeatInterval)
	if c.Kubernetes.Namespace == "" || c.Kubernetes.HelmRelease == "" {
		bad("kubernetes", "namespace and helmRelease must be set")
	}
	oneOf("kubernetes.installModel", c.Kubernetes.InstallModel, installModels)
	for i, n := range c.Secrets.Names {
		check(fmt.Sprintf("secrets.names[%d]", i), gitops.ValidateSecretName(n))
	}
	check("git.url", validateURL(c.Git.URL, "https", "http", "ssh"))
	if c.Git.Branch == "" {
		bad("git.branch", "must be set")
	}
	if _, err := gitops.NewLayout(c.Git.Root); err != nil {
		check("git.root", err)
	}
	oneOf("forge.kind", c.Forge.Kind, forgeKinds)
	oneOf("forge.mode", c.Forge.Mode, forgeModes)
	positive("forge.mergePollInterval", c.Forge.MergePollInterval)
	if c.Forge.Kind != "none" {
		check("forge.url", validateURL(c.Forge.URL, "https", "http"))
		if c.Forge.TokenSecret == "" {
			bad("forge.tokenSecret", "must name the Secret holding the %s token", c.Forge.Kind)
		}
	} else if c.Forge.Mode == "pr" {
		bad("forge.mode", `"pr" needs a forge: set forge.kind, or use mode "branch" or "direct"`)
	}
	check("nats.url", validateURL(c.NATS.URL, "nats", "tls", "ws", "wss"))
	if c.NATS.RequireSignedEvents && len(c.NATS.TrustedKeys) == 0 {
		bad("nats.trustedKeys", "requireSignedEvents needs at least one trusted key")
	}
	oneOf("postgres.topology", c.Postgres.Topology, topologies)
	positive("postgres.maxLag", c.Postgres.MaxLag)
	positive("postgres.maxImportAge", c.Postgres.MaxImportAge)
	if c.Postgres.MaxLagBytes < 0 {
		bad("postgres.maxLagBytes", "must be positive, got %d", c.Postgres.MaxLagBytes)
	}
	if len(c.Postgres.Database) > 63 {
		bad("postgres.database", "must be a Postgres database name (at most 63 bytes)")
	}
	if c.Postgres.PromoteOnFailover && c.Postgres.Topology != "streaming" && c.Postgres.Topology != "auto" {
		bad("postgres.promoteOnFailover", "promotes a streaming replica: not for topology %q", c.Postgres.Topology)
	}
	if c.Postgres.PromoteOnFailover && c.Postgres.DSNSecret == "" {
		bad("postgres.promoteOnFailover", "needs postgres.dsnSecret (the database to promote)")
	}
	if c.Postgres.SyncOnFailover && c.Postgres.Topology != "independent" && c.Postgres.Topology != "auto" {
		bad("postgres.syncOnFailover", "copies between independent databases: not for topology %q", c.Postgres.Topology)
	}
	if c.Postgres.SyncOnFailover && (c.Postgres.DSNSecret == "" || c.Postgres.PeerDSNSecret == "") {
		bad("postgres.syncOnFailover", "needs postgres.dsnSecret (the copy's target) and postgres.peerDSNSecret (its source)")
	}
	oneOf("postgres.replication", c.Postgres.Replication, replications)
	positive("postgres.maxSlotAge", c.Postgres.MaxSlotAge)
	if c.Postgres.Replication == "logical" {
		switch {
		case c.Postgres.Topology != "independent" && c.Postgres.Topology != "auto":
			bad("postgres.replication", "logical replicates between independent servers: not for topology %q", c.Postgres.Topology)
		case c.Postgres.DSNSecret == "" || c.Postgres.PeerDSNSecret == "":
			bad("postgres.replication", "logical needs postgres.dsnSecret (this site's database) and postgres.peerDSNSecret (the peer's, which the subscription connects to)")
		case c.Postgres.SyncOnFailover:
			bad("postgres.syncOnFailover", "copies the whole database before a failover; with replication logical the standby follows continually: choose one")
		case c.Postgres.PromoteOnFailover:
			bad("postgres.promoteOnFailover", "promotes a streaming replica; with replication logical the subscription is promoted: choose one")
		}
	}
	positive("health.interval", c.Health.Interval)
	if c.Health.Failures < 1 {
		bad("health.failures", "must be at least 1, got %d", c.Health.Failures)
	}
	if c.Health.ProbeURL != "" {
		check("health.probeURL", validateURL(c.Health.ProbeURL, "https", "http"))
	}
	if c.Health.SelfURL != "" {
		check("health.selfURL", validateURL(c.Health.SelfURL, "https", "http"))
	}
	positive("health.timeout", c.Health.Timeout)
	if c.Health.Recoveries < 1 {
		bad("health.recoveries", "must be at least 1, got %d", c.Health.Recoveries)
	}
	if c.Health.Port < 1 || c.Health.Port > 65535 {
		bad("health.port", "must be a TCP port (1-65535), got %d", c.Health.Port)
	}
	for i, p := range c.Health.Probes {
		if p.Name == "" || !strings.HasPrefix(p.Path, "/") {
			bad(fmt.Sprintf("health.probes[%d]", i), "needs a name and a path starting with '/'")
		}
	}
	for _, s := range []struct{ key, name string }{{"health.credentialsSecret", c.Health.CredentialsSecret},
		{"health.caSecret", c.Health.CASecret}, {"nats.signingKeySecret", c.NATS.SigningKeySecret}, {"alerts.authSecret", c.Alerts.AuthSecret}} {
		if s.name != "" {
			check(s.key, gitops.ValidateSecretName(s.name))
		}
	}
	c.validateAlerts(bad, positive)
	check("standby.chartRepository", validateURL(c.Standby.ChartRepository, "https", "http", "oci"))
	check("standby.overrides", c.Standby.Overrides.Validate())
	oneOf("standby.roleMode", c.Standby.RoleMode, roleModes)
	oneOf("standby.secretValues", c.Standby.SecretValues, values.SecretPolicies())
	check("standby.notSecret", values.ValidateNotSecret(c.Standby.NotSecret))
	for i, d := range c.Standby.Deployments {
		check(fmt.Sprintf("standby.deployments[%d]", i), gitops.ValidateSecretName(d))
	}
	check("standby.restoreCronJob", gitops.ValidateSecretName(c.Standby.RestoreCronJob))
	if c.SealedSecrets.CertURL != "" {
		check("sealedSecrets.certURL", validateURL(c.SealedSecrets.CertURL, "https", "http"))
	}
	check("flux.namespace", gitops.ValidateClusterName(c.Flux.Namespace))
	check("flux.kustomization", gitops.ValidateSecretName(c.Flux.Kustomization))
	check("flux.gitRepository", gitops.ValidateSecretName(c.Flux.GitRepository))
	return errors.Join(errs...)
}

// validateAlerts checks the bridge: a path, credentials, and rules naming a pair's cluster.
func (c *Config) validateAlerts(bad func(string, string, ...any), positive func(string, metav1.Duration)) {
	a := c.Alerts
	if !a.Enabled {
		return
	}
	if !strings.HasPrefix(a.Path, "/") || slices.Contains([]string{"/healthz", "/readyz", "/metrics"}, a.Path) {
		bad("alerts.path", "must start with '/' and not be /healthz, /readyz or /metrics, got %q", a.Path)
	}
	if a.AuthSecret == "" {
		bad("alerts.authSecret", "must name the Secret with the webhook's token or username and password: the bridge is never open")
	}
	if len(a.Rules) == 0 {
		bad("alerts.rules", "an enabled bridge needs at least one rule")
	}
	positive("alerts.remember", a.Remember)
	for i, r := range a.Rules {
		key := fmt.Sprintf("alerts.rules[%d]", i)
		if r.Alert == "" {
			bad(key+".alert", "must name an alertname")
		}
		if r.Action != "suggest" && r.Action != "request" {
			bad(key+".action", "%q is not suggest or request", r.Action)
		}
		if err := gitops.ValidateClusterName(r.Target); err != nil {
			bad(key+".target", "%v", err)
		}
		if r.Mode != "" && r.Mode != "planned" && r.Mode != "emergency" {
			bad(key+".mode", "%q is not planned or emergency", r.Mode)
		}
	}
}

func validateURL(raw string, schemes ...string) error {
	if raw == "" {
		return errors.New("required")
	}
	// url.Parse's errors quote the URL, which may carry a token: never pass them on.
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return fmt.Errorf("want a %v URL with a host, got scheme %q", schemes, u.Scheme)
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return errors.New("holds a password: credentials belong in the referenced Secret, not the URL")
	}
	return nil
}
