package alerts

import (
	"errors"
	"fmt"
	"maps"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
)

// Action is what a rule does with a firing alert.
type Action string

// The actions.
const (
	// ActionSuggest publishes a failover suggestion (health.TypeFailoverSuggested): a person decides.
	ActionSuggest Action = "suggest"
	// ActionRequest publishes a failover.requested event: the target agent runs its preflight and
	// proposes the failover as a pull request.
	ActionRequest Action = "request"
)

// Rule maps alerts to an action. An alert matches when its alertname is Alert and it carries
// every label of Labels with the same value.
type Rule struct {
	Alert  string            `json:"alert"`
	Labels map[string]string `json:"labels,omitempty"`
	Action Action            `json:"action"`
	// Target is the cluster to fail over to.
	Target string `json:"target"`
	// Mode of a request: planned (the default) or emergency. An emergency request forces no
	// check: whoever merges still sees every failing check in the pull request.
	Mode event.Mode `json:"mode,omitempty"`
}

// Matches says whether the alert with labels matches r.
func (r Rule) Matches(labels map[string]string) bool {
	if labels["alertname"] != r.Alert {
		return false
	}
	for k, v := range r.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// validate checks r and fills its default mode.
func (r *Rule) validate() error {
	var errs []error
	if r.Alert == "" {
		errs = append(errs, errors.New("alert: an alertname is required"))
	}
	if r.Action != ActionSuggest && r.Action != ActionRequest {
		errs = append(errs, fmt.Errorf("action: %q is not suggest or request", r.Action))
	}
	if err := gitops.ValidateClusterName(r.Target); err != nil {
		errs = append(errs, fmt.Errorf("target: %w", err))
	}
	if r.Mode == "" {
		r.Mode = event.ModePlanned
	}
	if r.Mode != event.ModePlanned && r.Mode != event.ModeEmergency {
		errs = append(errs, fmt.Errorf("mode: %q is not planned or emergency", r.Mode))
	}
	r.Labels = maps.Clone(r.Labels)
	return errors.Join(errs...)
}

// match returns the first rule matching labels.
func match(rules []Rule, labels map[string]string) (Rule, bool) {
	for _, r := range rules {
		if r.Matches(labels) {
			return r, true
		}
	}
	return Rule{}, false
}
