//! The local cluster demo (`make demo`): [`orchestrator`] starts a 3-node nats-server cluster,
//! a scripted dependency ([`dependency`]), service-instance processes ([`instance`]) and an
//! optional Python instance, shows the fleet live and ends with measured figures. This module
//! owns what the processes say to each other: one JSON line per [`InstanceLine`] on each
//! instance's stdout.

pub mod dependency;
pub mod instance;
pub mod orchestrator;
pub mod view;

use serde::{Deserialize, Serialize};

/// The breaker every demo instance holds.
pub const BREAKER: &str = "inventory";

/// What an instance reports to the orchestrator, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InstanceLine {
    /// Cumulative counters and the instance's view, a few times a second.
    Status {
        /// The node id.
        node: String,
        /// Effective state of the breaker on this node.
        state: String,
        /// Calls that succeeded.
        ok: u64,
        /// Calls that failed.
        failed: u64,
        /// Calls the breaker rejected.
        rejected: u64,
        /// Calls admitted as half-open probes.
        probes: u64,
        /// Whether this node decides the breaker.
        deciding: bool,
        /// The term of the decision it applied.
        term: u64,
    },
    /// The node applied a decision, at this wall-clock time (ms since the Unix epoch; all
    /// demo processes share one machine's clock).
    Applied {
        /// The node id.
        node: String,
        /// The decision's term.
        term: u64,
        /// The decision's sequence in its term.
        seq: u64,
        /// The state it moved to.
        to: String,
        /// When.
        at_ms: u64,
    },
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
