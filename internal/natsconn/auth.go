package natsconn

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// authOption is the nats.go option for o's way of authenticating (one that sets nothing for
// none). Files are read
// again at every (re)connection, so a rotated Secret mounted as files takes effect.
func (o *Options) authOption() (nats.Option, error) {
	switch {
	case o.CredsFile != "":
		return nats.UserCredentials(o.CredsFile), nil
	case len(o.Creds) > 0:
		return nats.UserCredentialBytes(o.Creds), nil
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey file %s: %w", o.NKeyFile, err)
		}
		return opt, nil
	case len(o.NKeySeed) > 0:
		return nkeyOption(o.NKeySeed)
	case o.User != "":
		return nats.UserInfo(o.User, o.Password), nil
	case o.Token != "":
		return nats.Token(o.Token), nil
	}
	return func(*nats.Options) error { return nil }, nil
}

// nkeyOption signs the server's nonce with a user nkey seed held in memory.
func nkeyOption(seed []byte) (nats.Option, error) {
	seed = bytes.Clone(bytes.TrimSpace(seed))
	kp, err := nkeys.ParseDecoratedUserNKey(seed)
	if err != nil {
		return nil, fmt.Errorf("nkey: not a user nkey seed: %w", err) // nkeys' errors quote no key
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil {
		return nil, fmt.Errorf("nkey: %w", err)
	}
	return nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
		kp, err := nkeys.ParseDecoratedUserNKey(seed)
		if err != nil {
			return nil, fmt.Errorf("nkey: %w", err)
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	}), nil
}

// certLoader returns the client certificate, read at every TLS handshake; nil when none is set.
func (o *Options) certLoader() nats.TLSCertHandler {
	if o.CertFile == "" && len(o.Cert) == 0 {
		return nil
	}
	return func() (tls.Certificate, error) {
		certPEM, err := contents("client certificate", o.CertFile, o.Cert)
		if err != nil {
			return tls.Certificate{}, err
		}
		keyPEM, err := contents("client key", o.KeyFile, o.Key)
		if err != nil {
			return tls.Certificate{}, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
		}
		return cert, nil
	}
}

// caLoader returns the pool that verifies the server; nil (the system's roots) when no CA is set.
func (o *Options) caLoader() nats.RootCAsHandler {
	if o.CAFile == "" && len(o.CA) == 0 {
		return nil
	}
	return func() (*x509.CertPool, error) {
		b, err := contents("CA", o.CAFile, o.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, errors.New("CA: no PEM certificate found")
		}
		return pool, nil
	}
}

// contents reads file, or returns data when no file is named.
func contents(what, file string, data []byte) ([]byte, error) {
	if file == "" {
		return data, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}
