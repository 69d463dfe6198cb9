{{/* Generated from agent.Config by `make generate` (charts/generate.go): do not edit. */}}
{{/* mpha.config.defaults: Config.Default on an empty configuration, without secrets.names. */}}
{{- define "mpha.config.defaults" -}}
alerts:
  path: /alerts
  remember: 24h0m0s
flux:
  gitRepository: mpha
  kustomization: mpha
  namespace: flux-system
forge:
  kind: none
  mergePollInterval: 30s
  mode: pr
git:
  authSecret: mpha-git
  branch: main
  root: mpha
health:
  failures: 3
  interval: 10s
  port: 8443
  recoveries: 3
  timeout: 5s
heartbeatInterval: 10s
kubernetes:
  helmRelease: mp
  installModel: helm
  namespace: tsb
postgres:
  database: tsb
  maxImportAge: 25h0m0s
  maxLag: 30s
  maxLagBytes: 16777216
  maxSlotAge: 1h0m0s
  replication: none
  topology: auto
sealedSecrets:
  controllerName: sealed-secrets-controller
  controllerNamespace: kube-system
secrets:
  hmacKeySecret: mpha-hmac
standby:
  chartRepository: https://charts.dl.tetrate.io/public/helm/charts/
  deployments:
  - tsb
  - iam
  restoreCronJob: tsb-restore
  roleMode: manifest
  secretValues: strip
{{- end -}}

{{/* mpha.config.secretNames: the default secrets.names per kubernetes.installModel. */}}
{{- define "mpha.config.secretNames" -}}
generic:
- iam-signing-key
- tsb-iam-jwks
- admin-credentials
- azure-credentials
- custom-host-ca
- elastic-credentials
- es-certs
- iam-oidc-client-secret
- ldap-credentials
- postgres-credentials
- tsb-certs
- xcp-central-cert
helm:
- iam-signing-key
- tsb-iam-jwks
{{- end -}}

{{/* mpha.config.required: fails `helm install` and `helm template` on a missing required key (not
   `helm lint`, whose lint mode lets `required` pass); its context is the merged configuration. */}}
{{- define "mpha.config.required" -}}
{{- $_ := required "config.cluster is required (docs/configuration.md): Cluster is this cluster's name in pair.yaml." (dig "cluster" "" .) -}}
{{- $_ := required "config.pair is required (docs/configuration.md): Pair names the pair: NATS subjects and the stream name derive from it." (dig "pair" "" .) -}}
{{- $_ := required "config.git.url is required (docs/configuration.md): Git is the GitOps repository." (dig "git" "url" "" .) -}}
{{- $_ := required "config.nats.url is required (docs/configuration.md): NATS is the JetStream server carrying failover events and heartbeats." (dig "nats" "url" "" .) -}}
{{- end -}}

{{/* mpha.agent.facts: what the agent does against the API that the RBAC follows. */}}
{{- define "mpha.agent.facts" -}}
agentSecrets:
- secrets.hmacKeySecret
- git.authSecret
- git.signingKeySecret
- forge.tokenSecret
- nats.credsSecret
- nats.signingKeySecret
- postgres.dsnSecret
- postgres.peerDSNSecret
- postgres.subscriptionDSNSecret
- health.credentialsSecret
- health.caSecret
- alerts.authSecret
checkedSecrets:
- iam-signing-key
- tsb-iam-jwks
- tsb-certs
- xcp-central-cert
leasePrefix: mpha-agent-
readinessConfigMap: mpha-readiness
releaseSecretPrefix: sh.helm.release.v1.
{{- end -}}
