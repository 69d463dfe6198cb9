package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops/values"
)

func newValuesCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "values", Short: "Render the standby management plane's Helm values"}
	cmd.AddCommand(newValuesRenderCommand(o))
	return cmd
}

// newValuesRenderCommand is the agent's values rendering, offline: for people who keep the
// active's values in a file (the runbook's source_mp_values.yaml → dr_mp_values.yaml).
func newValuesRenderCommand(o *globalOptions) *cobra.Command {
	var in, configFile, roleMode, secretValues string
	var sets, notSecret []string
	cmd := &cobra.Command{
		Use:   "render -f SOURCE_VALUES.yaml [--set PATH=VALUE ...]",
		Short: "Render the standby's values from the active's values file (spec kept, secrets and credentials dropped)",
		Long: `Reads the active management plane's Helm values (from -f or standard input) and writes the
standby's: spec, image, operator and certManager are kept, secrets are dropped (they travel as
SealedSecrets), and the per-site overrides are applied, from the agent configuration's
standby.overrides (--config) and from --set, which wins. Only these paths may be overridden:
` + "  " + strings.Join(values.AllowedOverrides(), "\n  ") + `
The output goes to Git, so a credential left among the kept values (a password under spec, a
client secret, an env entry such as DB_PASSWORD, a private key) is stripped, its path printed on
standard error, or with --secret-values refuse the rendering is refused. Keys that only look like
credentials are kept with --not-secret (or standby.notSecret); built in are:
` + "  " + strings.Join(values.BuiltinNotSecret(), "\n  ") + `
The output is deterministic: the same input gives the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ov := values.Overrides{}
			if configFile != "" {
				cfg, err := agent.Load(configFile)
				if err != nil {
					return err
				}
				for k, v := range cfg.Standby.Overrides {
					ov[k] = v
				}
				if roleMode == "" {
					roleMode = cfg.Standby.RoleMode
				}
				if secretValues == "" {
					secretValues = cfg.Standby.SecretValues
				}
				notSecret = append(notSecret, cfg.Standby.NotSecret...)
			}
			for _, s := range sets {
				k, raw, ok := strings.Cut(s, "=")
				if !ok || k == "" {
					return fmt.Errorf("--set %q: want PATH=VALUE", s)
				}
				var v any
				if err := yaml.Unmarshal([]byte(raw), &v); err != nil {
					return fmt.Errorf("--set %s: value: %w", k, err)
				}
				ov[k] = v
			}
			b, err := readInput(cmd.InOrStdin(), in)
			if err != nil {
				return err
			}
			src, err := values.ParseFile(b)
			if err != nil {
				return fmt.Errorf("%s: %w", inputName(in), err)
			}
			rendered, err := values.Render(src, values.Options{Overrides: ov, SecretValues: secretValues, NotSecret: notSecret})
			if err != nil {
				return err
			}
			warnStripped(o.stderr, rendered.Stripped)
			out := rendered.Values
			switch roleMode {
			case "", "manifest":
			case "values":
				if err := values.SetReplicas(out, 0); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--role-mode %q: want manifest or values", roleMode)
			}
			enc, err := values.Marshal(out)
			if err != nil {
				return err
			}
			_, err = o.stdout.Write(enc)
			return err
		},
	}
	cmd.Flags().StringVarP(&in, "filename", "f", "-", "the active's values file (- for standard input)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override PATH=VALUE (VALUE is YAML); repeatable")
	cmd.Flags().StringVar(&configFile, "config", "", "agent configuration whose standby.overrides and standby.roleMode apply")
	cmd.Flags().StringVar(&roleMode, "role-mode", "", `"values" sets the standby's tsb/iam replicaCount to 0 in the values`)
	cmd.Flags().StringVar(&secretValues, "secret-values", "", `what becomes of a credential among the values: strip (default) or refuse`)
	cmd.Flags().StringArrayVar(&notSecret, "not-secret", nil, `a key ("*SecretName") or path ("spec.a[].b") that only looks like a credential; repeatable`)
	return cmd
}

// warnStripped names on stderr the paths of the credentials stripped, never their values.
func warnStripped(w io.Writer, paths []string) {
	if len(paths) == 0 {
		return
	}
	fmt.Fprintf(w, "warning: %d credential(s) stripped from the values, which go to Git; give them to the chart through Secrets "+
		"(or --not-secret a key that holds none):\n", len(paths))
	for _, p := range paths {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

func inputName(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}

// readInput reads a file, or standard input for "-", refusing more than values.MaxFileSize.
func readInput(stdin io.Reader, path string) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading values: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, values.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", inputName(path), err)
	}
	if len(b) > values.MaxFileSize {
		return nil, errors.New(inputName(path) + ": larger than the values size limit")
	}
	return b, nil
}
