module github.com/mpha-dev/mpha/tools/flux

go 1.26.2

// v1.10.x needs go 1.27; kustomize-controller v1.9.6 needs a fluxcd/pkg/kustomize the proxy refuses.
require (
	github.com/fluxcd/kustomize-controller v1.9.5
	github.com/fluxcd/kustomize-controller/api v1.9.5
	github.com/fluxcd/source-controller v1.9.6
	github.com/fluxcd/source-controller/api v1.9.6
)

// Copied from the controllers' go.mod (minus their "=> ./api" lines).
replace github.com/opencontainers/go-digest => github.com/opencontainers/go-digest v1.0.1-0.20220411205349-bde1400a84be

replace (
	sigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1
	sigs.k8s.io/kustomize/kyaml => sigs.k8s.io/kustomize/kyaml v0.21.1
)

replace gopkg.in/yaml.v3 => gopkg.in/yaml.v3 v3.0.1

// v0.18.3, which source-controller v1.9.6 asks for, is refused by the module proxy.
replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1
