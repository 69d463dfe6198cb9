package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops/seal"
)

func newSecretsCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Short: "Seal and export the TSB secrets"}
	cmd.AddCommand(newSecretsSealCommand(o), newSecretsExportCommand(o))
	return cmd
}

// newSecretsSealCommand seals a Secret manifest offline, as `kubeseal --cert` does, with the same
// strict scope and annotations the agent uses.
func newSecretsSealCommand(o *globalOptions) *cobra.Command {
	var certFile, keyFile, in string
	cmd := &cobra.Command{
		Use:   "seal --cert FILE [-f SECRET.yaml]",
		Short: "Seal a Secret manifest for a cluster's sealed-secrets certificate (kubeseal-compatible output)",
		Long: `Reads a Secret manifest (from -f or standard input) and writes the SealedSecret that the
cluster owning --cert unseals into it. The scope is strict: only the same name in the same
namespace. A certificate past or before its validity dates gets a warning on stderr; a Secret
whose SealedSecret would pass the API server's object limit (1 MiB: data over ~750 KiB) is
refused, before anything is encrypted. With --hmac-key-file (the agents' key), the output carries the digest the agent uses to
decide whether the secret changed; without it, the agent re-seals the secret on its next pass.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" {
				return errors.New("--cert is required")
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("reading --cert: %w", err)
			}
			cert, err := seal.ParseCert(certPEM)
			if err != nil {
				return err
			}
			if err := cert.Validity(time.Now()); err != nil {
				fmt.Fprintf(o.stderr, "warning: --cert %s: %v; sealing anyway (the controller decrypts whatever the dates), but make sure the cluster's controller still holds this key\n", certFile, err)
			}
			var key []byte
			if keyFile != "" {
				if key, err = os.ReadFile(keyFile); err != nil {
					return fmt.Errorf("reading --hmac-key-file: %w", err)
				}
				key = bytes.TrimSpace(key)
			}
			s, err := readSecret(cmd.InOrStdin(), in)
			if err != nil {
				return err
			}
			ss, err := seal.Seal(cert, key, s)
			if err != nil {
				return err
			}
			out, err := seal.Marshal(ss)
			if err != nil {
				return err
			}
			_, err = o.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "the target cluster's sealed-secrets certificate (PEM; from /v1/cert.pem or the repository's sealing-cert.pem)")
	cmd.Flags().StringVar(&keyFile, "hmac-key-file", "", "the agents' HMAC key, to stamp the change digest (optional)")
	cmd.Flags().StringVarP(&in, "filename", "f", "-", "the Secret manifest (- for standard input)")
	return cmd
}

// readSecret decodes one Secret manifest strictly enough to refuse something else.
func readSecret(stdin io.Reader, path string) (*corev1.Secret, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the Secret: %w", err)
	}
	var s corev1.Secret
	if err := yaml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding the Secret: %w", err)
	}
	if s.Kind != "Secret" || s.Name == "" || s.Namespace == "" {
		return nil, fmt.Errorf("want a Secret with a name and a namespace, got kind %q name %q namespace %q", s.Kind, s.Name, s.Namespace)
	}
	return &s, nil
}
