//! Fusebox verification: the deterministic fleet harness over the real `step`
//! ([`fleet`]); proptest suites, the fault-injecting simulator and the exhaustive model
//! build on it.

mod admission;
pub mod explore;
pub mod fleet;
pub mod lease_store;
pub mod properties;
pub mod scale;
pub mod sim;

pub use fleet::{Fleet, FleetError, FleetSpec, FleetStats, Lease, NodeCounters};
