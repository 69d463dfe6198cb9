package runtime

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/alerts"
	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/health"
)

// watchSecrets reads what the health monitor and the alert bridge need from the agent's Secrets:
// at set-up, which retries while one is missing.
func (d *deps) watchSecrets(ctx context.Context, o Options, cs kubernetes.Interface) error {
	h, a := o.Config.Health, o.Config.Alerts
	if h.CredentialsSecret != "" {
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, h.CredentialsSecret, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("health.credentialsSecret: reading %s/%s: %w", o.Namespace, h.CredentialsSecret, err)
		}
		d.probeCreds = health.Credentials{Username: string(s.Data["username"]), Password: string(s.Data["password"]),
			Token: string(s.Data["token"])}
	}
	if h.CASecret != "" {
		ca, err := secretField(ctx, cs, o.Namespace, h.CASecret, "ca.crt")
		if err != nil {
			return fmt.Errorf("health.caSecret: %w", err)
		}
		d.probeCA = ca
	}
	pg := o.Config.Postgres
	for _, ref := range []struct {
		key, name string
		dsn       *string
	}{{"postgres.dsnSecret", pg.DSNSecret, &d.selfDSN}, {"postgres.peerDSNSecret", pg.PeerDSNSecret, &d.peerDSN},
		{"postgres.subscriptionDSNSecret", pg.SubscriptionDSNSecret, &d.adminDSN}} {
		if ref.name == "" {
			continue
		}
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, ref.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%s: reading %s/%s: %w", ref.key, o.Namespace, ref.name, err)
		}
		// A "dsn" key, or username/password with the server's "address" (host:port).
		if *ref.dsn, err = database.DSN(s.Data, database.DataStore{Address: string(s.Data["address"]), Name: pg.Database,
			SSLMode: string(s.Data["sslMode"])}); err != nil {
			return fmt.Errorf("%s %s: %w", ref.key, ref.name, err)
		}
	}
	if a.Enabled {
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, a.AuthSecret, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("alerts.authSecret: reading %s/%s: %w", o.Namespace, a.AuthSecret, err)
		}
		d.alertAuth = alerts.Auth{Token: string(s.Data["token"]), Username: string(s.Data["username"]), Password: string(s.Data["password"])}
	}
	return nil
}

// secretField reads one field of a Secret in the agent's namespace.
func secretField(ctx context.Context, cs kubernetes.Interface, ns, name, field string) ([]byte, error) {
	data, err := secretData(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	v, ok := data[field]
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no %q field", ns, name, field)
	}
	return v, nil
}

// secretData reads a Secret's data. A Secret without data gives an empty map, not nil: to
// agent.GitSecrets nil means no Secret configured, so an empty signing key Secret is refused
// rather than read as "do not sign".
func secretData(ctx context.Context, cs kubernetes.Interface, ns, name string) (map[string][]byte, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
	}
	if s.Data == nil {
		return map[string][]byte{}, nil
	}
	return s.Data, nil
}
