//! The hot path: what a service calls on every request. `try_acquire` reads the snapshot the
//! breaker actor installed and hands out a [`Permit`] or a typed [`Rejected`]; the permit
//! records the outcome into counters tagged with the snapshot generation, which the actor
//! drains on its flush tick and feeds to the machine as `LocalOutcomes`.
//!
//! The contract (what the actor, the registry and the benchmarks rely on):
//! - one writer installs snapshots ([`HotPath::install`]) and one drainer drains
//!   ([`HotPath::drain`]): the breaker actor; any number of threads acquire and record;
//! - every recorded outcome is drained exactly once, under the generation of the snapshot its
//!   permit was granted under, or counted in [`Drained::stale_calls`];
//! - a probe grant is a total for its probe round ([`Admission::Probe`]): across snapshot
//!   installs with the same round, at most `grant` probes are admitted; a dropped permit
//!   gives its probe slot back and records nothing;
//! - in the closed state, acquire and record take no lock, allocate nothing and read no
//!   clock; the coarse clock is read only when a slow-call threshold is configured.
//!
//! This first version is simple (a mutex) and correct; the lock-free version keeps the API.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::machine::{Admission, BreakerName, LocalOutcomes, OutcomeCounts, Snapshot, StateLabel, ValidConfig};
use crate::sync::{Arc, AtomicU64, Ordering};

/// Hot-path settings taken from the breaker's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HotSettings {
    /// Calls at least this long are slow (and need the coarse clock).
    pub slow_call_threshold_ms: Option<u64>,
    /// Whether consecutive-failure streaks are tracked (a rule needs them).
    pub track_streaks: bool,
}

impl HotSettings {
    /// The settings a validated config needs.
    pub fn from_config(config: &ValidConfig) -> Self {
        let streaks = |c: &crate::machine::ValidConfig| {
            c.fleet.rules.consecutive_failures.is_some()
                || c.local.as_ref().is_some_and(|l| l.rules.consecutive_failures.is_some())
        };
        Self { slow_call_threshold_ms: config.slow_call_threshold_ms, track_streaks: streaks(config) }
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
pub enum RejectReason {
    /// The breaker is open (or forced open, or the outage policy rejects).
    Open,
    /// Half-open, and this node's probes for the round are taken.
    NoProbeLeft,
    /// Ramping back, and this call is outside the admitted share.
    NotAdmitted,
    /// The breaker was shut down.
    ShutDown,
}

/// A call the breaker did not admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The effective state.
    pub state: StateLabel,
    /// Why.
    pub reason: RejectReason,
    /// When the state may change, if known.
    pub retry_after: Option<Duration>,
    /// The breaker.
    pub breaker: BreakerName,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "breaker {} rejected the call ({}, {:?})", self.breaker, self.state.as_str(), self.reason)?;
        if let Some(after) = self.retry_after {
            write!(f, "; retry after {} ms", after.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

#[derive(Debug)]
struct Inner {
    snapshot: Snapshot,
    probe_round: Option<u64>,
    probes_issued: u32,
    fraction_acc: u32,
    pending: BTreeMap<u64, OutcomeCounts>,
    streak: u64,
    longest: u64,
    closed: bool,
}

/// One breaker's hot-path state on this node.
#[derive(Debug)]
pub struct HotPath {
    name: BreakerName,
    settings: HotSettings,
    clock: CoarseClock,
    inner: Mutex<Inner>,
}

/// What a drain collected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drained {
    /// Per generation with anything recorded, oldest first.
    pub outcomes: Vec<LocalOutcomes>,
    /// Calls recorded too late to attribute to their generation.
    pub stale_calls: u64,
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
    }
}

impl HotPath {
    /// A closed hot path (generation 1, as a new machine's first snapshot).
    pub fn new(name: BreakerName, settings: HotSettings, clock: CoarseClock) -> Self {
        let inner = Inner {
            snapshot: initial_snapshot(),
            probe_round: None,
            probes_issued: 0,
            fraction_acc: 0,
            pending: BTreeMap::new(),
            streak: 0,
            longest: 0,
            closed: false,
        };
        Self { name, settings, clock, inner: Mutex::new(inner) }
    }

    /// The breaker's name.
    pub fn name(&self) -> &BreakerName {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only counters behind: keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Installs a snapshot from the machine (the actor is the only caller).
    pub fn install(&self, snapshot: &Snapshot) {
        let mut inner = self.lock();
        let round = match snapshot.admission {
            Admission::Probe { round, .. } => Some(round),
            _ => None,
        };
        if round.is_some() && round != inner.probe_round {
            inner.probe_round = round;
            inner.probes_issued = 0;
        }
        inner.snapshot = *snapshot;
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot
    }

    /// Stops admitting calls for good: every acquire is rejected as shut down.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Takes everything recorded since the last drain.
    pub fn drain(&self) -> Drained {
        let mut inner = self.lock();
        let streak = inner.streak;
        let longest = std::mem::replace(&mut inner.longest, streak);
        let pending = std::mem::take(&mut inner.pending);
        let outcomes = pending
            .into_iter()
            .map(|(generation, counts)| LocalOutcomes { generation, counts, longest_failure_streak: longest })
            .collect();
        Drained { outcomes, stale_calls: 0 }
    }

    /// Admits a call or says why not. A rejected call is counted (as demand: the decider
    /// grants probes to nodes that were turning calls away).
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let mut inner = self.lock();
        let snapshot = inner.snapshot;
        if inner.closed {
            let (state, breaker) = (snapshot.state, self.name.clone());
            return Err(Rejected { state, reason: RejectReason::ShutDown, retry_after: None, breaker });
        }
        let verdict = match snapshot.admission {
            Admission::Allow => Ok(false),
            Admission::Reject => Err(RejectReason::Open),
            Admission::Probe { grant, .. } if inner.probes_issued < grant => {
                inner.probes_issued += 1;
                Ok(true)
            }
            Admission::Probe { .. } => Err(RejectReason::NoProbeLeft),
            Admission::Fraction { per_mille } => {
                inner.fraction_acc += u32::from(per_mille);
                if inner.fraction_acc >= 1000 {
                    inner.fraction_acc -= 1000;
                    Ok(false)
                } else {
                    Err(RejectReason::NotAdmitted)
                }
            }
        };
        let probe = match verdict {
            Ok(probe) => probe,
            Err(reason) => {
                if snapshot.record {
                    inner.pending.entry(snapshot.generation).or_default().rejected += 1;
                }
                let now = self.clock.now_ms();
                return Err(Rejected {
                    state: snapshot.state,
                    reason,
                    retry_after: snapshot.retry_at.map(|at| Duration::from_millis(at.0.saturating_sub(now))),
                    breaker: self.name.clone(),
                });
            }
        };
        drop(inner);
        let started = self.settings.slow_call_threshold_ms.map(|_| self.clock.now_ms());
        Ok(Permit { hot: self, generation: snapshot.generation, record: snapshot.record, probe, started, done: false })
    }

    fn record(&self, generation: u64, outcome: Outcome, slow: bool) {
        let mut inner = self.lock();
        let counts = inner.pending.entry(generation).or_default();
        match outcome {
            Outcome::Success if slow => counts.slow += 1,
            Outcome::Success => counts.success += 1,
            Outcome::Failure => counts.failure += 1,
            Outcome::Ignored => counts.ignored += 1,
        }
        if self.settings.track_streaks {
            match outcome {
                Outcome::Failure => {
                    inner.streak += 1;
                    inner.longest = inner.longest.max(inner.streak);
                }
                Outcome::Success => inner.streak = 0,
                Outcome::Ignored => {}
            }
        }
    }

    fn release_probe(&self) {
        let mut inner = self.lock();
        inner.probes_issued = inner.probes_issued.saturating_sub(1);
    }
}

/// Permission for one call. Record how it went with [`Permit::success`],
/// [`Permit::failure`], [`Permit::ignore`] or [`Permit::record`]; dropping it records nothing
/// and gives a probe slot back.
#[derive(Debug)]
#[must_use = "a permit records nothing unless its outcome is reported"]
pub struct Permit<'a> {
    hot: &'a HotPath,
    generation: u64,
    record: bool,
    probe: bool,
    started: Option<u64>,
    done: bool,
}

impl Permit<'_> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The call ended in an excluded error: neutral.
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// Records `outcome` (a success taking at least the slow-call threshold counts as slow).
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        if !self.record {
            return;
        }
        let slow = match (self.started, self.hot.settings.slow_call_threshold_ms) {
            (Some(start), Some(threshold)) => self.hot.clock.now_ms().saturating_sub(start) >= threshold,
            _ => false,
        };
        self.hot.record(self.generation, outcome, slow);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.hot.release_probe();
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

/// What [`Breaker::call`] returns when it does not return the call's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker did not admit the call.
    Rejected(Rejected),
    /// The call ran and failed.
    Failed(E),
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
        self.hot.snapshot().state
    }

    /// Admits a call or says why not; a rejection is counted as demand.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.hot.try_acquire()
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
        match call.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(error) => {
                permit.record(classifier.classify(&error));
                Err(CallError::Failed(error))
            }
        }
    }

    /// The shared hot path (for the runtime).
    pub fn hot_path(&self) -> &Arc<HotPath> {
        &self.hot
    }
}
