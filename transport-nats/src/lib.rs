//! NATS transport for Fusebox: [`nats::NatsTransport`] implements the breaker runtime's
//! `Transport` over `JetStream` (outcome feed, control stream, KV leases, decisions and
//! configs), with the wire [`codec`]s, the [`layout`] of names, [`provision`]ing of streams
//! and buckets, and [`servers`], the harness that starts real nats-server processes for
//! the tests.

pub mod codec;
pub mod layout;
pub mod nats;
pub mod provision;
pub mod servers;
