//! The outcome counters: per-shard cells tagged by generation, recorded into with one CAS
//! and drained by the breaker actor, so that every outcome is drained exactly once under
//! its own generation or counted stale.
//!
//! Layout: [`SHARDS`] shards, each on cache lines of its own; a thread records into the
//! shard it was given on first use (round robin over a process-wide counter), so two threads
//! never write the same line while there are no more threads than shards. A shard holds
//! [`SLOTS`] generation slots of one cell per outcome class; generation `g` counts in slot
//! `g mod SLOTS`, so the calls of the last `SLOTS` generations count side by side while the
//! outcomes of an older generation finish.
//!
//! A cell packs a 24-bit generation tag (bits 40-63) and a 40-bit count. Recording with
//! tag `t` is one CAS on the cell of slot `t mod SLOTS`:
//! - the cell's tag is `t`: count one more (a full cell, 2^40 - 1 calls of one class since
//!   the last drain in one shard, counts the call stale: never wraps);
//! - the cell's tag is older: that generation is at least `SLOTS` behind; the CAS takes
//!   the cell over as `(t, 1)` and moves what it held, undrained, to the shard's stale
//!   count;
//! - the cell is empty (drained, or never used): take it over whatever its tag, so a tag
//!   left alone for half the tag space never blocks its slot, and a late call still counts
//!   under its own generation if the slot's newer generation has nothing undrained;
//! - the cell's tag is newer and it holds counts: the call finished after its slot moved
//!   on; it is stale.
//!
//! The drainer takes each cell's count with one `fetch_and` that keeps the tag (so a late
//! outcome of a drained generation still counts in it, at the next drain) and maps the tag
//! back to the newest installed generation with those bits. Each count moves from a cell
//! in exactly one read-modify-write: taken by the drainer, or evicted into the stale count
//! (which the drainer also takes), never both. An eviction's move lands in the stale count
//! just after its CAS, so a drain between the two reports it at the next drain instead.
//!
//! Fraction admission counts in the shard too (see [`Counters::admit_fraction`]).

use std::collections::BTreeMap;

use crate::machine::{BreakerName, OutcomeCounts};
use crate::sync::{AtomicU64, Ordering};

use super::word::GEN_TAG_BITS;

/// Shards per breaker. Loom models use two, to keep the interleavings few.
#[cfg(not(loom))]
pub(super) const SHARDS: usize = 16;
#[cfg(loom)]
pub(super) const SHARDS: usize = 2;

/// Generation slots per shard: the calls of this many generations count side by side. As
/// many as the machine keeps generations for (`TRACKED_GENERATIONS`): an outcome evicted
/// to stale is one of a generation the machine no longer takes outcomes for.
#[cfg(not(loom))]
pub(super) const SLOTS: usize = crate::machine::TRACKED_GENERATIONS;
#[cfg(loom)]
pub(super) const SLOTS: usize = 2;

const CLASSES: usize = 5;
const TAG_SHIFT: u32 = 64 - GEN_TAG_BITS;
const COUNT_MASK: u64 = (1 << TAG_SHIFT) - 1;

/// The most a cell counts before further calls count stale. Loom models cap it at 2, so
/// the saturation path is modelled too.
#[cfg(not(loom))]
const COUNT_MAX: u64 = COUNT_MASK;
#[cfg(loom)]
const COUNT_MAX: u64 = 2;

/// An outcome class, as a cell index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Success = 0,
    Failure = 1,
    Slow = 2,
    Ignored = 3,
    Rejected = 4,
}

/// One thread's (or a few threads') counters.
#[repr(align(128))]
struct Shard {
    cells: [[AtomicU64; CLASSES]; SLOTS],
    stale: AtomicU64,
    fraction: AtomicU64,
    /// The breaker's name for this shard's rejections: its own allocation, so cloning it
    /// into a `Rejected` does not bounce one shared reference count between cores.
    name: BreakerName,
}

impl Shard {
    fn new(name: BreakerName) -> Self {
        Self {
            cells: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            stale: AtomicU64::new(0),
            fraction: AtomicU64::new(0),
            name,
        }
    }
}

/// All shards of one breaker.
pub(super) struct Counters {
    shards: [Shard; SHARDS],
}

impl Counters {
    pub(super) fn new(name: &BreakerName) -> Self {
        // A validated name always validates again; the fallback shares the original.
        let fresh = || BreakerName::new(name.as_str()).unwrap_or_else(|_| name.clone());
        Self { shards: std::array::from_fn(|_| Shard::new(fresh())) }
    }

    #[inline]
    fn shard(&self, shard: usize) -> &Shard {
        &self.shards[shard % SHARDS]
    }

    /// The name to hand out in a rejection on `shard`.
    pub(super) fn name(&self, shard: usize) -> &BreakerName {
        &self.shard(shard).name
    }

    /// Counts one call of `class` under generation tag `tag` in `shard`.
    #[inline]
    pub(super) fn count(&self, shard: usize, tag: u64, class: Class) {
        let shard = self.shard(shard);
        #[expect(clippy::cast_possible_truncation, reason = "only the low bits pick the slot")]
        let slot = tag as usize % SLOTS;
        let cell = &shard.cells[slot][class as usize];
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let held = current >> TAG_SHIFT;
            let (next, evicted) = if held == tag {
                if current & COUNT_MASK >= COUNT_MAX {
                    shard.stale.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                (current + 1, 0)
            } else if current & COUNT_MASK == 0 || is_newer(tag, held) {
                ((tag << TAG_SHIFT) | 1, current & COUNT_MASK)
            } else {
                shard.stale.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // Release: the drainer that takes this count also sees the install that
            // published `tag` (it maps tags through the newest generation it sees).
            match cell.compare_exchange_weak(current, next, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if evicted > 0 {
                        shard.stale.fetch_add(evicted, Ordering::Relaxed);
                    }
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Whether the next call on `shard` falls in the admitted `per_mille`: of every thousand
    /// calls on a shard exactly `per_mille` are admitted, spread evenly. Per breaker and per
    /// shard, not per thread across breakers, so one breaker's calls never take another's
    /// admissions; the write lands on the shard's own line, which recording dirties anyway.
    pub(super) fn admit_fraction(&self, shard: usize, per_mille: u16) -> bool {
        let n = self.shard(shard).fraction.fetch_add(1, Ordering::Relaxed) % 1000;
        let p = u64::from(per_mille.min(1000));
        (n + 1) * p / 1000 > n * p / 1000
    }

    /// Takes every count: per generation tag, and the stale calls.
    pub(super) fn take(&self) -> (BTreeMap<u64, OutcomeCounts>, u64) {
        let mut by_tag: BTreeMap<u64, OutcomeCounts> = BTreeMap::new();
        let mut stale = 0u64;
        for shard in &self.shards {
            for slot in &shard.cells {
                for (class, cell) in slot.iter().enumerate() {
                    // Look before taking: an idle cell's line stays shared with its
                    // recording thread instead of being pulled over on every drain.
                    if cell.load(Ordering::Relaxed) & COUNT_MASK == 0 {
                        continue;
                    }
                    let taken = cell.fetch_and(!COUNT_MASK, Ordering::Acquire);
                    let count = taken & COUNT_MASK;
                    if count > 0 {
                        let counts = by_tag.entry(taken >> TAG_SHIFT).or_default();
                        let field = match class {
                            0 => &mut counts.success,
                            1 => &mut counts.failure,
                            2 => &mut counts.slow,
                            3 => &mut counts.ignored,
                            _ => &mut counts.rejected,
                        };
                        *field = field.saturating_add(count);
                    }
                }
            }
            if shard.stale.load(Ordering::Relaxed) > 0 {
                stale = stale.saturating_add(shard.stale.swap(0, Ordering::Relaxed));
            }
        }
        (by_tag, stale)
    }
}

/// Whether generation tag `a` is after `b` (tags wrap; they are compared within half the
/// tag space).
fn is_newer(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b) & ((1 << GEN_TAG_BITS) - 1);
    ahead != 0 && ahead < 1 << (GEN_TAG_BITS - 1)
}

/// This thread's shard: given round robin on first use, so up to [`SHARDS`] threads each
/// have their own. A thread being torn down (its thread-locals gone) shares shard 0.
#[cfg(not(loom))]
#[inline]
pub(super) fn shard_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|shard| {
            let index = shard.get();
            if index != usize::MAX {
                return index;
            }
            let index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(index);
            index
        })
        .unwrap_or(0)
}

/// Under loom every call without an explicit shard uses shard 0: a process-wide counter
/// would make one model's executions differ; models pick shards with `try_acquire_on`.
#[cfg(loom)]
pub(super) fn shard_index() -> usize {
    0
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counters() -> Counters {
        Counters::new(&BreakerName::new("c").unwrap())
    }

    #[test]
    fn counts_land_under_their_tag_and_late_ones_go_stale() {
        let c = counters();
        c.count(0, 7, Class::Success);
        c.count(1, 7, Class::Failure);
        c.count(1, 8, Class::Rejected);
        let (by_tag, stale) = c.take();
        assert_eq!(by_tag[&7], OutcomeCounts { success: 1, failure: 1, ..OutcomeCounts::default() });
        assert_eq!(by_tag[&8].rejected, 1);
        assert_eq!(stale, 0);
        // Drained cells keep their tag: a late outcome of 7 still counts as 7.
        c.count(0, 7, Class::Success);
        // Generation 7 + SLOTS takes 7's slot over; 7's next late outcome is stale.
        let next = 7 + SLOTS as u64;
        c.count(0, next, Class::Success);
        c.count(0, 7, Class::Success);
        let (by_tag, stale) = c.take();
        assert_eq!(by_tag.get(&7), None, "the undrained 7 was evicted to stale");
        assert_eq!(by_tag[&next].success, 1);
        assert_eq!(stale, 2);
    }

    #[test]
    fn tags_compare_across_the_wrap() {
        let top = (1 << GEN_TAG_BITS) - 1;
        assert!(is_newer(0, top));
        assert!(!is_newer(top, 0));
        assert!(!is_newer(5, 5));
    }

    #[test]
    fn fractions_are_exact_per_thousand() {
        let c = counters();
        for per_mille in [0u16, 1, 250, 999, 1000, 5000] {
            let admitted = (0..1000).filter(|_| c.admit_fraction(3, per_mille)).count();
            assert_eq!(admitted, usize::from(per_mille.min(1000)));
        }
    }
}
