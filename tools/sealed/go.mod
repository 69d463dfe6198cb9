module github.com/mpha-dev/mpha/tools/sealed

go 1.26.8

require github.com/bitnami/sealed-secrets v0.40.0

// v0.40.0 renamed its module to github.com/bitnami/sealed-secrets, which the proxy refuses;
// the same code is served under the old path.
replace github.com/bitnami/sealed-secrets => github.com/bitnami-labs/sealed-secrets v0.40.0
