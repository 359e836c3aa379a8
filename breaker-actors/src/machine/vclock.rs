//! Term-scoped vector clocks with a hard cap on entries.
//!
//! A clock belongs to one lease term: clocks of different terms are ordered by term alone
//! (the newer term's clock replaces the older), so a clock never accumulates nodes from
//! terms gone by. Within a term, merge is the pointwise maximum. When a clock would hold
//! more than [`CLOCK_CAP`] entries it keeps the entries of the smallest node ids; that rule
//! is what keeps merge a semilattice join (commutative, associative, idempotent) with the
//! cap in place. Losing an entry only ever makes a clock look *less* advanced, so every
//! decision taken on clock comparisons errs towards the safe side (see `machine`).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::names::NodeId;
use super::units::Term;

/// The most entries a clock holds.
pub const CLOCK_CAP: usize = 128;

/// A vector clock scoped to one lease term.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VectorClock {
    term: Term,
    /// Sorted by node id, no duplicates, no zero counters, at most [`CLOCK_CAP`] long.
    entries: Vec<(NodeId, u64)>,
}

/// How two clocks relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Both clocks are the same.
    Equal,
    /// The left clock happened before the right one.
    Before,
    /// The left clock happened after the right one.
    After,
    /// Neither happened before the other.
    Concurrent,
}

impl VectorClock {
    /// An empty clock of `term`.
    pub fn new(term: Term) -> Self {
        Self { term, entries: Vec::new() }
    }

    /// The term this clock belongs to.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The counter of `node` (0 when absent).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.entries.binary_search_by(|(n, _)| n.cmp(node)).map_or(0, |i| self.entries[i].1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no node has ticked in this term.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, sorted by node id.
    pub fn entries(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.entries.iter().map(|(n, c)| (n, *c))
    }

    /// Records one event of `node`. Returns the node's new counter, or `None` when the cap
    /// left no room for this node (its events then go untracked in this term).
    pub fn tick(&mut self, node: &NodeId) -> Option<u64> {
        match self.entries.binary_search_by(|(n, _)| n.cmp(node)) {
            Ok(i) => {
                let counter = &mut self.entries[i].1;
                *counter = counter.saturating_add(1);
                Some(*counter)
            }
            Err(i) => {
                self.entries.insert(i, (node.clone(), 1));
                self.entries.truncate(CLOCK_CAP);
                (i < CLOCK_CAP).then_some(1)
            }
        }
    }

    /// Joins `other` into `self`: the newer term wins outright; the same term takes the
    /// pointwise maximum, then the cap.
    pub fn merge(&mut self, other: &Self) {
        match self.term.cmp(&other.term) {
            Ordering::Greater => {}
            Ordering::Less => self.clone_from(other),
            Ordering::Equal => {
                let mut merged = Vec::with_capacity(self.entries.len().max(other.entries.len()));
                let (mut a, mut b) = (self.entries.iter().peekable(), other.entries.iter().peekable());
                while merged.len() < CLOCK_CAP {
                    let next = match (a.peek(), b.peek()) {
                        (None, None) => break,
                        (Some(_), None) => a.next().cloned(),
                        (None, Some(_)) => b.next().cloned(),
                        (Some((na, ca)), Some((nb, cb))) => match na.cmp(nb) {
                            Ordering::Less => a.next().cloned(),
                            Ordering::Greater => b.next().cloned(),
                            Ordering::Equal => {
                                let entry = (na.clone(), (*ca).max(*cb));
                                a.next();
                                b.next();
                                Some(entry)
                            }
                        },
                    };
                    merged.extend(next);
                }
                self.entries = merged;
            }
        }
    }

    /// The join of two clocks, leaving both untouched.
    #[must_use]
    pub fn joined(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// Whether every event `other` has seen, `self` has seen too (a newer term dominates an
    /// older one).
    pub fn dominates(&self, other: &Self) -> bool {
        matches!(self.compare(other), Causality::Equal | Causality::After)
    }

    /// The causal relation of `self` to `other`.
    pub fn compare(&self, other: &Self) -> Causality {
        match self.term.cmp(&other.term) {
            Ordering::Less => return Causality::Before,
            Ordering::Greater => return Causality::After,
            Ordering::Equal => {}
        }
        let (mut some_less, mut some_greater) = (false, false);
        let nodes = self.entries.iter().chain(other.entries.iter()).map(|(n, _)| n);
        for node in nodes {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Less => some_less = true,
                Ordering::Greater => some_greater = true,
                Ordering::Equal => {}
            }
        }
        match (some_less, some_greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// The clock of `term` with `entries` (as [`entries`](Self::entries) lists them), if they
    /// keep the invariants: sorted by node id, no duplicates, no zero counters, at most
    /// [`CLOCK_CAP`] of them. For decoders that read a clock in a shape of their own.
    pub fn from_entries(term: Term, entries: Vec<(NodeId, u64)>) -> Option<Self> {
        let clock = Self { term, entries };
        clock.is_well_formed().then_some(clock)
    }

    /// Whether the invariants of the representation hold (sorted, unique, non-zero,
    /// capped). Decoders call this on clocks from the wire.
    pub fn is_well_formed(&self) -> bool {
        self.entries.len() <= CLOCK_CAP
            && self.entries.windows(2).all(|w| w[0].0 < w[1].0)
            && self.entries.iter().all(|(_, c)| *c > 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(i: usize) -> NodeId {
        NodeId::new(&format!("n{i:04}")).unwrap()
    }

    #[test]
    fn tick_counts_per_node_and_merge_takes_maximum() {
        let mut a = VectorClock::new(Term(3));
        let mut b = VectorClock::new(Term(3));
        a.tick(&node(1));
        a.tick(&node(1));
        b.tick(&node(2));
        assert_eq!(a.compare(&b), Causality::Concurrent);
        let j = a.joined(&b);
        assert_eq!((j.get(&node(1)), j.get(&node(2))), (2, 1));
        assert!(j.dominates(&a) && j.dominates(&b));
        assert_eq!(a.compare(&j), Causality::Before);
    }

    #[test]
    fn newer_term_replaces_older() {
        let mut old = VectorClock::new(Term(1));
        old.tick(&node(1));
        let new = VectorClock::new(Term(2));
        assert_eq!(old.joined(&new), new);
        assert_eq!(new.joined(&old), new);
        assert_eq!(old.compare(&new), Causality::Before);
    }

    #[test]
    fn cap_keeps_smallest_ids_and_reports_untracked_ticks() {
        let mut c = VectorClock::new(Term(1));
        for i in 0..CLOCK_CAP {
            assert_eq!(c.tick(&node(i + 1)), Some(1));
        }
        assert_eq!(c.tick(&node(CLOCK_CAP + 5)), None);
        assert_eq!(c.len(), CLOCK_CAP);
        assert_eq!(c.tick(&node(0)), Some(1));
        assert_eq!(c.len(), CLOCK_CAP);
        assert_eq!(c.get(&node(CLOCK_CAP)), 0, "largest id was evicted");
        assert!(c.is_well_formed());
    }
}
