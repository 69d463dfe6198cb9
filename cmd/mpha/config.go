package main

import (
	"errors"
	"fmt"

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
	var path string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate an agent configuration file and print it with defaults applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("--config is required")
			}
			c, err := agent.Load(path)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			b, err := yaml.Marshal(c)
			if err != nil {
				return fmt.Errorf("formatting config: %w", err)
			}
			_, err = o.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "the agent's configuration file (YAML)")
	return cmd
}
