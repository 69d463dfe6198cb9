// Package manifests holds the Flux bootstrap files of a pair (fleet/, crds/) and their tests: the
// objects are valid for the CRDs they use, each cluster's values.yaml renders the chart into a
// configuration the agent accepts, and pair.yaml parses. It has no non-test code.
package manifests
