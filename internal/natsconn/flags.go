package natsconn

import "github.com/spf13/pflag"

// BindFlags adds the --nats-* flags every command that talks to NATS shares (cmd/mpha maps each
// to MPHA_NATS_* as well). Passwords and tokens are better given by environment
// (MPHA_NATS_PASSWORD, MPHA_NATS_TOKEN) than on a command line others can read.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "nats-url", o.URL, "NATS server URL, or several separated by commas (nats://, tls://)")
	fs.StringVar(&o.CredsFile, "nats-creds", o.CredsFile, "NATS credentials file: user JWT and nkey seed")
	fs.StringVar(&o.NKeyFile, "nats-nkey", o.NKeyFile, "file holding a NATS user nkey seed")
	fs.StringVar(&o.User, "nats-user", o.User, "NATS user (with --nats-password)")
	fs.StringVar(&o.Password, "nats-password", o.Password, "NATS password (better: MPHA_NATS_PASSWORD)")
	fs.StringVar(&o.Token, "nats-token", o.Token, "NATS token (better: MPHA_NATS_TOKEN)")
	fs.StringVar(&o.CAFile, "nats-ca", o.CAFile, "PEM CA file that verifies the NATS server (default: system roots)")
	fs.StringVar(&o.CertFile, "nats-cert", o.CertFile, "PEM client certificate for NATS (with --nats-key)")
	fs.StringVar(&o.KeyFile, "nats-key", o.KeyFile, "PEM key of --nats-cert")
}
