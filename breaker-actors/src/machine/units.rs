//! Scalar units the machine speaks in: monotonic milliseconds, lease terms, decision ids.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A reading of one node's monotonic clock, in milliseconds since an arbitrary origin.
///
/// Readings from different nodes are never compared: every deadline a node computes is on
/// its own clock, and nothing that crosses the network carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    /// This reading plus `ms`, saturating at the end of time.
    #[must_use]
    pub fn plus(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A lease term: the KV revision at which a decider acquired its lease. Fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Term(pub u64);

/// The identity and order of a decision: `(term, seq)`, compared lexicographically.
///
/// `seq` counts the decisions of one term from 1; [`DecisionId::NONE`] (0, 0) stands
/// before every real decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct DecisionId {
    /// The lease term of the decider that made it.
    pub term: Term,
    /// Its position among that term's decisions, from 1.
    pub seq: u64,
}

impl DecisionId {
    /// Before every decision: what a node has applied before it has applied anything.
    pub const NONE: Self = Self { term: Term(0), seq: 0 };

    /// The id `(term, seq)`.
    pub fn new(term: u64, seq: u64) -> Self {
        Self { term: Term(term), seq }
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.term.0, self.seq)
    }
}
