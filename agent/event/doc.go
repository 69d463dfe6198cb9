// Package event holds mpha's event contract (docs/design.md §6): the JetStream stream and
// subjects of a pair, the CloudEvents 1.0 (JSON, structured mode) each subject carries and the data
// of each, the decoder and validator of failover requests (with optional ed25519 signatures), and
// the JetStream plumbing: stream, durable consumer, publish with Nats-Msg-Id, and the dead-letter
// subject for what an agent refuses.
//
// Events are the CloudEvents Go SDK's event.Event (aliased here as Event, so callers need not import
// a second package named event). It imports gitops and internal/redact, never agent or cmd.
package event
