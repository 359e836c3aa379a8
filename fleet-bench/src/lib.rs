//! The fleet-scale benchmark's measuring kit, shared by the `fleet-bench` binary and the
//! structural smoke test: a fleet of real nodes (one `NatsTransport` + `Registry` each) in one
//! process, and everything that measures it from the outside, so the same code measures any
//! transport implementation: the servers' monitoring endpoints ([`monitor`]), a plain NATS
//! subscriber that counts what each node publishes ([`tap`]), the per-window figures built
//! from both ([`window`]), `/proc` readings ([`procstat`]) and the fleet itself ([`fleet`]).

pub mod absorption;
pub mod fleet;
pub mod lease_loss;
pub mod monitor;
pub mod point;
pub mod procstat;
pub mod propagation;
pub mod tap;
pub mod window;

/// An error the bench reports and gives up on: what was being done, and why it failed.
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// `Err(BenchError)` naming what was being done.
pub fn fail<T>(doing: impl std::fmt::Display, why: impl std::fmt::Display) -> Result<T, BenchError> {
    Err(BenchError(format!("{doing}: {why}")))
}

/// Maps any displayable error into a [`BenchError`] naming what was being done.
pub trait Context<T> {
    /// Names what was being done when this failed.
    fn doing(self, what: impl std::fmt::Display) -> Result<T, BenchError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn doing(self, what: impl std::fmt::Display) -> Result<T, BenchError> {
        self.map_err(|e| BenchError(format!("{what}: {e}")))
    }
}
