//! Evidence windows (count-based and time-based), the burn-rate series, and the bounded
//! per-node table. All of them are bounded: a count window keeps at most
//! [`MAX_WINDOW_REPORTS`] reports, a time window its configured buckets, a node table its
//! capacity (evicting the least recently seen node).

use std::collections::{BTreeMap, VecDeque};

use super::config::{BurnRate, Ppm, Window as WindowSpec};
use super::domain::OutcomeCounts;
use super::names::NodeId;
use super::units::Millis;

/// The most reports a count window holds, whatever its size in calls.
pub const MAX_WINDOW_REPORTS: usize = 4096;

/// Decisive totals over a window, exact: `u128` sums of at most a few thousand `u64`
/// reports cannot overflow, so eviction subtracts exactly what was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Totals {
    /// Successes, failures and slow calls.
    pub decisive: u128,
    /// Failures.
    pub failed: u128,
    /// Slow successes.
    pub slow: u128,
}

impl Totals {
    fn of(counts: &OutcomeCounts) -> Self {
        let (success, failed, slow) = (u128::from(counts.success), u128::from(counts.failure), u128::from(counts.slow));
        Self { decisive: success + failed + slow, failed, slow }
    }

    fn add(&mut self, other: &Self) {
        self.decisive = self.decisive.saturating_add(other.decisive);
        self.failed = self.failed.saturating_add(other.failed);
        self.slow = self.slow.saturating_add(other.slow);
    }

    fn sub(&mut self, other: &Self) {
        self.decisive -= other.decisive;
        self.failed -= other.failed;
        self.slow -= other.slow;
    }
}

/// Which bad outcome a quorum counts nodes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// Nodes that reported failures.
    Failed,
    /// Nodes that reported slow calls.
    Slow,
}

#[derive(Debug, Clone)]
struct CountEntry {
    node: NodeId,
    totals: Totals,
    /// When its outcomes happened, on the judge's clock (a replayed report's is in the past).
    at: Millis,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    epoch: u64,
    totals: Totals,
    /// Sorted, bounded by the node capacity.
    failed_nodes: Vec<NodeId>,
    slow_nodes: Vec<NodeId>,
}

fn insert_sorted(set: &mut Vec<NodeId>, node: &NodeId, cap: usize) {
    if let Err(i) = set.binary_search(node) {
        if set.len() < cap {
            set.insert(i, node.clone());
        }
    }
}

/// An evidence window.
#[derive(Debug, Clone)]
pub(super) struct EvidenceWindow(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// Last `calls` decisive calls, in whole reports.
    Count {
        calls: u64,
        /// Reports, oldest first.
        entries: VecDeque<CountEntry>,
        /// Sum over `entries`.
        totals: Totals,
    },
    /// Buckets over time.
    Time {
        bucket_ms: u64,
        /// Ring indexed by epoch modulo its length.
        ring: Vec<Bucket>,
        /// Node capacity of a bucket's node sets.
        node_cap: usize,
    },
}

impl EvidenceWindow {
    /// An empty window of `spec`.
    pub(super) fn new(spec: &WindowSpec, node_cap: u32) -> Self {
        Self(match *spec {
            WindowSpec::Count(calls) => Kind::Count { calls, entries: VecDeque::new(), totals: Totals::default() },
            WindowSpec::Time { bucket_ms, buckets } => {
                Kind::Time { bucket_ms, ring: vec![Bucket::default(); buckets as usize], node_cap: node_cap as usize }
            }
        })
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        match &mut self.0 {
            Kind::Count { entries, totals, .. } => {
                entries.clear();
                *totals = Totals::default();
            }
            Kind::Time { ring, .. } => ring.iter_mut().for_each(|b| *b = Bucket::default()),
        }
    }

    /// Adds one report's decisive outcomes, which happened at `at` (earlier than the judge's
    /// now for a replayed report; a time window files them in that bucket, and drops them if
    /// that bucket has already been reused).
    pub(super) fn record(&mut self, at: Millis, node: &NodeId, counts: &OutcomeCounts) {
        if Totals::of(counts).decisive == 0 {
            return;
        }
        match &mut self.0 {
            Kind::Count { calls, entries, totals } => {
                let entry = CountEntry { node: node.clone(), totals: Totals::of(counts), at };
                totals.add(&entry.totals);
                entries.push_back(entry);
                while let Some(front) = entries.front() {
                    let rest = totals.decisive.saturating_sub(front.totals.decisive);
                    if rest < u128::from(*calls) && entries.len() <= MAX_WINDOW_REPORTS {
                        break;
                    }
                    totals.sub(&front.totals);
                    entries.pop_front();
                }
            }
            Kind::Time { bucket_ms, ring, node_cap } => {
                let epoch = at.0 / *bucket_ms;
                let len = ring.len() as u64;
                let bucket = &mut ring[usize::try_from(epoch % len).unwrap_or(0)];
                if bucket.epoch > epoch {
                    // A whole window later than these outcomes: they are out of it already.
                    return;
                }
                if bucket.epoch != epoch {
                    *bucket = Bucket { epoch, ..Bucket::default() };
                }
                bucket.totals.add(&Totals::of(counts));
                if counts.failure > 0 {
                    insert_sorted(&mut bucket.failed_nodes, node, *node_cap);
                }
                if counts.slow > 0 {
                    insert_sorted(&mut bucket.slow_nodes, node, *node_cap);
                }
            }
        }
    }

    /// Forgets count-window reports whose outcomes happened at or before `cutoff` (a time
    /// window's buckets age out by themselves).
    pub(super) fn forget_before(&mut self, cutoff: Millis) {
        if let Kind::Count { entries, totals, .. } = &mut self.0 {
            while let Some(front) = entries.front() {
                if front.at > cutoff {
                    break;
                }
                totals.sub(&front.totals);
                entries.pop_front();
            }
        }
    }

    fn live_buckets(bucket_ms: u64, ring: &[Bucket], now: Millis) -> impl Iterator<Item = &Bucket> {
        let current = now.0 / bucket_ms;
        let len = ring.len() as u64;
        ring.iter().filter(move |b| b.totals.decisive > 0 && b.epoch <= current && current - b.epoch < len)
    }

    /// The totals at `now`.
    pub(super) fn totals(&self, now: Millis) -> Totals {
        match &self.0 {
            Kind::Count { totals, .. } => *totals,
            Kind::Time { bucket_ms, ring, .. } => {
                let mut sum = Totals::default();
                for b in Self::live_buckets(*bucket_ms, ring, now) {
                    sum.add(&b.totals);
                }
                sum
            }
        }
    }

    /// Distinct nodes with `bad` outcomes in the window at `now`.
    pub(super) fn bad_nodes(&self, now: Millis, bad: Bad) -> u32 {
        let mut nodes: Vec<&NodeId> = match &self.0 {
            Kind::Count { entries, .. } => entries
                .iter()
                .filter(|e| match bad {
                    Bad::Failed => e.totals.failed > 0,
                    Bad::Slow => e.totals.slow > 0,
                })
                .map(|e| &e.node)
                .collect(),
            Kind::Time { bucket_ms, ring, .. } => Self::live_buckets(*bucket_ms, ring, now)
                .flat_map(|b| match bad {
                    Bad::Failed => b.failed_nodes.iter(),
                    Bad::Slow => b.slow_nodes.iter(),
                })
                .collect(),
        };
        nodes.sort_unstable();
        nodes.dedup();
        u32::try_from(nodes.len()).unwrap_or(u32::MAX)
    }

    /// How many reports or buckets it holds (for the boundedness checks).
    pub(super) fn len(&self) -> usize {
        match &self.0 {
            Kind::Count { entries, .. } => entries.len(),
            Kind::Time { ring, .. } => ring.len(),
        }
    }
}

/// The burn-rate series: decisive calls and errors in buckets over the long window.
#[derive(Debug, Clone)]
pub(super) struct BurnSeries {
    rule: BurnRate,
    /// `(epoch, decisive, errors)`, indexed by epoch modulo length.
    ring: Vec<(u64, u128, u128)>,
}

impl BurnSeries {
    /// An empty series for `rule`.
    pub(super) fn new(rule: &BurnRate) -> Self {
        Self { rule: rule.clone(), ring: vec![(u64::MAX, 0, 0); usize::try_from(rule.long_buckets).unwrap_or(1)] }
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.ring.iter_mut().for_each(|b| *b = (u64::MAX, 0, 0));
    }

    /// Adds outcomes that happened at `at`; failures are the errors that burn the budget.
    pub(super) fn record(&mut self, at: Millis, counts: &OutcomeCounts) {
        if Totals::of(counts).decisive == 0 {
            return;
        }
        let epoch = at.0 / self.rule.bucket_ms;
        let len = self.ring.len() as u64;
        let slot = &mut self.ring[usize::try_from(epoch % len).unwrap_or(0)];
        if slot.0 != u64::MAX && slot.0 > epoch {
            // The slot holds a later epoch: these outcomes are out of the long window.
            return;
        }
        if slot.0 != epoch {
            *slot = (epoch, 0, 0);
        }
        let wide = Totals::of(counts);
        slot.1 = slot.1.saturating_add(wide.decisive);
        slot.2 = slot.2.saturating_add(wide.failed);
    }

    fn sum(&self, now: Millis, buckets: u64) -> (u128, u128) {
        let current = now.0 / self.rule.bucket_ms;
        self.ring
            .iter()
            .filter(|(epoch, _, _)| *epoch <= current && current - *epoch < buckets)
            .fold((0, 0), |(d, e), (_, bd, be)| (d.saturating_add(*bd), e.saturating_add(*be)))
    }

    /// Whether both windows burn at least the threshold, with at least `minimum` decisive
    /// calls in the long window. Returns the long window's `(decisive, errors)` when firing.
    pub(super) fn firing(&self, now: Millis, minimum: u64) -> Option<(u128, u128)> {
        let (long_d, long_e) = self.sum(now, self.rule.long_buckets);
        let (short_d, short_e) = self.sum(now, self.rule.short_buckets);
        let threshold: Ppm = self.rule.threshold;
        (long_d >= u128::from(minimum.max(1))
            && threshold.reached(long_e, long_d)
            && threshold.reached(short_e, short_d))
        .then_some((long_d, long_e))
    }
}

/// A map from node to value holding at most `cap` nodes; inserting past the cap evicts
/// the least recently touched node (ties broken by node id, so it stays deterministic).
#[derive(Debug, Clone)]
pub(super) struct NodeTable<V> {
    cap: usize,
    map: BTreeMap<NodeId, (V, Millis)>,
    evictions: u64,
}

impl<V> NodeTable<V> {
    /// An empty table of at most `cap` nodes (at least 1).
    pub(super) fn new(cap: u32) -> Self {
        Self { cap: (cap as usize).max(1), map: BTreeMap::new(), evictions: 0 }
    }

    /// The value of `node`.
    pub(super) fn get(&self, node: &NodeId) -> Option<&V> {
        self.map.get(node).map(|(v, _)| v)
    }

    /// The value of `node`, created by `init` if absent; marks the node as seen at `now`.
    pub(super) fn entry(&mut self, now: Millis, node: &NodeId, init: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(node) && self.map.len() >= self.cap {
            let oldest = self.map.iter().min_by(|a, b| (a.1.1, a.0).cmp(&(b.1.1, b.0))).map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
                self.evictions += 1;
            }
        }
        let slot = self.map.entry(node.clone()).or_insert_with(|| (init(), now));
        slot.1 = slot.1.max(now);
        &mut slot.0
    }

    /// Every node and value, sorted by node.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.map.iter().map(|(n, (v, _))| (n, v))
    }

    /// Forgets every node.
    pub(super) fn clear(&mut self) {
        self.map.clear();
    }

    /// Nodes evicted so far.
    pub(super) fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn n(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn c(success: u64, failure: u64) -> OutcomeCounts {
        OutcomeCounts { success, failure, ..OutcomeCounts::default() }
    }

    #[test]
    fn count_window_keeps_whole_reports_covering_n_calls() {
        let mut w = EvidenceWindow::new(&WindowSpec::Count(10), 8);
        w.record(Millis(0), &n("a"), &c(6, 0));
        w.record(Millis(0), &n("b"), &c(0, 6));
        assert_eq!(
            w.totals(Millis(0)),
            Totals { decisive: 12, failed: 6, slow: 0 },
            "dropping a's 6 would leave 6 < 10"
        );
        w.record(Millis(0), &n("c"), &c(4, 0));
        assert_eq!(w.totals(Millis(0)).decisive, 10, "a's report dropped: b and c still hold 10");
        assert_eq!(w.bad_nodes(Millis(0), Bad::Failed), 1);
        w.record(Millis(0), &n("a"), &c(0, 0));
        assert_eq!(w.len(), 2, "empty reports are not entries");
    }

    #[test]
    fn time_window_expires_buckets_and_counts_distinct_nodes() {
        let mut w = EvidenceWindow::new(&WindowSpec::Time { bucket_ms: 100, buckets: 10 }, 8);
        w.record(Millis(50), &n("a"), &c(1, 1));
        w.record(Millis(950), &n("b"), &c(0, 2));
        w.record(Millis(960), &n("a"), &c(0, 1));
        assert_eq!(w.totals(Millis(999)), Totals { decisive: 5, failed: 4, slow: 0 });
        assert_eq!(w.bad_nodes(Millis(999), Bad::Failed), 2);
        assert_eq!(w.totals(Millis(1000)).decisive, 3, "bucket 0 expired at 1000 ms");
        assert_eq!(w.totals(Millis(2000)).decisive, 0);
    }

    #[test]
    fn outcomes_from_the_past_land_where_they_happened() {
        let mut w = EvidenceWindow::new(&WindowSpec::Time { bucket_ms: 100, buckets: 10 }, 8);
        w.record(Millis(5_000), &n("a"), &c(1, 0));
        w.record(Millis(4_950), &n("b"), &c(0, 2));
        w.record(Millis(3_000), &n("b"), &c(0, 9));
        assert_eq!(w.totals(Millis(5_000)), Totals { decisive: 3, failed: 2, slow: 0 }, "3 s back is out");
        assert_eq!(w.totals(Millis(5_960)).decisive, 1, "the bucket of 4.95 s expired first");
        let mut counted = EvidenceWindow::new(&WindowSpec::Count(100), 8);
        counted.record(Millis(1_000), &n("a"), &c(0, 5));
        counted.record(Millis(2_000), &n("b"), &c(3, 0));
        counted.forget_before(Millis(1_000));
        assert_eq!(counted.totals(Millis(2_000)), Totals { decisive: 3, failed: 0, slow: 0 });
    }

    #[test]
    fn burn_series_needs_both_windows() {
        let rule = BurnRate { threshold: Ppm(100_000), bucket_ms: 10, long_buckets: 40, short_buckets: 4 };
        let mut s = BurnSeries::new(&rule);
        s.record(Millis(0), &c(80, 20));
        assert_eq!(s.firing(Millis(5), 10), Some((100, 20)));
        assert_eq!(s.firing(Millis(100), 10), None, "short window has moved past the errors");
        s.record(Millis(100), &c(10, 0));
        assert_eq!(s.firing(Millis(100), 10), None);
    }

    #[test]
    fn node_table_evicts_least_recent() {
        let mut t = NodeTable::new(2);
        *t.entry(Millis(1), &n("a"), || 0) += 1;
        *t.entry(Millis(2), &n("b"), || 0) += 1;
        *t.entry(Millis(3), &n("a"), || 0) += 1;
        *t.entry(Millis(4), &n("c"), || 0) += 1;
        assert_eq!(t.get(&n("b")), None);
        assert_eq!(t.get(&n("a")), Some(&2));
        assert_eq!((t.iter().count(), t.evictions()), (2, 1));
    }
}
