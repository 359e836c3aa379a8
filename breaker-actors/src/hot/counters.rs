//! The outcome counters: per-writer shards of cumulative cells tagged by generation, written
//! by one thread at a time with a plain load and store (no locked instruction), and read by
//! the breaker actor, which never writes them: it remembers what it took and drains the
//! difference, so that every outcome is drained exactly once under its own generation or
//! counted stale.
//!
//! # Writers
//!
//! A thread claims a process-wide writer index on its first call of any breaker and gives
//! it back when it exits ([`writer`]); while it holds index `i`, it is the only thread that
//! writes shard `i` of any breaker, so a record is a load and a store on lines no other
//! thread writes. Up to [`OWNED`] threads hold an index at once. Threads beyond that (and a
//! thread whose thread-locals are being torn down) write one of [`SHARED`] shared shards,
//! each behind a spin lock that only writers take: the same single-writer steps, one writer
//! at a time. A permit records on the shard of the thread that records it, not the one that
//! acquired it (an async call may finish on another worker thread). Shards are allocated
//! when their index first writes to the breaker, so a breaker costs memory in proportion to
//! the threads that call it.
//!
//! # Cells
//!
//! A shard holds [`SLOTS`] generation slots of one cell per outcome class; generation `g`
//! counts in slot `g mod SLOTS`, so the calls of the last `SLOTS` generations count side by
//! side while the outcomes of an older generation finish. A cell packs a 24-bit generation
//! tag (bits 40-63) and a 40-bit running total of every call the cell has counted, under
//! any tag (wrapping: the drainer takes differences modulo 2^40). Beside it, `began` holds
//! the tag and the total at which that tag took the cell over. Recording under tag `t`:
//! - the cell's tag is `t`: total plus one;
//! - the cell's tag is newer than `t` (between `t` and the generation in force): the call
//!   finished after its slot moved on; it counts in the shard's running stale total;
//! - otherwise (older, or so old that it wrapped): take the cell over: `began := (t, total)`
//!   first, then the cell `:= (t, total + 1)` with Release.
//!
//! # Draining
//!
//! The drainer keeps, per cell, the last cell word it accounted for. A cell whose tag is
//! unchanged yields `total - seen` to that tag. A cell whose tag changed was taken over: it
//! reads `began` after the cell (Acquire on the cell, so `began` is at least the takeover
//! that wrote the tag it saw); if `began` carries that tag, the calls up to the takeover
//! were undrained calls of older generations (stale) and the rest belong to the new tag; if
//! `began` carries another tag, a later takeover is under way, and the cell waits for the
//! next drain (nothing is lost: totals only grow). Each call is in exactly one cell's total
//! or the stale total, and each difference is taken once: exactly once, never doubled.
//!
//! Limits: a shard counts fewer than 2^40 calls of one class and slot between two drains
//! (about 10^12: an hour and more of one thread calling flat out, against a drain every
//! flush tick); a cell not written for 2^21 takeovers
//! of its slot is fine, one taken over by the same tag 2^21 takeovers apart between two
//! drains is not. Fraction admission counts in the shard too (see
//! [`Counters::admit_fraction`]).

use std::collections::BTreeMap;

use crate::machine::OutcomeCounts;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, spin_loop};

use super::word::GEN_TAG_BITS;

/// Writer indices that own a shard. Loom models use two.
#[cfg(not(loom))]
pub(super) const OWNED: usize = 128;
#[cfg(loom)]
pub(super) const OWNED: usize = 2;

/// Shared, locked shards for writers without an index of their own.
#[cfg(not(loom))]
pub(super) const SHARED: usize = 4;
#[cfg(loom)]
pub(super) const SHARED: usize = 2;

/// Generation slots per shard: the calls of this many generations count side by side. As
/// many as the machine keeps generations for (`TRACKED_GENERATIONS`): an outcome counted
/// stale is one of a generation the machine no longer takes outcomes for.
#[cfg(not(loom))]
pub(super) const SLOTS: usize = crate::machine::TRACKED_GENERATIONS;
#[cfg(loom)]
pub(super) const SLOTS: usize = 2;

/// Outcome classes: four of admitted calls, then one per reason a call is rejected for
/// (every reason but shut down, which is not demand and not drained).
const CLASSES: usize = 8;
/// The first rejection class.
const FIRST_REJECTED: usize = Class::RejectedOpen as usize;
/// Rejection reasons counted in the cells.
pub(super) const REJECTED_CLASSES: usize = CLASSES - FIRST_REJECTED;
const TAG_SHIFT: u32 = 64 - GEN_TAG_BITS;
const TOTAL_MASK: u64 = (1 << TAG_SHIFT) - 1;
const TAG_MASK: u64 = (1 << GEN_TAG_BITS) - 1;

/// An outcome class, as a cell index. A rejection counts in the class of its reason: the
/// same one load and one store as a single rejected class, and the drain adds them up for
/// the machine (rejections are demand, whatever the reason) and keeps them apart for the
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Success = 0,
    Failure = 1,
    Slow = 2,
    Ignored = 3,
    RejectedOpen = 4,
    RejectedNoProbeLeft = 5,
    RejectedNoProbeGranted = 6,
    RejectedNotAdmitted = 7,
}

impl Class {
    /// The class of a rejection for `reason` (a shut-down breaker counts nothing here). A
    /// table lookup, no branch: the open state's rejection is the hot path.
    #[inline(always)]
    pub(super) fn rejected(reason: super::RejectReason) -> Self {
        const BY_REASON: [Class; 5] = [
            Class::RejectedOpen,
            Class::RejectedNoProbeLeft,
            Class::RejectedNoProbeGranted,
            Class::RejectedNotAdmitted,
            Class::RejectedOpen,
        ];
        BY_REASON[reason as usize]
    }
}

/// Which shard a thread writes: its index in the breaker's shard table. Below [`OWNED`], a
/// shard of its own; from there on, a shared one written under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Writer(u32);

impl Writer {
    /// The only writer of owned shard `index` (taken modulo [`OWNED`]).
    pub(super) fn owned(index: usize) -> Self {
        Self::at(index % OWNED)
    }

    /// One of the writers of shared shard `index` (taken modulo [`SHARED`]).
    pub(super) fn shared(index: usize) -> Self {
        Self::at(OWNED + index % SHARED)
    }

    fn at(index: usize) -> Self {
        #[expect(clippy::cast_possible_truncation, reason = "below OWNED + SHARED")]
        Self(index as u32)
    }

    #[inline]
    fn index(self) -> usize {
        self.0 as usize
    }

    #[inline]
    fn owns(self) -> bool {
        self.index() < OWNED
    }
}

/// One writer's counters; every field is written by that writer only.
#[repr(align(128))]
struct Shard {
    /// `(tag, running total)` per slot and class.
    cells: [[AtomicU64; CLASSES]; SLOTS],
    /// Running total of calls that came too late for their slot.
    stale: AtomicU64,
    /// Calls seen by fraction admission.
    fraction: AtomicU64,
    /// `(tag, total when the tag took the cell over)`; written only on takeovers.
    began: [[AtomicU64; CLASSES]; SLOTS],
    /// Held by the writer of a shared shard (never by the drainer).
    lock: AtomicBool,
    /// Set by the writer after every count, cleared by the drainer before it takes the
    /// cells: a count a drain did not take leaves it set (see [`Counters::has_undrained`]).
    undrained: AtomicBool,
    /// The same for counts of anything but a success, set after `undrained`: a failure, slow
    /// call, ignored call or rejection a drain did not take leaves it set (see
    /// [`Counters::undrained`]).
    urgent: AtomicBool,
}

impl Shard {
    fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            stale: AtomicU64::new(0),
            fraction: AtomicU64::new(0),
            began: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            lock: AtomicBool::new(false),
            undrained: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
        }
    }

    /// Adds one to a running total that only this shard's writer writes.
    #[inline]
    fn bump(total: &AtomicU64) -> u64 {
        let next = total.load(Ordering::Relaxed).wrapping_add(1);
        total.store(next, Ordering::Relaxed);
        next
    }

    /// Counts one call of `class` under `tag`; `current` is the generation tag in force.
    #[inline]
    fn count(&self, tag: u64, class: Class, current: impl FnOnce() -> u64) {
        #[expect(clippy::cast_possible_truncation, reason = "only the low bits pick the slot")]
        let slot = tag as usize % SLOTS;
        let cell = &self.cells[slot][class as usize];
        let word = cell.load(Ordering::Relaxed);
        let total = word & TOTAL_MASK;
        let next = (tag << TAG_SHIFT) | (total.wrapping_add(1) & TOTAL_MASK);
        let held = word >> TAG_SHIFT;
        if held != tag {
            if held_is_newer(held, tag, current()) {
                Self::bump(&self.stale);
                return;
            }
            // Before the cell, so a drainer that sees the new tag finds where it began (one
            // that finds another tag's `began` leaves the cell to its next drain: safe in
            // either order, timely in this one).
            self.began[slot][class as usize].store((tag << TAG_SHIFT) | total, Ordering::Relaxed);
        }
        // Release: the drainer that takes this count also sees the install that published
        // `tag` (it maps tags through the newest generation it sees) and the `began` above.
        cell.store(next, Ordering::Release);
    }

    /// Runs `write` as this shard's only writer: at once for an owned shard, under the
    /// lock for a shared one.
    #[inline]
    fn write<R>(&self, writer: Writer, write: impl FnOnce(&Self) -> R) -> R {
        if writer.owns() {
            return write(self);
        }
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spin_loop();
        }
        let result = write(self);
        self.lock.store(false, Ordering::Release);
        result
    }
}

/// Whether a cell holding tag `held` has moved on past `tag`: `held` lies after `tag` and
/// not after `current`, the generation in force (tags wrap; a cell's tag is never after
/// the generation in force, so one that seems to be is an old tag that wrapped).
fn held_is_newer(held: u64, tag: u64, current: u64) -> bool {
    let ahead = |to: u64| to.wrapping_sub(tag) & TAG_MASK;
    held != tag && ahead(held) <= ahead(current)
}

/// What the drainer has accounted for, per shard.
#[derive(Clone, Default)]
struct Seen {
    cells: [[u64; CLASSES]; SLOTS],
    stale: u64,
}

/// All shards of one breaker.
pub(super) struct Counters {
    shards: Shards,
    seen: Mutex<Vec<Seen>>,
}

impl Counters {
    pub(super) fn new() -> Self {
        Self { shards: Shards::new(), seen: Mutex::new(Vec::new()) }
    }

    #[inline]
    fn shard(&self, writer: Writer) -> &Shard {
        self.shards.get_or_create(writer.index())
    }

    /// Counts one call of `class` under generation tag `tag` in `writer`'s shard;
    /// `current` gives the generation tag in force (read only if the slot moved).
    #[inline]
    pub(super) fn count(&self, writer: Writer, tag: u64, class: Class, current: impl FnOnce() -> u64) {
        self.shard(writer).write(writer, |shard| {
            shard.count(tag, class, current);
            // After the count, Release: a drain whose clearing swap reads this store takes
            // the count; one whose swap comes first leaves the flag set for the next. A
            // plain store to the writer's own line: no locked instruction.
            shard.undrained.store(true, Ordering::Release);
            // Anything but a success could matter to a decision: one more plain store, after
            // the count for the same reason, so the flusher drains it at the next flush.
            if class != Class::Success {
                shard.urgent.store(true, Ordering::Release);
            }
        });
    }

    /// Whether some shard holds counts no drain has taken (or taken by a drain racing the
    /// count: then the next drain finds nothing, which is harmless). Never `false` while
    /// one is left: see [`Shard::undrained`]. Costs one load for a breaker no thread has
    /// called, plus one per shard that exists; the hot path pays one plain store per count.
    pub(super) fn has_undrained(&self) -> bool {
        self.shards.present().any(|(_, shard)| shard.undrained.load(Ordering::Relaxed))
    }

    /// `(anything undrained, anything but successes undrained)`, by the shards' flags, in
    /// one pass: [`Counters::has_undrained`], and whether a failure, slow call, ignored call
    /// or rejection is among what is left (never `false` while one is left; a count racing
    /// the last drain may make it `true` with nothing to take).
    pub(super) fn undrained(&self) -> (bool, bool) {
        let (mut any, mut urgent) = (false, false);
        for (_, shard) in self.shards.present() {
            any |= shard.undrained.load(Ordering::Relaxed);
            urgent |= shard.urgent.load(Ordering::Relaxed);
            if urgent {
                break;
            }
        }
        (any || urgent, urgent)
    }

    /// Whether the next call by `writer` falls in the admitted `per_mille`: of every
    /// thousand calls on a shard exactly `per_mille` are admitted, spread evenly. Per
    /// breaker and per shard, not per thread across breakers, so one breaker's calls never
    /// take another's admissions; the write lands on the shard's own line.
    pub(super) fn admit_fraction(&self, writer: Writer, per_mille: u16) -> bool {
        let n = self.shard(writer).write(writer, |shard| Shard::bump(&shard.fraction)).wrapping_sub(1) % 1000;
        let p = u64::from(per_mille.min(1000));
        (n + 1) * p / 1000 > n * p / 1000
    }

    /// Takes every count since the last call: per generation tag, the stale calls, and the
    /// rejections (also in the tags' `rejected`) by reason, in [`super::RejectReason`]'s
    /// order (stale ones are only in the stale calls).
    pub(super) fn take(&self) -> Taken {
        let mut by_tag: BTreeMap<u64, OutcomeCounts> = BTreeMap::new();
        let mut stale = 0u64;
        let mut rejected = [0u64; REJECTED_CLASSES];
        // One drainer at a time; a drainer that panicked left `seen` consistent per cell.
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (index, shard) in self.shards.present() {
            // Before the cells, Acquire: pairs with the writer's store after each count.
            if shard.undrained.load(Ordering::Relaxed) {
                shard.undrained.swap(false, Ordering::Acquire);
            }
            if shard.urgent.load(Ordering::Relaxed) {
                shard.urgent.swap(false, Ordering::Acquire);
            }
            if seen.len() <= index {
                seen.resize(index + 1, Seen::default());
            }
            let seen = &mut seen[index];
            for (slot, cells) in shard.cells.iter().enumerate() {
                for (class, cell) in cells.iter().enumerate() {
                    let Some((tag, counts, late)) =
                        take_cell(cell, &shard.began[slot][class], &mut seen.cells[slot][class])
                    else {
                        continue;
                    };
                    stale = stale.saturating_add(late);
                    if counts > 0 {
                        let total = by_tag.entry(tag).or_default();
                        let field = match class {
                            0 => &mut total.success,
                            1 => &mut total.failure,
                            2 => &mut total.slow,
                            3 => &mut total.ignored,
                            _ => {
                                let by_reason = &mut rejected[class - FIRST_REJECTED];
                                *by_reason = by_reason.saturating_add(counts);
                                &mut total.rejected
                            }
                        };
                        *field = field.saturating_add(counts);
                    }
                }
            }
            let now = shard.stale.load(Ordering::Relaxed);
            stale = stale.saturating_add(now.wrapping_sub(seen.stale));
            seen.stale = now;
        }
        (by_tag, stale, rejected)
    }
}

/// What [`Counters::take`] took: counts per generation tag, stale calls, rejections by
/// reason.
pub(super) type Taken = (BTreeMap<u64, OutcomeCounts>, u64, [u64; REJECTED_CLASSES]);

/// What one cell counted since `seen`: `(tag, calls under it, stale calls)`, and `seen`
/// moved on; `None` if nothing changed or a takeover is under way.
fn take_cell(cell: &AtomicU64, began: &AtomicU64, seen: &mut u64) -> Option<(u64, u64, u64)> {
    let word = cell.load(Ordering::Acquire);
    if word == *seen {
        return None;
    }
    let (tag, total) = (word >> TAG_SHIFT, word & TOTAL_MASK);
    let seen_total = *seen & TOTAL_MASK;
    let taken = if tag == *seen >> TAG_SHIFT {
        (tag, total.wrapping_sub(seen_total) & TOTAL_MASK, 0)
    } else {
        let began = began.load(Ordering::Relaxed);
        if began >> TAG_SHIFT != tag {
            return None;
        }
        let start = began & TOTAL_MASK;
        (tag, total.wrapping_sub(start) & TOTAL_MASK, start.wrapping_sub(seen_total) & TOTAL_MASK)
    };
    *seen = word;
    Some(taken)
}

/// Writer indices whose shard slots sit in the breaker itself; the others' slots are one
/// allocation away, made when the first of them calls. Threads claim the lowest free
/// index, so a service with up to this many calling threads never makes it.
#[cfg(not(loom))]
const DIRECT: usize = 8;

#[cfg(not(loom))]
type Slot = std::sync::OnceLock<Box<Shard>>;

/// The shards of one breaker, indexed by [`Writer::index`], each created on its writer's
/// first use. The first [`DIRECT`] slots are inline (finding one is one load fewer on every
/// call); the other `OWNED + SHARED - DIRECT` are allocated together when the first of
/// them is used: an idle breaker's table is 152 bytes instead of 16 per writer index
/// (2,112). `present` says which exist, so the flusher's [`Counters::has_undrained`]
/// looks at no slot of a breaker no thread has called.
#[cfg(not(loom))]
struct Shards {
    direct: [Slot; DIRECT],
    more: std::sync::OnceLock<Box<[Slot; OWNED + SHARED - DIRECT]>>,
    /// Bit `i < DIRECT`: direct shard `i` exists; bit `DIRECT`: `more` exists.
    present: std::sync::atomic::AtomicU32,
}

#[cfg(not(loom))]
impl Shards {
    fn new() -> Self {
        Self {
            direct: std::array::from_fn(|_| Slot::new()),
            more: std::sync::OnceLock::new(),
            present: std::sync::atomic::AtomicU32::new(0),
        }
    }

    #[inline]
    fn get_or_create(&self, index: usize) -> &Shard {
        if let Some(shard) = self.direct.get(index).and_then(Slot::get) {
            return shard;
        }
        self.create(index)
    }

    #[cold]
    fn create(&self, index: usize) -> &Shard {
        let (slot, bit) = if let Some(slot) = self.direct.get(index) {
            (slot, index)
        } else {
            let more = self.more.get_or_init(|| Box::new(std::array::from_fn(|_| Slot::new())));
            (&more[index - DIRECT], DIRECT)
        };
        let shard = slot.get_or_init(|| Box::new(Shard::new()));
        self.present.fetch_or(1 << bit, Ordering::Relaxed);
        shard
    }

    fn present(&self) -> impl Iterator<Item = (usize, &Shard)> {
        let present = self.present.load(Ordering::Relaxed);
        let direct = self
            .direct
            .iter()
            .enumerate()
            .filter(move |(index, _)| present & (1 << index) != 0)
            .filter_map(|(index, slot)| Some((index, &**slot.get()?)));
        let more = self.more.get().filter(|_| present & (1 << DIRECT) != 0).into_iter().flat_map(|more| {
            more.iter().enumerate().filter_map(|(index, slot)| Some((index + DIRECT, &**slot.get()?)))
        });
        direct.chain(more)
    }
}

/// Under loom every shard exists from the start: lazy creation is std's `OnceLock`, which
/// loom does not model, and the models are about the counting.
#[cfg(loom)]
struct Shards(Box<[Shard]>);

#[cfg(loom)]
impl Shards {
    fn new() -> Self {
        Self((0..OWNED + SHARED).map(|_| Shard::new()).collect())
    }

    fn get_or_create(&self, index: usize) -> &Shard {
        &self.0[index]
    }

    fn present(&self) -> impl Iterator<Item = (usize, &Shard)> {
        self.0.iter().enumerate()
    }
}

/// This thread's writer: an owned index while fewer than [`OWNED`] threads hold one, else
/// a shared shard; a thread being torn down (its thread-locals gone) writes shared shard 0.
#[cfg(not(loom))]
#[inline]
pub(super) fn writer() -> Writer {
    let cached = claim::WRITER.get();
    if cached != claim::UNCLAIMED {
        return Writer(cached);
    }
    claim::claim()
}

/// Under loom a model names each call's writer (`try_acquire_on`); this is never used.
#[cfg(loom)]
pub(super) fn writer() -> Writer {
    Writer::shared(0)
}

/// The process-wide registry of owned writer indices.
#[cfg(not(loom))]
mod claim {
    use std::cell::Cell;
    use std::sync::{Mutex, PoisonError};

    use super::{OWNED, Writer};

    struct Registry {
        /// Indices never handed out start here.
        next: usize,
        /// Indices given back by threads that exited.
        free: Vec<usize>,
        /// Round robin over the shared shards.
        shared: usize,
    }

    static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next: 0, free: Vec::new(), shared: 0 });

    /// A thread's writer; an owned index goes back to the registry when the thread exits.
    pub(super) struct Claim {
        pub(super) writer: Writer,
    }

    impl Claim {
        fn take() -> Self {
            let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
            let owned = registry.free.pop().or_else(|| {
                let index = registry.next;
                (index < OWNED).then(|| {
                    registry.next += 1;
                    index
                })
            });
            let writer = owned.map_or_else(
                || {
                    registry.shared = registry.shared.wrapping_add(1);
                    Writer::shared(registry.shared)
                },
                Writer::owned,
            );
            Self { writer }
        }
    }

    impl Drop for Claim {
        fn drop(&mut self) {
            // This thread's later thread-local destructors may still call a breaker.
            WRITER.set(Writer::shared(0).0);
            if self.writer.owns() {
                let index = self.writer.index();
                // The registry's lock orders this thread's last writes before the next
                // owner's first.
                REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).free.push(index);
            }
        }
    }

    /// This thread's writer; read on every call, so a plain thread-local without a
    /// destructor (the claim beside it has one).
    pub(super) const UNCLAIMED: u32 = u32::MAX;

    thread_local! {
        pub(super) static WRITER: Cell<u32> = const { Cell::new(UNCLAIMED) };
        static CLAIM: Claim = Claim::take();
    }

    /// Claims this thread's writer on its first call.
    #[cold]
    pub(super) fn claim() -> Writer {
        let writer = CLAIM.try_with(|claim| claim.writer).unwrap_or(Writer::shared(0));
        WRITER.set(writer.0);
        writer
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counters() -> Counters {
        Counters::new()
    }

    #[test]
    fn counts_land_under_their_tag_and_late_ones_go_stale() {
        let c = counters();
        let (a, b) = (Writer::owned(0), Writer::shared(1));
        c.count(a, 7, Class::Success, || 7);
        c.count(b, 7, Class::Failure, || 7);
        c.count(b, 8, Class::RejectedOpen, || 8);
        c.count(a, 8, Class::RejectedNotAdmitted, || 8);
        c.count(a, 7, Class::RejectedNotAdmitted, || 8);
        let (by_tag, stale, rejected) = c.take();
        assert_eq!(by_tag[&7], OutcomeCounts { success: 1, failure: 1, rejected: 1, ..OutcomeCounts::default() });
        assert_eq!(by_tag[&8].rejected, 2);
        assert_eq!(stale, 0);
        assert_eq!(rejected, [1, 0, 0, 2], "by reason: open, no probe left, no probe granted, not admitted");
        assert_eq!(c.take(), (BTreeMap::new(), 0, [0; REJECTED_CLASSES]), "a drain takes each call once");
        // A late outcome of a drained generation still counts under it.
        c.count(a, 7, Class::Success, || 8);
        // Generation 7 + SLOTS takes 7's slot over: 7's undrained and later outcomes are stale.
        let next = 7 + SLOTS as u64;
        c.count(a, 7, Class::Success, || 8);
        c.count(a, next, Class::Success, || next);
        c.count(a, 7, Class::Success, || next);
        let (by_tag, stale, _) = c.take();
        assert_eq!(by_tag.get(&7), None, "the undrained 7s went stale at the takeover");
        assert_eq!(by_tag[&next].success, 1);
        assert_eq!(stale, 3);
    }

    #[test]
    fn a_cell_left_alone_until_its_tag_wrapped_is_taken_over() {
        let c = counters();
        let w = Writer::owned(3);
        c.count(w, 9, Class::Failure, || 9);
        assert_eq!(c.take().0[&9].failure, 1);
        // Half the tag space later, tag 9 looks newer than the slot's new generation by
        // distance; the generation in force says it is older.
        let later = 9 + (1 << (GEN_TAG_BITS - 1)) + SLOTS as u64;
        c.count(w, later, Class::Failure, || later);
        let (by_tag, stale, _) = c.take();
        assert_eq!((by_tag.get(&9), by_tag[&later].failure, stale), (None, 1, 0));
    }

    #[test]
    fn totals_wrap_without_losing_a_call() {
        let cell = AtomicU64::new((5 << TAG_SHIFT) | 1);
        let began = AtomicU64::new(0);
        let mut seen = (5 << TAG_SHIFT) | (TOTAL_MASK - 1);
        assert_eq!(take_cell(&cell, &began, &mut seen), Some((5, 3, 0)));
    }

    #[test]
    fn a_takeover_under_way_waits_for_the_next_drain() {
        // The cell shows tag 6 but `began` already holds the next takeover's tag 14.
        let cell = AtomicU64::new((6 << TAG_SHIFT) | 0xa);
        let began = AtomicU64::new((14 << TAG_SHIFT) | 0xc);
        let mut seen = (4 << TAG_SHIFT) | 2;
        assert_eq!(take_cell(&cell, &began, &mut seen), None);
        assert_eq!(seen, (4 << TAG_SHIFT) | 2);
        cell.store((14 << TAG_SHIFT) | 0xd, Ordering::Relaxed);
        // 2..12: older tags' undrained calls (stale); 12..13: tag 14's.
        assert_eq!(take_cell(&cell, &began, &mut seen), Some((14, 1, 10)));
    }

    #[test]
    fn tags_compare_within_the_live_window() {
        assert!(held_is_newer(8, 7, 8));
        assert!(!held_is_newer(7, 7, 9));
        assert!(!held_is_newer(0, 2, 2), "an older tag");
        let top = TAG_MASK;
        assert!(held_is_newer(0, top, 1), "across the wrap");
    }

    #[test]
    fn fractions_are_exact_per_thousand() {
        let c = counters();
        for per_mille in [0u16, 1, 250, 999, 1000, 5000] {
            for writer in [Writer::owned(3), Writer::shared(0)] {
                let admitted = (0..1000).filter(|_| c.admit_fraction(writer, per_mille)).count();
                assert_eq!(admitted, usize::from(per_mille.min(1000)));
            }
        }
    }

    #[test]
    fn threads_beyond_the_owned_indices_share_locked_shards_and_lose_nothing() {
        use std::sync::Barrier;
        const THREADS: usize = OWNED + 8;
        const CALLS: u64 = 200;
        let c = counters();
        let barrier = Barrier::new(THREADS);
        let writers = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    // All alive at once, so some cannot own an index.
                    let me = writer();
                    barrier.wait();
                    for _ in 0..CALLS {
                        c.count(writer(), 3, Class::Success, || 3);
                    }
                    writers.lock().unwrap().push(me);
                });
            }
        });
        let writers = writers.into_inner().unwrap();
        let shared = writers.iter().filter(|w| !w.owns()).count();
        assert!(shared >= THREADS - OWNED, "{shared} shared writers");
        let mut owned: Vec<_> = writers.iter().filter(|w| w.owns()).map(|w| w.index()).collect();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), THREADS - shared, "no owned index is held twice at once");
        let (by_tag, stale, _) = c.take();
        assert_eq!((by_tag[&3].success, stale), (THREADS as u64 * CALLS, 0));
    }
}
