// Package charts holds what keeps the agent's Helm chart (charts/mpha) true to the agent: the
// generator of the chart's configuration schema and defaults and of docs/configuration.md, all
// read from agent.Config (`make generate`), and the chart's tests (lint, golden renders, schema,
// an install into a rig cluster with the RBAC proven by impersonated requests). It imports agent;
// nothing imports it.
package charts
