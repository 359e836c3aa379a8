//! Fusebox core: the pure breaker state machine ([`machine`]), the lock-free hot path
//! ([`hot`]) that services call on every request, the ractor breaker actors and the
//! [`registry`] that carry out the machine's effects through a [`transport`] (in-process
//! here, NATS in `transport-nats`), and [`observe`] (tracing, events, metrics).
//!
//! Architecture invariant: nothing in [`machine`] knows of NATS, tokio, ractor, threads or
//! the wall clock; the tidy test in `tests/` enforces it. The hot path never blocks, never
//! allocates and never reads a clock in the closed state.

// The runtime (actors, registry, transports, observability) is left out of loom builds:
// loom models the hot path's atomics, and swaps `sync::Arc` for its own, which the
// runtime's tokio tasks cannot hold.
#[cfg(not(loom))]
pub(crate) mod actor;
pub mod hot;
pub mod load;
pub mod machine;
#[cfg(not(loom))]
pub(crate) mod node;
#[cfg(not(loom))]
pub mod observe;
#[cfg(not(loom))]
pub mod registry;
#[cfg(not(loom))]
pub mod shell;
pub(crate) mod sync;
#[cfg(not(loom))]
pub mod transport;

pub use hot::{Breaker, CallError, Outcome, OwnedPermit, Permit, RejectReason, Rejected};
pub use load::ConfigLoadError;
pub use machine::{BreakerConfig, BreakerConfigBuilder};
#[cfg(not(loom))]
pub use observe::BreakerEvent;
#[cfg(not(loom))]
pub use registry::{Registry, RegistryBuilder, RegistryError};

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "http")]
pub mod http;
