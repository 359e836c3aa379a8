//! The hot path: what a service calls on every request. `try_acquire` reads the snapshot the
//! breaker actor installed and hands out a [`Permit`] or a typed [`Rejected`]; the permit
//! records the outcome into counters tagged with the snapshot generation, which the actor
//! drains when the registry's flusher finds some and feeds to the machine as `LocalOutcomes`.
//! [`Breaker::try_acquire_owned`] hands out the same permit holding a share of the breaker
//! instead of a borrow ([`OwnedPermit`]), for a caller that must keep it in something
//! `'static`, such as a tower response future.
//!
//! The contract (what the actor, the registry and the benchmarks rely on):
//! - one writer installs snapshots ([`HotPath::install`]) and one drainer drains
//!   ([`HotPath::drain`]): the breaker actor; any number of threads acquire and record;
//! - every recorded outcome is drained exactly once, under the generation of the snapshot its
//!   permit was granted under, or counted in [`Drained::stale_calls`];
//! - a probe grant is a total for its probe round ([`Admission::Probe`]): across snapshot
//!   installs with the same round, at most `grant` probes are in flight or ended with a
//!   success or a failure; a dropped permit gives its probe slot back and records nothing,
//!   an ignored probe records its neutral outcome and gives its slot back too;
//! - in the closed state, acquire and record take no lock, execute no locked (read-modify-
//!   write) instruction, allocate nothing and read no clock (a thread's first call of a
//!   breaker allocates its counter shard, once); the coarse clock is read only when a
//!   slow-call threshold is configured. An owned permit adds its share of the breaker: one
//!   reference-count increment and decrement (locked), still no allocation.
//!
//! # How it is built (lock-free)
//!
//! Nothing is written on every call by more than one thread: in the closed state a call is
//! one load of the snapshot word (a line only installs write), then a plain load and store
//! of a counter cell in the calling thread's own shard, which no other thread writes (not
//! even the drainer). No locked instruction: on a 2-vCPU Xeon an uncontended locked
//! read-modify-write alone costs about 11 ns, the whole closed call now about 6 to 9.
//!
//! - **Snapshot word** (`word`): one `AtomicU64` with the mode, the record and shut-down
//!   flags, the effective state, the per-mille, the generation tag and the probe-round tag.
//!   An install writes everything a reader of the new word depends on (the cold copy of the
//!   snapshot, the probe allowance) and then publishes the word with Release; readers load
//!   it with Acquire. A reader sees one install's word whole: there is no half-installed
//!   snapshot to see. `snapshot()` reads the full snapshot under a sequence lock that only
//!   the installer writes.
//! - **Counters** (`counters`): one shard per writer thread, on cache lines of its own:
//!   a thread claims a process-wide writer index on its first call and gives it back when
//!   it exits; while it holds index `i` it is the only writer of shard `i` of every
//!   breaker ([`OWNED_SHARDS`] of them; threads beyond that share a few shards behind a
//!   writers-only spin lock). A permit records on the shard of the thread that records it.
//!   Each shard counts the last 8 generations side by side, one cell per outcome class and
//!   generation slot, each cell a (24-bit generation tag, 40-bit running total) word; a
//!   newer generation takes a slot's cell over (noting the total it began at), an outcome
//!   of a generation 8 or more older than its slot's goes to the shard's stale total. Eight
//!   is the number of generations the machine keeps: an outcome the hot path gives up on is
//!   one the machine would drop as stale anyway. The drainer never writes a cell: it keeps
//!   the last word it took from each and drains the difference, so outcomes that finish
//!   after a drain, even after later installs, still count under their own generation at
//!   the next drain.
//! - **Probe allowance** (`probes`): one `AtomicU64` with the round tag, the grant and the
//!   probes issued; taking a probe is one CAS that checks all three, so a round never
//!   issues more than its grant, however many installs share the round.
//! - **Fraction admission** counts per shard: exactly `per_mille` in every thousand calls
//!   of a shard, written on the shard's own line. Not one thread-local counter: shared by
//!   every breaker a thread calls, it would let one breaker's calls take another's
//!   admissions (two breakers alternating at 500 per mille: one always admitted, one never).
//! - **Streaks** (only with [`HotSettings::track_streaks`]): a shared current run and
//!   longest run per generation, each cell tagged with its generation, so a run never
//!   crosses a phase; failures write them, successes only read unless a run is in
//!   progress, so a healthy breaker never writes them.
//! - **Rejections** are counted as class `rejected` when the snapshot records. A rejection
//!   pairs the word's state with the retry hint of the same install (each install writes
//!   its hint to one of two slots, tagged with its install number, which the word carries
//!   too; a reader whose word is two installs old decides again under a newer one), and
//!   never waits for the installer. A [`Rejected`] is `Copy` (no name, no reference
//!   count): the open state's call is one load of the word, one of the retry slot, the
//!   thread's counter cell and the coarse clock, no locked instruction.
//!
//! Install and drain need no common thread: the drainer maps each tag through a
//! generation read after the cells, which is at least as new as the install that published
//! the tag. Still, an actor that installs several generations between two drains gets the
//! freshest attribution by draining before it installs.
//!
//! Limits, by design: tags are the low 24 bits of a generation, the low 17 bits of a
//! probe round and the low 16 bits of an install number, so a permit held across 2^24
//! generation changes may count under the wrong generation, and a reader stalled between
//! loading the word and acting on it across 2^17 probe rounds (or 2^16 installs) could take
//! a slot of the wrong round (or the wrong retry hint). Grants above 2^23 - 1 are cut to
//! that, per-milles above 1000 admit every call, and retry hints of 2^48 ms or later read
//! as none.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

mod counters;
mod probes;
mod word;

use crate::machine::{
    Admission, BreakerName, LocalOutcomes, OutcomeCounts, Snapshot, StateLabel, TRACKED_GENERATIONS, ValidConfig,
};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};
use counters::{Class, Counters, Writer};
use probes::{ProbeAllowance, Take};
use word::{Mode, Published, Word};

/// Counter shards that belong to one thread each (loom: 2); a thread beyond them records
/// into a shared, locked shard.
pub const OWNED_SHARDS: usize = counters::OWNED;

/// Hot-path settings taken from the breaker's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HotSettings {
    /// Calls at least this long are slow (and need the coarse clock).
    pub slow_call_threshold_ms: Option<u64>,
    /// Whether consecutive-failure streaks are tracked (a rule needs them).
    pub track_streaks: bool,
    /// The local overlay's consecutive-failure limit: the call whose failure makes a run
    /// this long trips the hot path itself (rejecting from the next call on) if its
    /// snapshot allows it ([`Snapshot::trip_on_streak`]); needs `track_streaks`.
    pub trip_streak: Option<u64>,
}

impl HotSettings {
    /// The settings a validated config needs.
    pub fn from_config(config: &ValidConfig) -> Self {
        let streaks = |c: &crate::machine::ValidConfig| {
            c.fleet.rules.consecutive_failures.is_some()
                || c.local.as_ref().is_some_and(|l| l.rules.consecutive_failures.is_some())
        };
        let trip_streak = config.local.as_ref().and_then(|l| l.rules.consecutive_failures);
        Self { slow_call_threshold_ms: config.slow_call_threshold_ms, track_streaks: streaks(config), trip_streak }
    }
}

/// [`HotSettings`] in atomics, so that a breaker whose fleet config changes keeps its hot
/// path (the handles services hold) and takes the new settings on the next call. Each field
/// is read on its own: a call that straddles a change may be measured under the old
/// threshold and counted under the new one, which is harmless.
struct SettingsCell {
    /// `u64::MAX`: no threshold.
    slow_call_threshold_ms: AtomicU64,
    track_streaks: AtomicBool,
    /// 0: none (a streak limit is at least 1).
    trip_streak: AtomicU64,
}

impl SettingsCell {
    fn new(settings: HotSettings) -> Self {
        let cell = Self {
            slow_call_threshold_ms: AtomicU64::new(u64::MAX),
            track_streaks: AtomicBool::new(false),
            trip_streak: AtomicU64::new(0),
        };
        cell.store(settings);
        cell
    }

    fn store(&self, settings: HotSettings) {
        self.slow_call_threshold_ms.store(settings.slow_call_threshold_ms.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.track_streaks.store(settings.track_streaks, Ordering::Relaxed);
        self.trip_streak.store(settings.trip_streak.unwrap_or(0), Ordering::Relaxed);
    }

    #[inline]
    fn slow_call_threshold_ms(&self) -> Option<u64> {
        Some(self.slow_call_threshold_ms.load(Ordering::Relaxed)).filter(|ms| *ms != u64::MAX)
    }

    #[inline]
    fn track_streaks(&self) -> bool {
        self.track_streaks.load(Ordering::Relaxed)
    }

    #[inline]
    fn trip_streak(&self) -> Option<u64> {
        Some(self.trip_streak.load(Ordering::Relaxed)).filter(|n| *n != 0)
    }

    fn load(&self) -> HotSettings {
        HotSettings {
            slow_call_threshold_ms: self.slow_call_threshold_ms(),
            track_streaks: self.track_streaks(),
            trip_streak: self.trip_streak(),
        }
    }
}

/// A millisecond clock on the machine's timeline, advanced by the runtime's ticker, so the
/// hot path never makes a clock syscall.
#[derive(Debug, Clone, Default)]
pub struct CoarseClock(Arc<AtomicU64>);

impl CoarseClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Milliseconds on the machine's timeline.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves the clock (never backwards).
    pub fn advance_to(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::Relaxed);
    }
}

/// How a finished call went, as the caller or a classifier sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked (it may still count as slow).
    Success,
    /// It failed.
    Failure,
    /// An excluded error: neutral.
    Ignored,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    /// The breaker is open (or forced open, or the outage policy rejects).
    Open,
    /// Half-open, and this node's probes for the round are taken (in flight, or ended
    /// with a success or failure).
    NoProbeLeft,
    /// Half-open, and the round has granted this node no probe (yet: a rejected call is
    /// demand, which the decider may answer with a grant from the budget left).
    NoProbeGranted,
    /// Ramping back, and this call is outside the admitted share.
    NotAdmitted,
    /// The breaker was shut down.
    ShutDown,
}

impl RejectReason {
    /// Every reason, in declaration order (the `reason` values of the
    /// `fusebox_rejections_total` metric).
    pub const ALL: [Self; 5] = [Self::Open, Self::NoProbeLeft, Self::NoProbeGranted, Self::NotAdmitted, Self::ShutDown];

    /// Its label (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::NoProbeLeft => "no_probe_left",
            Self::NoProbeGranted => "no_probe_granted",
            Self::NotAdmitted => "not_admitted",
            Self::ShutDown => "shut_down",
        }
    }
}

/// A call the breaker did not admit: its effective state, why, and when the state may
/// change.
///
/// `Copy` and one word: the open state's hot path makes one per rejected call, so it
/// carries no name (an `Arc` clone is two locked instructions, most of what a rejection
/// used to cost; the breaker is the one the caller asked, [`Breaker::name`]) and it is one
/// `u64` (state, reason and the hint in milliseconds), written and read whole: a struct of
/// mixed-width fields was written field by field out of line and read back in wider loads,
/// which the CPU cannot forward from the pending stores (a stall of about 10 ns per call).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rejected(u64);

/// Bits of a rejection's retry hint (milliseconds); all ones: no hint.
const RETRY_MS_BITS: u32 = 48;
const RETRY_MS_NONE: u64 = (1 << RETRY_MS_BITS) - 1;

impl Rejected {
    /// A rejection in `state` for `reason`, with a retry hint (cut to about 8,900 years).
    #[inline]
    pub fn new(state: StateLabel, reason: RejectReason, retry_after: Option<Duration>) -> Self {
        let ms = retry_after
            .map_or(RETRY_MS_NONE, |after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX).min(RETRY_MS_NONE - 1));
        Self::packed(state, reason, ms)
    }

    #[inline]
    fn packed(state: StateLabel, reason: RejectReason, retry_ms: u64) -> Self {
        debug_assert!(retry_ms <= RETRY_MS_NONE, "the hint fits its bits");
        Self(retry_ms | (word::label_code(state) << RETRY_MS_BITS) | ((reason as u64) << (RETRY_MS_BITS + 8)))
    }

    /// The effective state.
    #[inline]
    pub fn state(self) -> StateLabel {
        word::label_of((self.0 >> RETRY_MS_BITS) & 0xFF)
    }

    /// Why.
    #[inline]
    pub fn reason(self) -> RejectReason {
        match self.0 >> (RETRY_MS_BITS + 8) {
            0 => RejectReason::Open,
            1 => RejectReason::NoProbeLeft,
            2 => RejectReason::NoProbeGranted,
            3 => RejectReason::NotAdmitted,
            _ => RejectReason::ShutDown,
        }
    }

    /// When the state may change, if known.
    #[inline]
    pub fn retry_after(self) -> Option<Duration> {
        let ms = self.0 & RETRY_MS_NONE;
        (ms != RETRY_MS_NONE).then(|| Duration::from_millis(ms))
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("state", &self.state())
            .field("reason", &self.reason())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason() {
            RejectReason::Open => "it is open",
            RejectReason::NoProbeLeft => "half-open, and this node's probes for the round are taken",
            RejectReason::NoProbeGranted => "half-open, and no probe granted to this node yet",
            RejectReason::NotAdmitted => "ramping back, and this call is outside the admitted share",
            RejectReason::ShutDown => "it was shut down",
        };
        write!(f, "the breaker rejected the call: {why} (state {})", self.state().as_str())?;
        if let Some(after) = self.retry_after() {
            write!(f, "; retry after {} ms", after.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Bits of a streak cell's run; the generation tag takes the 24 above them.
const RUN_BITS: u32 = 64 - word::GEN_TAG_BITS;
const RUN_MASK: u64 = (1 << RUN_BITS) - 1;

fn streak_cell(tag: u64, run: u64) -> u64 {
    (tag << RUN_BITS) | run.min(RUN_MASK)
}

fn cell_tag(cell: u64) -> u64 {
    cell >> RUN_BITS
}

fn cell_run(cell: u64) -> u64 {
    cell & RUN_MASK
}

/// Whether generation tag `a` is newer than `b` (exact while no permit outlives 2^23
/// generation changes).
fn tag_newer(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b) & word::GEN_TAG_MASK;
    ahead != 0 && ahead < 1 << (word::GEN_TAG_BITS - 1)
}

/// The consecutive-failure runs, on a line of their own (failures write it from every
/// thread; the snapshot word must not bounce with it).
///
/// A run belongs to one snapshot generation: every cell is a (generation tag, run) word,
/// and an outcome only touches the run of the generation its permit was granted under. A
/// generation changes with every fleet or overlay phase, so a run never crosses a phase:
/// failures before a trip cannot reappear as a streak after a reset, a forced state or a
/// health check that closes directly. (A run also restarts at an overlay or outage change
/// inside a fleet phase: fewer streak trips at that instant, never a streak that was not
/// there.) The longest run of each of the last [`TRACKED_GENERATIONS`] generations has a
/// slot of its own, so a new generation's run cannot overwrite an older one's before the
/// drain takes it.
#[repr(align(128))]
struct Streaks {
    /// The run in progress: (generation tag, failures in a row).
    current: AtomicU64,
    /// The longest run since the last drain, by generation tag mod [`TRACKED_GENERATIONS`].
    longest: [AtomicU64; TRACKED_GENERATIONS],
}

impl Streaks {
    fn new() -> Self {
        Self { current: AtomicU64::new(0), longest: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    fn slot(&self, tag: u64) -> &AtomicU64 {
        // The modulus is 8: the index fits.
        #[expect(clippy::cast_possible_truncation, reason = "below TRACKED_GENERATIONS")]
        let index = (tag % TRACKED_GENERATIONS as u64) as usize;
        &self.longest[index]
    }

    /// A failure under generation tag `tag`: extends that generation's run, starts a run
    /// if `tag` is newer than the run in progress, and is no part of any run if it is older
    /// (a late outcome of a generation whose run has ended).
    /// The run this failure makes, if it is part of one.
    #[inline]
    fn failure(&self, tag: u64) -> Option<u64> {
        let mut current = self.current.load(Ordering::Relaxed);
        let run = loop {
            let run = if cell_tag(current) == tag {
                cell_run(current) + 1
            } else if tag_newer(tag, cell_tag(current)) {
                1
            } else {
                return None;
            };
            // One locked instruction, as the `fetch_add` it replaces.
            match self.current.compare_exchange_weak(
                current,
                streak_cell(tag, run),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break run,
                Err(now) => current = now,
            }
        };
        let slot = self.slot(tag);
        let longest = slot.load(Ordering::Relaxed);
        if cell_tag(longest) != tag || cell_run(longest) < run {
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |longest| {
                let behind = cell_tag(longest) == tag && cell_run(longest) < run;
                (behind || tag_newer(tag, cell_tag(longest))).then_some(streak_cell(tag, run))
            });
        }
        Some(run)
    }

    /// A success under generation tag `tag` ends the run in progress unless that run is a
    /// newer generation's.
    #[inline]
    fn success(&self, tag: u64) {
        // Read first: a healthy breaker's successes must not write a shared line.
        let current = self.current.load(Ordering::Relaxed);
        if cell_run(current) != 0 && (cell_tag(current) == tag || tag_newer(tag, cell_tag(current))) {
            self.current.store(streak_cell(tag, 0), Ordering::Relaxed);
        }
    }

    /// The longest run of each generation whose outcomes this drain took (`drained(tag)`)
    /// since the last call, as (tag, run) for runs of at least one; each restarts from the
    /// run in progress if that is its generation's. A run of a generation without outcomes
    /// in this drain stays for the drain that takes them: it is reported with its failures,
    /// never lost before them.
    fn take_longest<'a>(&'a self, drained: impl Fn(u64) -> bool + 'a) -> impl Iterator<Item = (u64, u64)> + 'a {
        let current = self.current.load(Ordering::Relaxed);
        self.longest.iter().filter_map(move |slot| {
            let seen = slot.load(Ordering::Relaxed);
            if cell_run(seen) == 0 || !drained(cell_tag(seen)) {
                return None;
            }
            let carried_for = |tag| if cell_tag(current) == tag { cell_run(current) } else { 0 };
            let taken = slot
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |longest| {
                    // A newer generation's run may have taken the slot meanwhile: leave it.
                    let tag = cell_tag(longest);
                    drained(tag).then(|| streak_cell(tag, carried_for(tag)))
                })
                .ok()?;
            let tag = cell_tag(taken);
            Some((tag, cell_run(taken).max(carried_for(tag))))
        })
    }
}

/// What a breaker's hot path holds that no drain has taken, as the registry's flusher asks
/// every flush interval ([`HotPath::undrained`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undrained {
    /// Nothing.
    Nothing,
    /// Only successes, under a snapshot whose effective and fleet states are both closed:
    /// nothing that could trip, and the report batcher sends such reports lazily anyway
    /// (`shell::batch::Urgency`), so the drain may wait for the flusher's lazy interval.
    Lazy,
    /// A failure, slow call, ignored call or rejection, or anything at all under a snapshot
    /// that is not closed (half-open, ramping, open, forced, disabled): drain at the next
    /// flush.
    Urgent,
}

/// One breaker's hot-path state on this node.
pub struct HotPath {
    name: BreakerName,
    metrics: CallMetrics,
    settings: SettingsCell,
    clock: CoarseClock,
    /// Whether the snapshot in force has the effective and the fleet state closed (written by
    /// installs, read by the flusher through [`HotPath::undrained`]; no caller reads it).
    closed: AtomicBool,
    published: Published,
    probes: ProbeAllowance,
    streaks: Streaks,
    counters: Counters,
}

impl fmt::Debug for HotPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotPath")
            .field("name", &self.name)
            .field("settings", &self.settings.load())
            .field("snapshot", &self.snapshot())
            .field("shut_down", &self.published.load().is_shut())
            .finish_non_exhaustive()
    }
}

/// What a drain collected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drained {
    /// Per generation with anything recorded, oldest first.
    pub outcomes: Vec<LocalOutcomes>,
    /// Calls recorded too late to attribute to their generation.
    pub stale_calls: u64,
    /// The rejections among `outcomes` by reason, indexed as [`RejectReason::ALL`] (open,
    /// no probe left, no probe granted, not admitted; a shut-down breaker drains nothing).
    pub rejections: [u64; REJECTION_REASONS_DRAINED],
}

/// Rejection reasons a drain tells apart ([`Drained::rejections`]): all but shut down.
pub const REJECTION_REASONS_DRAINED: usize = counters::REJECTED_CLASSES;

/// The `metrics` handles the hot path itself records into, made once when the breaker is
/// created (the registry registers them with its other series): no key lookup, no
/// allocation per call. Default: no-op handles (a hot path built without a registry).
///
/// Only calls the breaker times are observed, into the duration histogram of their outcome:
/// those of a breaker with a slow-call threshold (timed on the coarse clock, so to the
/// flusher's resolution, by default 5 ms) and those whose caller measured them
/// ([`PermitOn::slow`]). An untimed call and a rejection touch none of these handles; a
/// rejection of a shut-down breaker (no drain counts it any more) increments
/// `shut_down_rejections`, off the hot path.
#[derive(Debug, Clone)]
pub struct CallMetrics {
    /// Call durations of successes, failures, slow successes and ignored calls, in that
    /// order (seconds).
    pub durations: [metrics::Histogram; 4],
    /// Rejections of the shut-down breaker.
    pub shut_down_rejections: metrics::Counter,
}

impl Default for CallMetrics {
    fn default() -> Self {
        Self {
            durations: std::array::from_fn(|_| metrics::Histogram::noop()),
            shut_down_rejections: metrics::Counter::noop(),
        }
    }
}

fn initial_snapshot() -> Snapshot {
    Snapshot {
        generation: 1,
        admission: Admission::Allow,
        record: true,
        state: StateLabel::Closed,
        fleet: StateLabel::Closed,
        local: None,
        retry_at: None,
        outage: false,
        trip_on_streak: false,
    }
}

impl HotPath {
    /// A closed hot path (generation 1, as a new machine's first snapshot).
    pub fn new(name: BreakerName, settings: HotSettings, clock: CoarseClock) -> Self {
        Self {
            counters: Counters::new(),
            name,
            metrics: CallMetrics::default(),
            settings: SettingsCell::new(settings),
            clock,
            closed: AtomicBool::new(true),
            published: Published::new(&initial_snapshot()),
            probes: ProbeAllowance::new(),
            streaks: Streaks::new(),
        }
    }

    /// The same hot path, recording call durations and shut-down rejections into
    /// `metrics` (see [`CallMetrics`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: CallMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> HotSettings {
        self.settings.load()
    }

    /// Takes new settings (the breaker's config changed); calls from now on use them.
    pub fn set_settings(&self, settings: HotSettings) {
        self.settings.store(settings);
    }

    /// The breaker's name.
    pub fn name(&self) -> &BreakerName {
        &self.name
    }

    /// Installs a snapshot from the machine (the actor is the only caller).
    pub fn install(&self, snapshot: &Snapshot) {
        let closed = snapshot.state == StateLabel::Closed && snapshot.fleet == StateLabel::Closed;
        self.closed.store(closed, Ordering::Relaxed);
        let ticket = self.published.begin_install(snapshot);
        if let Admission::Probe { grant, round } = snapshot.admission {
            // Before the word: a reader of the new round must find it armed.
            self.probes.arm(round, grant, ticket.new_round);
        }
        self.published.publish(&ticket);
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Snapshot {
        self.published.snapshot()
    }

    /// The effective state in force (one load: cheaper than [`Self::snapshot`]).
    pub fn state(&self) -> StateLabel {
        self.published.load().label()
    }

    /// Whether the word in force is the hot path's own trip on the overlay's streak (no
    /// install since): the machine, fed the run, trips its overlay and installs a new
    /// snapshot; the actor reinstalls the machine's if it did not.
    pub fn tripped_itself(&self) -> bool {
        self.published.load().streak_tripped()
    }

    /// Stops admitting calls for good: every acquire is rejected as shut down.
    pub fn close(&self) {
        self.published.shut();
    }

    /// Whether outcomes were recorded (or rejections counted) that no drain has taken: what
    /// the registry's flusher asks, every flush interval, to poke only the actors with
    /// something to drain. `false` means nothing is left (a count racing the last drain may
    /// make it `true` with nothing to take). Its cost: to the hot path, one plain store per
    /// recorded outcome or rejection to the recording thread's own counter line (no locked
    /// instruction); to the caller, one load for a breaker no thread has called, plus one
    /// per thread's counter shard that exists.
    pub fn has_undrained(&self) -> bool {
        self.counters.has_undrained()
    }

    /// What is left undrained, and whether its drain may wait ([`Undrained::Lazy`]) or not:
    /// what the registry's flusher asks every flush interval, to poke the actors with a
    /// failure (or anything in a state that is not closed) at once and those with only
    /// successes of a closed breaker at its lazy interval. [`Undrained::Urgent`] is never
    /// missed while a failure, slow call, ignored call or rejection is left: each count of
    /// one sets its shard's second flag after the count, with one more plain store (a success
    /// pays nothing more), and the drain clears it before it takes the cells. Costs what
    /// [`Self::has_undrained`] costs, plus one load per shard, plus one.
    pub fn undrained(&self) -> Undrained {
        match self.counters.undrained() {
            (false, _) => Undrained::Nothing,
            (true, false) if self.closed.load(Ordering::Relaxed) => Undrained::Lazy,
            (true, _) => Undrained::Urgent,
        }
    }

    /// Takes everything recorded since the last drain.
    pub fn drain(&self) -> Drained {
        let (by_tag, stale_calls, rejections) = self.counters.take();
        let runs: Vec<(u64, u64)> = if self.settings.track_streaks() {
            self.streaks.take_longest(|tag| by_tag.contains_key(&tag)).collect()
        } else {
            Vec::new()
        };
        // After taking the cells and the runs: every tag found was published by an install
        // seen here.
        let current = self.published.generation();
        let mut by_generation: BTreeMap<u64, OutcomeCounts> = BTreeMap::new();
        for (tag, counts) in by_tag {
            by_generation.entry(word::generation_of(tag, current)).or_default().add(&counts);
        }
        // Each generation's own longest run: a streak is never handed to another generation.
        let taken = runs.len();
        let longest: BTreeMap<u64, u64> =
            runs.into_iter().map(|(tag, run)| (word::generation_of(tag, current), run)).collect();
        // A tag has one slot (tag mod the slots), so no generation has two runs.
        debug_assert_eq!(longest.len(), taken, "two longest runs for one generation");
        let outcomes = by_generation
            .into_iter()
            .map(|(generation, counts)| {
                let longest_failure_streak = longest.get(&generation).copied().unwrap_or(0);
                LocalOutcomes { generation, counts, longest_failure_streak }
            })
            .collect();
        Drained { outcomes, stale_calls, rejections }
    }

    /// Admits a call or says why not. A rejected call is counted (as demand: the decider
    /// grants probes to nodes that were turning calls away).
    #[expect(
        clippy::inline_always,
        reason = "the closed state's admission must land in the caller's code: measured, see BENCHMARKS.md"
    )]
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.acquire_on(counters::writer)
    }

    /// [`Self::try_acquire`] as the writer of counter shard `shard`, which also records the
    /// permit's outcome: below [`OWNED_SHARDS`] a shard of its own (a model must not let two
    /// threads use one at once), above it a shared, locked one. Loom threads have no
    /// thread-locals to claim a shard with.
    #[cfg(loom)]
    pub fn try_acquire_on(&self, shard: usize) -> Result<Permit<'_>, Rejected> {
        let writer = if shard < OWNED_SHARDS { Writer::owned(shard) } else { Writer::shared(shard - OWNED_SHARDS) };
        self.acquire_on(move || writer)
    }

    /// `writer` names the counter shard this call writes, if it writes one: asked only
    /// off the closed state's path. Always inlined and tiny, so the closed state's call is
    /// one load and a test in the caller's own code; every other state goes out of line.
    #[expect(
        clippy::inline_always,
        reason = "the closed state's admission must land in the caller's code: measured, see BENCHMARKS.md"
    )]
    #[inline(always)]
    fn acquire_on(&self, writer: impl Fn() -> Writer + Copy) -> Result<Permit<'_>, Rejected> {
        let word = self.published.load();
        if word.admits_all() {
            return Ok(self.permit(word, writer, false));
        }
        self.decide(word, writer)
    }

    /// Admission in every state but "allow" (in the open state, this is the hot path).
    #[inline(never)]
    fn decide(&self, mut word: Word, writer: impl Fn() -> Writer + Copy) -> Result<Permit<'_>, Rejected> {
        loop {
            if word.is_shut() {
                return Err(self.shut_down(word));
            }
            let reason = match word.mode() {
                Mode::Allow => return Ok(self.permit(word, writer, false)),
                Mode::Fraction if self.counters.admit_fraction(writer(), word.per_mille()) => {
                    return Ok(self.permit(word, writer, false));
                }
                Mode::Fraction => RejectReason::NotAdmitted,
                Mode::Reject => RejectReason::Open,
                Mode::Probe => match self.probes.take(word) {
                    Take::Taken => return Ok(self.permit(word, writer, true)),
                    Take::Exhausted => RejectReason::NoProbeLeft,
                    Take::NoGrant => RejectReason::NoProbeGranted,
                    Take::OtherRound => {
                        // Only a newer install moves the allowance: retry under it if it is
                        // published, or reject rather than wait for the installer.
                        let again = self.published.load();
                        if again != word {
                            word = again;
                            continue;
                        }
                        RejectReason::NoProbeLeft
                    }
                },
            };
            match self.reject(word, writer(), reason) {
                Some(rejected) => return Err(rejected),
                // Two installs went by since `word` was read: decide under the newest.
                None => word = self.published.load(),
            }
        }
    }

    #[inline]
    fn permit(&self, word: Word, writer: impl Fn() -> Writer, probe: bool) -> Permit<'_> {
        let started = self.settings.slow_call_threshold_ms().map(|_| self.clock.now_ms());
        #[cfg(not(loom))]
        let _ = writer;
        Permit {
            hot: self,
            word,
            #[cfg(loom)]
            writer: writer(),
            call: CallState::new(probe, started),
        }
    }

    #[cold]
    fn shut_down(&self, word: Word) -> Rejected {
        // No drain counts it (the actor is gone): counted here, off the hot path.
        self.metrics.shut_down_rejections.increment(1);
        Rejected::packed(word.label(), RejectReason::ShutDown, RETRY_MS_NONE)
    }

    // Part of `decide`, already out of line: in the open state this is the hot path.
    #[inline]
    fn reject(&self, word: Word, writer: Writer, reason: RejectReason) -> Option<Rejected> {
        // First, so a rejection decided under an out-of-date word is neither counted nor
        // paired with a newer install's hint.
        let retry_at = self.published.retry_at(word).ok()?;
        if word.records() {
            debug_assert_ne!(reason, RejectReason::ShutDown, "a shut-down breaker counts nothing in its cells");
            self.counters.count(writer, word.gen_tag(), Class::rejected(reason), || self.published.load().gen_tag());
        }
        let retry_ms =
            retry_at.map_or(RETRY_MS_NONE, |at| at.saturating_sub(self.clock.now_ms()).min(RETRY_MS_NONE - 1));
        Some(Rejected::packed(word.label(), reason, retry_ms))
    }

    #[inline]
    fn record<H: Deref<Target = HotPath>>(&self, permit: &PermitOn<H>, outcome: Outcome, measured: Option<Duration>) {
        // An untimed call (no slow-call threshold when it was admitted, no duration from the
        // caller) is never slow and is not observed: no clock, no histogram.
        let class = if measured.is_none() && permit.call.started().is_none() {
            match outcome {
                Outcome::Success => Class::Success,
                Outcome::Failure => Class::Failure,
                Outcome::Ignored => Class::Ignored,
            }
        } else {
            self.timed_class(permit.call.started(), outcome, measured)
        };
        // The run before the count: a drain that takes the count (its Acquire load of the
        // cell the count stores with Release) then sees the run too, so a run is never lost
        // to a drain that took its failures without it.
        if self.settings.track_streaks() {
            return self.record_with_streak(permit.word, permit.recorder(), outcome, class);
        }
        self.counters.count(permit.recorder(), permit.word.gen_tag(), class, || self.published.load().gen_tag());
    }

    /// The class of a timed call (see [`Self::record`]), whose duration it observes: out of
    /// line, so that the untimed record stays small. `measured` (the caller's figure) wins
    /// over the coarse clock's, from `started`.
    #[inline(never)]
    fn timed_class(&self, started: Option<u64>, outcome: Outcome, measured: Option<Duration>) -> Class {
        let elapsed = match (measured, started) {
            (Some(elapsed), _) => elapsed,
            (None, Some(start)) => Duration::from_millis(self.clock.now_ms().saturating_sub(start)),
            (None, None) => Duration::ZERO,
        };
        let slow = self.settings.slow_call_threshold_ms().is_some_and(|ms| elapsed.as_millis() >= u128::from(ms));
        let (class, observed) = match outcome {
            Outcome::Success if slow => (Class::Slow, 2),
            Outcome::Success => (Class::Success, 0),
            Outcome::Failure => (Class::Failure, 1),
            Outcome::Ignored => (Class::Ignored, 3),
        };
        self.metrics.durations[observed].record(elapsed.as_secs_f64());
        class
    }

    /// [`Self::record`] for a breaker whose rules need failure streaks: out of line, so the
    /// common record (no streak rule) stays small enough to inline into the caller.
    #[inline(never)]
    fn record_with_streak(&self, granted: Word, writer: Writer, outcome: Outcome, class: Class) {
        let tag = granted.gen_tag();
        let run = match outcome {
            Outcome::Success => {
                self.streaks.success(tag);
                None
            }
            Outcome::Failure => self.streaks.failure(tag),
            Outcome::Ignored => None,
        };
        self.counters.count(writer, tag, class, || self.published.load().gen_tag());
        // The crossing call trips the hot path itself (after its count, so a drain that sees
        // the trip's rejections has the run's failures too; the run is drained with them).
        // Each failure of a run gets its own run length, so exactly one call crosses.
        if run.is_some() && run == self.settings.trip_streak() && granted.streak_armed() {
            self.published.trip_on_streak(granted);
        }
    }
}

/// Permission for one call, reaching its breaker's hot path through `H`: a borrow
/// ([`Permit`], from [`HotPath::try_acquire`] or [`Breaker::try_acquire`]) or a share of the
/// breaker ([`OwnedPermit`], from [`Breaker::try_acquire_owned`], for a permit that must
/// outlive the borrow, such as one held by a `'static` future). Both are the same code: only
/// how the hot path is reached differs. Record how the call went with [`PermitOn::success`],
/// [`PermitOn::slow`], [`PermitOn::failure`], [`PermitOn::ignore`] or [`PermitOn::record`];
/// dropping it records nothing and gives a probe slot back.
#[derive(Debug)]
#[must_use = "a permit records nothing unless its outcome is reported"]
pub struct PermitOn<H: Deref<Target = HotPath>> {
    hot: H,
    /// The word it was granted under: generation tag, round tag, record flag.
    word: Word,
    /// The shard that records its outcome under loom (elsewhere, the recording thread's).
    #[cfg(loom)]
    writer: Writer,
    call: CallState,
}

/// A permit's own state in one word: whether it is a probe, whether its outcome was
/// reported (or handed over), and when it started (coarse clock, if a slow-call threshold
/// needs it). One word, not a bool, an option and a bool: a permit is returned through
/// memory, and the bools' narrow stores, read back by the caller's word-wide copy, stalled
/// every closed-state call (store forwarding fails; about 5 ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallState(u64);

const CALL_PROBE: u64 = 1;
const CALL_DONE: u64 = 1 << 1;
const CALL_TIMED: u64 = 1 << 2;
const CALL_START_SHIFT: u32 = 3;

impl CallState {
    #[inline]
    fn new(probe: bool, started: Option<u64>) -> Self {
        let timed = started.map_or(0, |at| CALL_TIMED | (at << CALL_START_SHIFT));
        Self((u64::from(probe) * CALL_PROBE) | timed)
    }

    #[inline]
    fn probe(self) -> bool {
        self.0 & CALL_PROBE != 0
    }

    #[inline]
    fn done(self) -> bool {
        self.0 & CALL_DONE != 0
    }

    #[inline]
    fn set_done(&mut self) {
        self.0 |= CALL_DONE;
    }

    /// The start, on the coarse clock (ms; exact below 2^61 ms).
    #[inline]
    fn started(self) -> Option<u64> {
        (self.0 & CALL_TIMED != 0).then_some(self.0 >> CALL_START_SHIFT)
    }
}

/// A permit borrowing its hot path: what [`HotPath::try_acquire`] and
/// [`Breaker::try_acquire`] hand out (see [`PermitOn`]).
pub type Permit<'a> = PermitOn<&'a HotPath>;

/// A permit holding a share of its breaker, so it borrows nothing and may be kept anywhere,
/// for as long as the call runs: what [`Breaker::try_acquire_owned`] hands out (see
/// [`PermitOn`]).
pub type OwnedPermit = PermitOn<Arc<HotPath>>;

impl Permit<'_> {
    /// The same permit, reaching its hot path through `hot` (the one it borrows, in another
    /// form) instead: the call's duty to report, and its probe slot, go with it.
    #[inline]
    fn reaching_through<H: Deref<Target = HotPath>>(mut self, hot: H) -> PermitOn<H> {
        debug_assert!(std::ptr::eq(&raw const *hot, self.hot), "a permit moves only to its own hot path");
        // This one hands over: dropping it must neither give the probe slot back nor record.
        let call = self.call;
        self.call.set_done();
        PermitOn {
            hot,
            word: self.word,
            #[cfg(loom)]
            writer: self.writer,
            call,
        }
    }
}

impl<H: Deref<Target = HotPath>> PermitOn<H> {
    /// Whether this call is a half-open probe.
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.call.probe()
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed.
    #[inline]
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The call ended in an excluded error: neutral. It is counted as ignored and judged
    /// by no rule; a half-open probe that ends so gives its slot back at once (it tells
    /// nothing about the dependency's recovery), so the node's grant can be used again in the
    /// same round and neutral outcomes never stall a round. What a grant bounds is probes
    /// in flight plus probes that ended in a success or a failure: the calls that reach the
    /// dependency in a round can be more, by the ignored and dropped ones.
    #[inline]
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// The call succeeded in `elapsed`, measured by the caller: it counts as slow if that is
    /// at least the slow-call threshold (the coarse clock is not consulted).
    #[inline]
    pub fn slow(mut self, elapsed: Duration) {
        self.call.set_done();
        if self.word.records() {
            self.hot.record(&self, Outcome::Success, Some(elapsed));
        }
    }

    /// Records `outcome` (a success taking at least the slow-call threshold, by the coarse
    /// clock, counts as slow). An ignored probe gives its slot back, as a dropped one does:
    /// see [`PermitOn::ignore`].
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.call.set_done();
        if self.word.records() {
            self.hot.record(&self, outcome, None);
        }
        if outcome == Outcome::Ignored && self.call.probe() {
            self.hot.probes.give_back(self.word);
        }
    }

    /// Records how a call that returned `result` went: a success, or what `classifier`
    /// makes of the error.
    #[inline]
    pub fn record_result<T, E, C: Classifier<E> + ?Sized>(self, result: &Result<T, E>, classifier: &C) {
        match result {
            Ok(_) => self.success(),
            Err(error) => self.record(classifier.classify(error)),
        }
    }

    /// Records how a call that returned `result` went, as `classifier` judges the whole
    /// result: an `Ok` response can be a failure (an HTTP 5xx), an error neutral. A success
    /// still counts as slow when it took at least the slow-call threshold.
    #[inline]
    pub fn record_classified<T, E, C: ResultClassifier<T, E> + ?Sized>(self, result: &Result<T, E>, classifier: &C) {
        self.record(classifier.classify_result(result));
    }

    /// The writer that records this permit's outcome: the thread recording it, which may not
    /// be the one that acquired it (an async call can move between worker threads).
    #[inline]
    #[cfg_attr(not(loom), expect(clippy::unused_self, reason = "only loom permits carry their writer"))]
    fn recorder(&self) -> Writer {
        #[cfg(loom)]
        return self.writer;
        #[cfg(not(loom))]
        counters::writer()
    }
}

impl<H: Deref<Target = HotPath>> Drop for PermitOn<H> {
    #[inline]
    fn drop(&mut self) {
        if !self.call.done() && self.call.probe() {
            self.hot.probes.give_back(self.word);
        }
    }
}

/// Decides which errors count as failures and which are neutral.
pub trait Classifier<E> {
    /// [`Outcome::Failure`] or [`Outcome::Ignored`] for this error.
    fn classify(&self, error: &E) -> Outcome;
}

/// Every error is a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllErrorsFail;

impl<E> Classifier<E> for AllErrorsFail {
    fn classify(&self, _: &E) -> Outcome {
        Outcome::Failure
    }
}

impl<E, F: Fn(&E) -> Outcome> Classifier<E> for F {
    fn classify(&self, error: &E) -> Outcome {
        self(error)
    }
}

/// Decides how a whole call result counts, `Ok` responses included: what lets a response
/// that reports a failure in-band (an HTTP 5xx, a gRPC error status) trip the breaker, as
/// tower-http's `ServerErrorsAsFailures` does. Implemented by closures over
/// `&Result<T, E>`, by [`AllErrorsFail`], by [`ErrorsOnly`] over a [`Classifier`], and (feature
/// `http`) by the classifiers in the `http` module.
///
/// What it returns is the outcome's kind only: a [`Outcome::Success`] still counts as slow
/// when the call took at least the slow-call threshold.
pub trait ResultClassifier<T, E> {
    /// [`Outcome::Success`], [`Outcome::Failure`] or [`Outcome::Ignored`] for this result.
    fn classify_result(&self, result: &Result<T, E>) -> Outcome;
}

/// A [`Classifier`] of errors as a [`ResultClassifier`]: every `Ok` is a success, every
/// error counts as the inner classifier says.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsOnly<C>(pub C);

impl<T, E, C: Classifier<E>> ResultClassifier<T, E> for ErrorsOnly<C> {
    #[inline]
    fn classify_result(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => self.0.classify(error),
        }
    }
}

impl<T, E> ResultClassifier<T, E> for AllErrorsFail {
    #[inline]
    fn classify_result(&self, result: &Result<T, E>) -> Outcome {
        if result.is_ok() { Outcome::Success } else { Outcome::Failure }
    }
}

impl<T, E, F: Fn(&Result<T, E>) -> Outcome> ResultClassifier<T, E> for F {
    #[inline]
    fn classify_result(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// What [`Breaker::call`] returns when it does not return the call's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker did not admit the call.
    Rejected(Rejected),
    /// The call ran and failed.
    Failed(E),
}

impl<E> CallError<E> {
    /// The rejection, if the breaker turned the call away.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(rejected) => Some(rejected),
            Self::Failed(_) => None,
        }
    }

    /// The call's own error, if it ran and failed.
    pub fn into_failure(self) -> Option<E> {
        match self {
            Self::Rejected(_) => None,
            Self::Failed(error) => Some(error),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => r.fmt(f),
            Self::Failed(e) => write!(f, "call failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Failed(e) => Some(e),
        }
    }
}

/// A cheap, cloneable handle to one breaker: what services hold.
#[derive(Debug, Clone)]
pub struct Breaker {
    hot: Arc<HotPath>,
}

impl Breaker {
    /// A handle over `hot`.
    pub fn new(hot: Arc<HotPath>) -> Self {
        Self { hot }
    }

    /// The breaker's name.
    pub fn name(&self) -> &BreakerName {
        self.hot.name()
    }

    /// The effective state on this node.
    pub fn state(&self) -> StateLabel {
        self.hot.state()
    }

    /// Admits a call or says why not; a rejection is counted as demand.
    #[expect(
        clippy::inline_always,
        reason = "the closed state's admission must land in the caller's code: measured, see BENCHMARKS.md"
    )]
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.hot.try_acquire()
    }

    /// [`Self::try_acquire`], for a permit that borrows nothing: it holds a share of the
    /// breaker (one reference-count increment, no allocation), so it can go into a `'static`
    /// future or to another thread. A rejection takes no share.
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        self.hot.try_acquire().map(|permit| permit.reaching_through(Arc::clone(&self.hot)))
    }

    /// Runs `call` if admitted; every error counts as a failure.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(&AllErrorsFail, call).await
    }

    /// Runs `call` if admitted; `classifier` decides which errors count as failures.
    pub async fn call_classified<T, E, F, C>(&self, classifier: &C, call: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: Classifier<E> + ?Sized,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = call.await;
        permit.record_result(&result, classifier);
        result.map_err(CallError::Failed)
    }

    /// Runs `call` if admitted; `classifier` judges the whole result, so an `Ok` response
    /// can count as a failure (an HTTP 5xx: see the `http` module, feature `http`). The
    /// response comes back as it is, whatever the classifier made of it.
    pub async fn call_result_classified<T, E, F, C>(&self, classifier: &C, call: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: ResultClassifier<T, E> + ?Sized,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = call.await;
        permit.record_classified(&result, classifier);
        result.map_err(CallError::Failed)
    }

    /// The shared hot path (for the runtime).
    pub fn hot_path(&self) -> &Arc<HotPath> {
        &self.hot
    }
}
