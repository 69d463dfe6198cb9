package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/mpha-dev/mpha/gitops"
)

// nameFlag is a flag whose value names a cluster, a pair or a commit kind. Each command checks
// its name flags with checkNames before it reads, sends or touches anything: the names become
// path segments, NATS subject tokens and label values, so the rule is the agents' own
// (gitops.ValidateName, a DNS-1123 label), and `--to ../etc` is refused here, not published.
type nameFlag struct {
	flag     string // without "--"
	what     string // "cluster name", "pair name", "kind"
	values   []string
	required bool
}

func clusterFlag(flag, value string, required bool) nameFlag {
	return nameFlag{flag: flag, what: "cluster name", values: []string{value}, required: required}
}

func pairFlag(flag, value string, required bool) nameFlag {
	return nameFlag{flag: flag, what: "pair name", values: []string{value}, required: required}
}

func kindFlag(flag string, values []string) nameFlag {
	return nameFlag{flag: flag, what: "kind", values: values}
}

// checkNames returns every problem of the name flags, each naming its flag.
func checkNames(flags ...nameFlag) error {
	var errs []error
	for _, f := range flags {
		if len(f.values) == 0 || len(f.values) == 1 && f.values[0] == "" {
			if f.required {
				errs = append(errs, fmt.Errorf("--%s is required", f.flag))
			}
			continue
		}
		for _, v := range f.values {
			if err := gitops.ValidateName(f.what, v); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", f.flag, err))
			}
		}
	}
	return errors.Join(errs...)
}

// contextFlag is a flag whose value names a kubeconfig context.
type contextFlag struct{ flag, value string }

// checkContexts checks flags naming kubeconfig contexts before any cluster is contacted: each
// printable and present in the kubeconfig the global flags select. A context is not a
// cluster's name in the pair (EKS names them arn:aws:eks:…:cluster/east), so the DNS-1123 rule
// of checkNames does not apply.
func checkContexts(o *globalOptions, flags ...contextFlag) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := rules.Load()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	var errs []error
	for _, f := range flags {
		flag, v := f.flag, f.value
		switch {
		case v == "":
			errs = append(errs, fmt.Errorf("--%s is required", flag))
		case display(v, 0) != v:
			errs = append(errs, fmt.Errorf("--%s %s: a context name is printable text", flag, gitops.Quote(v)))
		case cfg.Contexts[v] == nil:
			names := make([]string, 0, len(cfg.Contexts))
			for n := range cfg.Contexts {
				names = append(names, display(n, maxCell))
			}
			slices.Sort(names)
			errs = append(errs, fmt.Errorf("--%s %s: no such context in the kubeconfig (it has: %s)", flag, gitops.Quote(v), strings.Join(names, ", ")))
		}
	}
	return errors.Join(errs...)
}
