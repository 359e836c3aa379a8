//! Fusebox core: the pure breaker state machine ([`machine`]), the lock-free hot path
//! ([`hot`]) that services call on every request, and (being built) the ractor breaker
//! actors, the registry and the in-process transport that carry out the machine's effects.
//!
//! Architecture invariant: nothing in [`machine`] knows of NATS, tokio, ractor, threads or
//! the wall clock; the tidy test in `tests/` enforces it. The hot path never blocks, never
//! allocates and never reads a clock in the closed state.

pub mod hot;
pub mod machine;
pub(crate) mod sync;
#[cfg(feature = "tower")]
pub mod tower;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
