//! NATS transport for Fusebox: the `JetStream` outcome feed, KV leases and decisions, the
//! wire codecs, and [`servers`], the harness that starts real nats-server processes for the
//! tests. Being built (issue: NATS transport).

pub mod codec;
pub mod layout;
pub mod servers;
