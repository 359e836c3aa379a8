//! NATS transport for Fusebox. Being built (issue: NATS transport): it will own the
//! `JetStream` outcome feed, KV leases and decisions, and the wire codecs. What exists today is
//! [`servers`]: the harness that starts real nats-server processes for the tests.

pub mod servers;
