package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
)

func newConfigCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the agent's configuration file"}
	cmd.AddCommand(newConfigCheckCommand(o))
	return cmd
}

// newConfigCheckCommand validates a configuration file before it is deployed and prints it with
// every default filled in, so an operator sees what the agent will run with.
func newConfigCheckCommand(o *globalOptions) *cobra.Command {
	var config, filename string
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate an agent configuration file and print it with defaults applied",
		Long: `Reads the agent's configuration file as ` + "`mpha agent --config`" + ` does (an unknown, mis-cased or
duplicate key, or a bad value, is an error naming the key) and prints it with every default
filled in. The file is the command's input document, so -f/--filename names it too, as for the
other commands; - reads standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := oneOf(cmd, "config", config, "filename", filename)
			if err != nil {
				return err
			}
			if path == "" {
				return errors.New("--config is required")
			}
			c, err := loadConfig(cmd.InOrStdin(), path)
			if err != nil {
				return fmt.Errorf("%s: %w", inputName(path), err)
			}
			b, err := yaml.Marshal(c)
			if err != nil {
				return fmt.Errorf("formatting config: %w", err)
			}
			_, err = o.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the agent's configuration file (YAML; - for standard input)")
	cmd.Flags().StringVarP(&filename, "filename", "f", "", "the same as --config")
	return cmd
}

// oneOf returns the value of whichever of two flags that name the same thing was given, and
// refuses both at once with different values.
func oneOf(cmd *cobra.Command, a, av, b, bv string) (string, error) {
	f := cmd.Flags()
	switch {
	case f.Changed(a) && f.Changed(b) && av != bv:
		return "", fmt.Errorf("--%s %s and --%s %s: give one", a, av, b, bv)
	case f.Changed(b):
		return bv, nil
	}
	return av, nil
}

// loadConfig reads the agent's configuration from path, or from stdin for "-".
func loadConfig(stdin io.Reader, path string) (*agent.Config, error) {
	if path != "-" {
		return agent.Load(path)
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return agent.Parse(b)
}
