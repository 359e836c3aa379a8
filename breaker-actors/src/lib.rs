//! Fusebox core: the pure breaker state machine ([`machine`]), the lock-free hot path
//! ([`hot`]) that services call on every request, the ractor breaker actors and the
//! [`registry`] that carry out the machine's effects through a [`transport`] (in-process
//! here, NATS in `transport-nats`), and [`observe`] (tracing, events, metrics).
//!
//! Architecture invariant: nothing in [`machine`] knows of NATS, tokio, ractor, threads or
//! the wall clock; the tidy test in `tests/` enforces it. The hot path never blocks, never
//! allocates and never reads a clock in the closed state.

pub(crate) mod actor;
pub mod hot;
pub mod machine;
pub mod observe;
pub mod registry;
pub(crate) mod sync;
pub mod transport;

pub use hot::{Breaker, CallError, Outcome, Permit, RejectReason, Rejected};
pub use machine::BreakerConfig;
pub use observe::BreakerEvent;
pub use registry::{Registry, RegistryBuilder, RegistryError};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
