//! Fusebox core: the pure breaker state machine ([`machine`]) and, later, the lock-free hot
//! path, the ractor breaker actors and the registry that carry out its effects.
//!
//! Architecture invariant: nothing in [`machine`] knows of NATS, tokio, ractor, threads or
//! the wall clock; the tidy test in `tests/` enforces it.

pub mod machine;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
