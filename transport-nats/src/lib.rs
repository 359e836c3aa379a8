//! NATS transport for Fusebox: not built yet (issue: NATS transport). It will own the
//! `JetStream` outcome feed, KV leases and decisions, and the wire codecs.
