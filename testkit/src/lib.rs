//! What Fusebox's tests, the cluster demo and the fleet bench share, kept out of the
//! published crates (this crate is not published): [`servers`], the harness that starts real
//! nats-server processes (with [`servers::credentials`] for TLS, nkeys and operator JWTs),
//! [`wait`], polls against a deadline, and [`config`], the breaker configuration the
//! cross-crate fleet tests trip.
//!
//! Depend on it as a dev-dependency; only binaries that start real servers themselves (the
//! demo's orchestrator, `fleet-bench`) take it as a normal one.

pub mod config;
pub mod servers;
pub mod wait;
