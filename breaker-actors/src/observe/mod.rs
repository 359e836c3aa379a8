//! Observability of the runtime: `tracing` events for transitions, decisions, leases and
//! outages; rate-limited rejection summaries; the event subscription
//! ([`BreakerEvent`] on a `tokio::sync::broadcast` channel); and the `metrics` facade's
//! counters, gauges and histograms. No exporter is installed: whatever recorder the
//! application installs receives them (install it before starting the registry: a breaker's
//! series are registered, and their handles kept, when the breaker is created).
//!
//! Every metric's name, type, unit, labels and help text is in [`names`], the one table;
//! `docs/metrics.md` lists them for operators (a test keeps the two equal) and says how to
//! scrape them. [`BreakerMetrics`] holds one breaker's handles: made when the breaker is
//! created, it registers every per-breaker series with every value of its labels (so a
//! scrape right after shows them all, and `rate()` works from the first one), and the actor,
//! the registry and the hot path ([`CallMetrics`]) record through it without a key lookup.
//! Label values come from closed enums only: the cardinality is bounded per breaker.

use std::time::Duration;

pub mod names;

use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::hot::{CallMetrics, REJECTION_REASONS_DRAINED, RejectReason};
use crate::machine::{
    BreakerName, Event, Ignored, InputError, Judge, Machine, NodeId, OutcomeCounts, StateLabel, StepDownReason,
    ValidConfig,
};

/// Events kept for slow subscribers before they start missing some.
pub const EVENT_CAPACITY: usize = 1024;

/// How often at most a breaker logs a summary of the calls it rejected.
pub const REJECTION_SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// A machine event, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The breaker.
    pub breaker: BreakerName,
    /// The node.
    pub node: NodeId,
    /// What happened.
    pub event: Event,
}

/// The `outcome` values of [`names::CALLS`], in [`OutcomeCounts`]' order.
pub const CALL_OUTCOMES: [&str; 5] = ["success", "failure", "slow", "ignored", "rejected"];

/// The `outcome` values of [`names::CALL_DURATION`] (calls the breaker admitted and timed),
/// in [`CallMetrics::durations`]' order.
pub const TIMED_OUTCOMES: [&str; 4] = ["success", "failure", "slow", "ignored"];

/// The `scope` values of [`names::FAILURE_RATE`] and [`names::SLOW_CALL_RATE`].
pub const SCOPES: [&str; 2] = ["fleet", "local"];

/// The `kind` values of [`names::STALE_INPUTS`], as [`ignored_kind`] names them.
pub const IGNORED_KINDS: [&str; 7] = [
    "stale_outcomes",
    "stale_decision",
    "stale_report",
    "duplicate_report",
    "command_not_deciding",
    "stale_lease",
    "lease_before_bootstrap",
];

/// The `kind` values of [`names::REFUSED_INPUTS`], as [`refused_kind`] names them.
pub const REFUSED_KINDS: [&str; 8] = [
    "wrong_breaker",
    "unsupported_version",
    "malformed_clock",
    "malformed_decision",
    "text_too_long",
    "bad_override",
    "decision_from_future",
    "report_from_future",
];

fn ignored_index(what: &Ignored) -> usize {
    match what {
        Ignored::StaleOutcomes { .. } => 0,
        Ignored::StaleDecision { .. } => 1,
        Ignored::StaleReport => 2,
        Ignored::DuplicateReport => 3,
        Ignored::CommandNotDeciding => 4,
        Ignored::StaleLease { .. } => 5,
        Ignored::LeaseBeforeBootstrap { .. } => 6,
    }
}

fn refused_index(what: &InputError) -> usize {
    match what {
        InputError::WrongBreaker { .. } => 0,
        InputError::UnsupportedVersion { .. } => 1,
        InputError::MalformedClock => 2,
        InputError::MalformedDecision => 3,
        InputError::TextTooLong => 4,
        InputError::BadOverride => 5,
        InputError::DecisionFromFuture { .. } => 6,
        InputError::ReportFromFuture { .. } => 7,
    }
}

/// The `kind` label of an ignored input.
pub fn ignored_kind(what: &Ignored) -> &'static str {
    IGNORED_KINDS[ignored_index(what)]
}

/// The `kind` label of a refused input.
pub fn refused_kind(what: &InputError) -> &'static str {
    REFUSED_KINDS[refused_index(what)]
}

/// A ratio as a gauge value: `part / total`, 0 when `total` is 0.
#[allow(clippy::cast_precision_loss, reason = "a ratio of counts, not a count")]
fn ratio(part: u128, total: u128) -> f64 {
    if total == 0 { 0.0 } else { part as f64 / total as f64 }
}

/// `(failure rate, slow-call rate)` of a judge's window at the machine's last step.
fn rates(judge: Option<&Judge>, machine: &Machine) -> (f64, f64) {
    judge.map_or((0.0, 0.0), |judge| {
        let (decisive, failed, slow) = judge.window_totals(machine.now());
        (ratio(failed, decisive), ratio(slow, decisive))
    })
}

/// One breaker's series on this node: every per-breaker metric of [`names::ALL`], with every
/// value of its labels, registered when it is made (counters at 0, gauges set, histograms
/// registered empty). The handles are kept: recording is an atomic operation on the
/// recorder's cell, no key lookup and no allocation. Made once per breaker (a restarted
/// actor keeps its breaker's), before its actor starts, under the recorder installed then.
#[derive(Debug)]
pub struct BreakerMetrics {
    breaker: SharedString,
    node: SharedString,
    state: [Gauge; 8],
    /// The failure-rate and slow-call-rate thresholds, once a config set them.
    thresholds: std::sync::Mutex<[Option<Gauge>; 2]>,
    failure_rate: [Gauge; 2],
    slow_call_rate: [Gauge; 2],
    calls: [Counter; 5],
    call: CallMetrics,
    rejections: [Counter; 5],
    decisions_applied: Counter,
    transitions: [Counter; 8],
    decisions_made: [Counter; 8],
    _propagation_lag: Histogram,
    deciding: Gauge,
    term: Gauge,
    lease_suspensions: Counter,
    step_downs: [Counter; 5],
    reports_published: Counter,
    reports_merged: Counter,
    reports_lost: Counter,
    refused_inputs: [Counter; 8],
    stale_inputs: [Counter; 7],
    config_version: Gauge,
    config_followed: Counter,
    config_refused: Counter,
    actor_restarts: Counter,
    streak_trips_undone: Counter,
}

impl BreakerMetrics {
    /// Registers every series of `breaker` on `node` with the recorder installed now, the
    /// config's thresholds and version set.
    pub fn new(breaker: &BreakerName, node: &NodeId, config: &ValidConfig) -> Self {
        let b: SharedString = std::sync::Arc::<str>::from(breaker.as_str()).into();
        let n: SharedString = std::sync::Arc::<str>::from(node.as_str()).into();
        let labels = |extra: Option<(&'static str, &'static str)>| {
            let mut labels = vec![Label::new("breaker", b.clone()), Label::new("node", n.clone())];
            if let Some((key, value)) = extra {
                labels.push(Label::from_static_parts(key, value));
            }
            labels
        };
        let counter = |name: &'static str, extra| {
            let counter = metrics::counter!(name, labels(extra));
            counter.increment(0);
            counter
        };
        let gauge = |name: &'static str, extra, value: f64| {
            let gauge = metrics::gauge!(name, labels(extra));
            gauge.set(value);
            gauge
        };
        let histogram = |name: &'static str, extra| metrics::histogram!(name, labels(extra));
        let by_state = |name: &'static str, key: &'static str| {
            StateLabel::ALL.map(|state| counter(name, Some((key, state.as_str()))))
        };
        let metrics = Self {
            state: StateLabel::ALL.map(|state| gauge(names::STATE, Some(("state", state.as_str())), 0.0)),
            failure_rate: SCOPES.map(|scope| gauge(names::FAILURE_RATE, Some(("scope", scope)), 0.0)),
            slow_call_rate: SCOPES.map(|scope| gauge(names::SLOW_CALL_RATE, Some(("scope", scope)), 0.0)),
            calls: CALL_OUTCOMES.map(|outcome| counter(names::CALLS, Some(("outcome", outcome)))),
            call: CallMetrics {
                durations: TIMED_OUTCOMES.map(|outcome| histogram(names::CALL_DURATION, Some(("outcome", outcome)))),
                shut_down_rejections: counter(names::REJECTIONS, Some(("reason", RejectReason::ShutDown.as_str()))),
            },
            rejections: RejectReason::ALL.map(|reason| counter(names::REJECTIONS, Some(("reason", reason.as_str())))),
            decisions_applied: counter(names::DECISIONS_APPLIED, None),
            transitions: by_state(names::TRANSITIONS, "to"),
            decisions_made: by_state(names::DECISIONS_MADE, "state"),
            _propagation_lag: histogram(names::PROPAGATION_LAG, None),
            deciding: gauge(names::DECIDING, None, 0.0),
            term: gauge(names::TERM, None, 0.0),
            lease_suspensions: counter(names::LEASE_SUSPENSIONS, None),
            step_downs: StepDownReason::LABELS.map(|reason| counter(names::STEP_DOWNS, Some(("reason", reason)))),
            reports_published: counter(names::REPORTS_PUBLISHED, None),
            reports_merged: counter(names::REPORTS_MERGED, None),
            reports_lost: counter(names::REPORTS_LOST, None),
            refused_inputs: REFUSED_KINDS.map(|kind| counter(names::REFUSED_INPUTS, Some(("kind", kind)))),
            stale_inputs: IGNORED_KINDS.map(|kind| counter(names::STALE_INPUTS, Some(("kind", kind)))),
            config_version: gauge(names::CONFIG_VERSION, None, 0.0),
            config_followed: counter(names::CONFIG_FOLLOWED, None),
            config_refused: counter(names::CONFIG_REFUSED, None),
            actor_restarts: counter(names::ACTOR_RESTARTS, None),
            streak_trips_undone: counter(names::STREAK_TRIPS_UNDONE, None),
            thresholds: std::sync::Mutex::new([None, None]),
            breaker: b,
            node: n,
        };
        metrics.show_state(None, StateLabel::Closed);
        metrics.configured(config);
        metrics
    }

    /// Handles with no recorder behind them (tests, a hot path without a registry).
    pub fn noop(breaker: &BreakerName, node: &NodeId, config: &ValidConfig) -> Self {
        metrics::with_local_recorder(&metrics::NoopRecorder, || Self::new(breaker, node, config))
    }

    /// The handles the hot path records into.
    pub fn call_metrics(&self) -> CallMetrics {
        self.call.clone()
    }

    /// Sets the state series: `state` to 1, the one shown before (`None`: every other) to 0.
    pub fn show_state(&self, before: Option<StateLabel>, state: StateLabel) {
        match before {
            Some(before) if before == state => return,
            Some(before) => self.state[before.index()].set(0.0),
            None => {
                for other in StateLabel::ALL {
                    self.state[other.index()].set(0.0);
                }
            }
        }
        self.state[state.index()].set(1.0);
    }

    /// Sets the thresholds (the fleet rules') and the config version from the config the
    /// breaker runs on. A threshold the config does not set is not registered; one that a
    /// config change took away reads NaN (any comparison with it is false) from then on.
    pub fn configured(&self, config: &ValidConfig) {
        let rules = &config.fleet.rules;
        let mut thresholds = self.thresholds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let names = [names::FAILURE_RATE_THRESHOLD, names::SLOW_CALL_RATE_THRESHOLD];
        for ((name, threshold), gauge) in
            names.into_iter().zip([rules.failure_rate, rules.slow_call_rate]).zip(thresholds.iter_mut())
        {
            match (threshold, gauge.as_ref()) {
                (Some(ppm), _) => {
                    gauge.get_or_insert_with(|| metrics::gauge!(name, self.labels())).set(f64::from(ppm.0) / 1e6);
                }
                (None, Some(gauge)) => gauge.set(f64::NAN),
                (None, None) => {}
            }
        }
        #[allow(clippy::cast_precision_loss, reason = "versions far below 2^52")]
        self.config_version.set(config.version as f64);
    }

    fn labels(&self) -> Vec<Label> {
        vec![Label::new("breaker", self.breaker.clone()), Label::new("node", self.node.clone())]
    }

    /// Counts drained outcomes and their rejections by reason.
    pub fn record_calls(&self, counts: &OutcomeCounts) {
        for (counter, n) in
            self.calls.iter().zip([counts.success, counts.failure, counts.slow, counts.ignored, counts.rejected])
        {
            if n > 0 {
                counter.increment(n);
            }
        }
    }

    /// Counts drained rejections by reason ([`crate::hot::Drained::rejections`]).
    pub fn record_rejections(&self, by_reason: &[u64; REJECTION_REASONS_DRAINED]) {
        for (counter, n) in self.rejections.iter().zip(by_reason) {
            if *n > 0 {
                counter.increment(*n);
            }
        }
    }

    /// Sets the gauges the machine's state gives after a step: deciding, the applied
    /// decision's term, the windows' failure and slow-call rates (fleet: the decider's window,
    /// 0 while not deciding; local: the overlay's, 0 without one); and counts the reports
    /// merged since `merged_before` (the machine's count then), returning the count now.
    pub fn machine_stepped(&self, machine: &Machine, merged_before: u64) -> u64 {
        let deciding = machine.is_deciding();
        self.deciding.set(if deciding { 1.0 } else { 0.0 });
        #[allow(clippy::cast_precision_loss, reason = "terms far below 2^52")]
        self.term.set(machine.applied_id().term.0 as f64);
        let (fleet_failed, fleet_slow) = rates(machine.fleet_judge().filter(|_| deciding), machine);
        let (local_failed, local_slow) = rates(machine.local_judge(), machine);
        self.failure_rate[0].set(fleet_failed);
        self.failure_rate[1].set(local_failed);
        self.slow_call_rate[0].set(fleet_slow);
        self.slow_call_rate[1].set(local_slow);
        let merged = machine.stats().reports_counted;
        let new = merged.saturating_sub(merged_before);
        if new > 0 {
            self.reports_merged.increment(new);
        }
        merged
    }

    /// A report handed to the transport.
    pub fn report_published(&self) {
        self.reports_published.increment(1);
    }

    /// A report that could not be published.
    pub fn report_lost(&self) {
        self.reports_lost.increment(1);
    }

    /// The fleet's config won over this node's at registration.
    pub fn config_followed(&self) {
        self.config_followed.increment(1);
    }

    /// A fleet config refused as invalid here.
    pub fn config_refused(&self) {
        self.config_refused.increment(1);
    }

    /// The breaker's actor was restarted after a panic.
    pub fn actor_restarted(&self) {
        self.actor_restarts.increment(1);
    }

    /// A hot-path streak trip the machine did not follow.
    pub fn streak_trip_undone(&self) {
        self.streak_trips_undone.increment(1);
    }

    /// Counts what a machine event says.
    pub fn event(&self, event: &Event) {
        match event {
            Event::Applied { from, to, .. } => {
                self.decisions_applied.increment(1);
                if from != to {
                    self.transitions[to.index()].increment(1);
                }
            }
            Event::Decided { state, .. } => self.decisions_made[state.index()].increment(1),
            Event::LeaseSuspended { .. } => self.lease_suspensions.increment(1),
            Event::SteppedDown { reason, .. } => self.step_downs[reason.index()].increment(1),
            Event::Reconfigured { to, .. } => {
                #[allow(clippy::cast_precision_loss, reason = "versions far below 2^52")]
                self.config_version.set(*to as f64);
            }
            Event::Refused(e) => self.refused_inputs[refused_index(e)].increment(1),
            Event::Ignored(what) => {
                let n = match what {
                    Ignored::StaleOutcomes { calls } => *calls,
                    _ => 1,
                };
                self.stale_inputs[ignored_index(what)].increment(n);
            }
            _ => {}
        }
    }
}

/// The registry's event fan-out: one per registry, shared by its actors.
#[derive(Debug, Clone)]
pub struct Observer {
    node: NodeId,
    events: broadcast::Sender<BreakerEvent>,
}

impl Observer {
    /// An observer for `node`.
    pub fn new(node: NodeId) -> Self {
        Self { node, events: broadcast::Sender::new(EVENT_CAPACITY) }
    }

    /// A new subscription to every breaker's events.
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.events.subscribe()
    }

    /// Logs, counts (into `metrics`, the breaker's series) and broadcasts one machine event.
    pub fn emit(&self, breaker: &BreakerName, metrics: &BreakerMetrics, event: Event) {
        let b = breaker.as_str();
        let node = self.node.as_str();
        metrics.event(&event);
        match &event {
            Event::Applied { id, from, to, reason } => {
                tracing::info!(breaker = b, node, %id, from = from.as_str(), to = to.as_str(), ?reason, "decision applied");
            }
            Event::EffectiveChanged { from, to } => {
                tracing::debug!(breaker = b, node, from = from.as_str(), to = to.as_str(), "effective state changed");
            }
            Event::LocalTransition { from, to } => {
                tracing::info!(breaker = b, node, from = from.as_str(), to = to.as_str(), "local overlay transition");
            }
            Event::LocalFolded { id } => tracing::debug!(breaker = b, node, %id, "local trip folded into the fleet"),
            Event::Decided { id, state } => {
                tracing::info!(breaker = b, node, %id, state = state.as_str(), "decision made");
            }
            Event::WouldTrip { rule } => tracing::info!(breaker = b, node, ?rule, "metrics-only breaker would trip"),
            Event::LeaseGained { term } => tracing::info!(breaker = b, node, term = term.0, "deciding"),
            Event::LeaseSuspended { term } => {
                tracing::warn!(breaker = b, node, term = term.0, "lease renewal overdue: deciding paused");
            }
            Event::SteppedDown { term, reason } => {
                tracing::info!(breaker = b, node, term = term.0, ?reason, "stepped down");
            }
            Event::OutageBegan => tracing::warn!(breaker = b, node, "connection lost"),
            Event::OutagePolicyApplied { policy } => {
                tracing::warn!(breaker = b, node, ?policy, "outage policy in force");
            }
            Event::OutageEnded => tracing::info!(breaker = b, node, "connection back"),
            Event::Reconfigured { from, to } => {
                tracing::info!(breaker = b, node, from, to, "running on another config version");
            }
            Event::Refused(e) => tracing::warn!(breaker = b, node, error = ?e, "input refused"),
            Event::Ignored(what) => tracing::trace!(breaker = b, node, ?what, "input ignored"),
        }
        // No subscriber is not an error.
        let _ = self.events.send(BreakerEvent { breaker: breaker.clone(), node: self.node.clone(), event });
    }
}

/// Per-breaker rejection summaries, logged at most once per [`REJECTION_SUMMARY_EVERY`].
#[derive(Debug)]
pub struct CallStats {
    breaker: BreakerName,
    rejected_since_log: u64,
    last_log: Option<Instant>,
}

impl CallStats {
    /// Accounting for `breaker`.
    pub fn new(breaker: BreakerName) -> Self {
        Self { breaker, rejected_since_log: 0, last_log: None }
    }

    /// Counts drained outcomes into `metrics` and towards the next summary.
    pub fn record(&mut self, metrics: &BreakerMetrics, counts: &OutcomeCounts) {
        metrics.record_calls(counts);
        self.rejected_since_log = self.rejected_since_log.saturating_add(counts.rejected);
    }

    /// Logs the rejection summary if one is due.
    pub fn maybe_summarise(&mut self, state: StateLabel) {
        if self.rejected_since_log == 0 {
            return;
        }
        let now = Instant::now();
        if self.last_log.is_some_and(|at| now.duration_since(at) < REJECTION_SUMMARY_EVERY) {
            return;
        }
        tracing::info!(
            breaker = self.breaker.as_str(),
            rejected = self.rejected_since_log,
            state = state.as_str(),
            "calls rejected"
        );
        self.rejected_since_log = 0;
        self.last_log = Some(now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;
    use crate::machine::{DecisionId, Reason};

    /// Keeps every counter and gauge by its rendered key, and every key registered.
    #[derive(Default)]
    struct Tiny(Mutex<BTreeMap<String, Arc<Cell>>>, Mutex<Vec<(String, Vec<String>)>>);

    #[derive(Default)]
    struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::SeqCst);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::SeqCst);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        fn set(&self, value: f64) {
            self.0.store(value as u64, Ordering::SeqCst);
        }
    }

    impl Tiny {
        fn keys(&self) -> Vec<(String, Vec<String>)> {
            self.1.lock().unwrap().clone()
        }

        fn note(&self, key: &Key) {
            let labels = key.labels().map(|l| l.key().to_owned()).collect();
            self.1.lock().unwrap().push((key.name().to_owned(), labels));
        }

        fn cell(&self, key: &Key) -> Arc<Cell> {
            self.note(key);
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            self.0.lock().unwrap().entry(name).or_default().clone()
        }

        fn get(&self, name: &str) -> Option<u64> {
            self.0.lock().unwrap().get(name).map(|c| c.0.load(Ordering::SeqCst))
        }
    }

    impl Recorder for Tiny {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.note(key);
            Histogram::noop()
        }
    }

    #[tokio::test]
    async fn events_are_counted_and_broadcast() {
        let recorder = Tiny::default();
        let breaker = BreakerName::new("db").unwrap();
        let node = NodeId::new("n1").unwrap();
        let config = crate::machine::BreakerConfig::default().validate().unwrap();
        let observer = Observer::new(node.clone());
        let mut events = observer.subscribe();
        metrics::with_local_recorder(&recorder, || {
            let metrics = BreakerMetrics::new(&breaker, &node, &config);
            assert_eq!(recorder.get("fusebox_decisions_applied_total{breaker=db,node=n1}"), Some(0), "registered");
            assert_eq!(recorder.get("fusebox_state{breaker=db,node=n1,state=closed}"), Some(1));
            assert_eq!(recorder.get("fusebox_state{breaker=db,node=n1,state=open}"), Some(0));
            assert_eq!(recorder.get("fusebox_failure_rate_threshold{breaker=db,node=n1}"), Some(0), "0.5 as a u64");
            assert_eq!(recorder.get("fusebox_slow_call_rate_threshold{breaker=db,node=n1}"), None, "none set");
            let applied = |from, to| Event::Applied { id: DecisionId::new(1, 1), from, to, reason: Reason::Initial };
            observer.emit(&breaker, &metrics, applied(StateLabel::Closed, StateLabel::Closed));
            observer.emit(&breaker, &metrics, applied(StateLabel::Closed, StateLabel::Open));
            observer.emit(&breaker, &metrics, Event::Ignored(Ignored::StaleOutcomes { calls: 7 }));
            observer.emit(
                &breaker,
                &metrics,
                Event::SteppedDown { term: crate::machine::Term(1), reason: StepDownReason::WritesFailing },
            );
            let mut calls = CallStats::new(breaker.clone());
            calls.record(&metrics, &OutcomeCounts { success: 3, rejected: 2, ..OutcomeCounts::default() });
            metrics.record_rejections(&[1, 0, 0, 1]);
            metrics.show_state(Some(StateLabel::Closed), StateLabel::Open);
        });
        assert_eq!(recorder.get("fusebox_decisions_applied_total{breaker=db,node=n1}"), Some(2));
        assert_eq!(recorder.get("fusebox_transitions_total{breaker=db,node=n1,to=open}"), Some(1));
        assert_eq!(recorder.get("fusebox_transitions_total{breaker=db,node=n1,to=closed}"), Some(0));
        assert_eq!(recorder.get("fusebox_stale_inputs_total{breaker=db,node=n1,kind=stale_outcomes}"), Some(7));
        assert_eq!(recorder.get("fusebox_step_downs_total{breaker=db,node=n1,reason=writes_failing}"), Some(1));
        assert_eq!(recorder.get("fusebox_calls_total{breaker=db,node=n1,outcome=success}"), Some(3));
        assert_eq!(recorder.get("fusebox_calls_total{breaker=db,node=n1,outcome=rejected}"), Some(2));
        assert_eq!(recorder.get("fusebox_rejections_total{breaker=db,node=n1,reason=open}"), Some(1));
        assert_eq!(recorder.get("fusebox_rejections_total{breaker=db,node=n1,reason=not_admitted}"), Some(1));
        assert_eq!(recorder.get("fusebox_rejections_total{breaker=db,node=n1,reason=shut_down}"), Some(0));
        let states: Vec<u64> = StateLabel::ALL
            .iter()
            .map(|s| recorder.get(&format!("fusebox_state{{breaker=db,node=n1,state={}}}", s.as_str())).unwrap())
            .collect();
        assert_eq!(states, [0, 0, 1, 0, 0, 0, 0, 0], "one 1, for open");
        let first = events.recv().await.unwrap();
        assert_eq!((first.breaker.as_str(), first.node.as_str()), ("db", "n1"));
    }

    /// Every per-breaker metric of the table is registered with the table's labels, and
    /// nothing else is.
    #[test]
    fn a_new_breaker_registers_every_per_breaker_series_of_the_table() {
        let recorder = Tiny::default();
        let breaker = BreakerName::new("db").unwrap();
        let node = NodeId::new("n1").unwrap();
        let config = crate::machine::BreakerConfig::builder()
            .slow_call_threshold(Duration::from_millis(100))
            .slow_call_rate(0.5)
            .build()
            .unwrap()
            .validate()
            .unwrap();
        metrics::with_local_recorder(&recorder, || drop(BreakerMetrics::new(&breaker, &node, &config)));
        let keys = recorder.keys();
        for spec in names::ALL.iter().filter(|s| s.labels.starts_with(&["breaker", "node"])) {
            let mine: Vec<&(String, Vec<String>)> = keys.iter().filter(|(name, _)| name == spec.name).collect();
            assert!(!mine.is_empty(), "{} is not registered", spec.name);
            for (_, labels) in mine {
                assert_eq!(labels, &spec.labels.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(), "{}", spec.name);
            }
        }
        for (name, _) in &keys {
            assert!(names::ALL.iter().any(|s| s.name == name), "{name} is not in the table");
        }
    }
}
