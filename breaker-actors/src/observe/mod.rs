//! Observability of the runtime: `tracing` events for transitions, decisions, leases and
//! outages; rate-limited rejection summaries; the event subscription
//! ([`BreakerEvent`] on a `tokio::sync::broadcast` channel); and `metrics` facade
//! counters and gauges. No exporter is installed: whatever recorder the application
//! installs receives them.
//!
//! Metric names (labels: `breaker`, plus the one listed):
//! - `fusebox_calls_total{outcome}`: calls by outcome (`success`, `failure`, `slow`,
//!   `ignored`, `rejected`), counted when the hot path is drained;
//! - `fusebox_rejections_total`: calls the breaker turned away;
//! - `fusebox_decisions_applied_total`: fleet decisions applied (once per node each);
//! - `fusebox_transitions_total{from, to}`: those of them that changed the fleet state;
//! - `fusebox_decisions_total{state}`: decisions made by this node as decider;
//! - `fusebox_state`: the effective state (0 closed, 1 ramping, 2 half-open, 3 open,
//!   4 forced-open, 5 forced-closed, 6 disabled, 7 metrics-only);
//! - `fusebox_term`: the lease term this node decides under (0: not deciding);
//! - `fusebox_stale_inputs_total{kind}`: valid inputs with nothing to act on;
//! - `fusebox_refused_inputs_total{kind}`: inputs refused as malformed or impossible;
//! - `fusebox_config_version`: the config version the breaker runs on, set when it
//!   switches (`docs/tuning.md`);
//! - `fusebox_config_followed_total`: registrations whose local config lost to the fleet's
//!   (an older version, or an operator's), which the node follows;
//! - `fusebox_actor_restarts_total`: breaker actors restarted after a panic;
//! - `fusebox_streak_trips_undone_total`: hot-path trips on the overlay's streak that the
//!   machine, fed the run, did not follow (it had moved on): its snapshot was reinstalled.

use std::time::Duration;

pub mod names;

use metrics::{counter, gauge};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::machine::{BreakerName, Event, Ignored, InputError, NodeId, OutcomeCounts, StateLabel};

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

/// The gauge value of a state (see the module documentation).
pub fn state_code(state: StateLabel) -> f64 {
    match state {
        StateLabel::Closed => 0.0,
        StateLabel::Ramping => 1.0,
        StateLabel::HalfOpen => 2.0,
        StateLabel::Open => 3.0,
        StateLabel::ForcedOpen => 4.0,
        StateLabel::ForcedClosed => 5.0,
        StateLabel::Disabled => 6.0,
        StateLabel::MetricsOnly => 7.0,
    }
}

fn ignored_kind(what: &Ignored) -> &'static str {
    match what {
        Ignored::StaleOutcomes { .. } => "stale_outcomes",
        Ignored::StaleDecision { .. } => "stale_decision",
        Ignored::StaleReport => "stale_report",
        Ignored::DuplicateReport => "duplicate_report",
        Ignored::CommandNotDeciding => "command_not_deciding",
        Ignored::StaleLease { .. } => "stale_lease",
        Ignored::LeaseBeforeBootstrap { .. } => "lease_before_bootstrap",
    }
}

fn refused_kind(what: &InputError) -> &'static str {
    match what {
        InputError::WrongBreaker { .. } => "wrong_breaker",
        InputError::UnsupportedVersion { .. } => "unsupported_version",
        InputError::MalformedClock => "malformed_clock",
        InputError::MalformedDecision => "malformed_decision",
        InputError::TextTooLong => "text_too_long",
        InputError::BadOverride => "bad_override",
        InputError::DecisionFromFuture { .. } => "decision_from_future",
        InputError::ReportFromFuture { .. } => "report_from_future",
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

    /// Logs, counts and broadcasts one machine event.
    pub fn emit(&self, breaker: &BreakerName, event: Event) {
        let b = breaker.as_str();
        let node = self.node.as_str();
        match &event {
            Event::Applied { id, from, to, reason } => {
                tracing::info!(breaker = b, node, %id, from = from.as_str(), to = to.as_str(), ?reason, "decision applied");
                counter!("fusebox_decisions_applied_total", "breaker" => b.to_owned()).increment(1);
                if from != to {
                    counter!("fusebox_transitions_total", "breaker" => b.to_owned(), "from" => from.as_str(), "to" => to.as_str())
                        .increment(1);
                }
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
                counter!("fusebox_decisions_total", "breaker" => b.to_owned(), "state" => state.as_str()).increment(1);
            }
            Event::WouldTrip { rule } => tracing::info!(breaker = b, node, ?rule, "metrics-only breaker would trip"),
            Event::LeaseGained { term } => {
                tracing::info!(breaker = b, node, term = term.0, "deciding");
                #[allow(clippy::cast_precision_loss)]
                gauge!("fusebox_term", "breaker" => b.to_owned()).set(term.0 as f64);
            }
            Event::LeaseSuspended { term } => {
                tracing::warn!(breaker = b, node, term = term.0, "lease renewal overdue: deciding paused");
            }
            Event::SteppedDown { term, reason } => {
                tracing::info!(breaker = b, node, term = term.0, ?reason, "stepped down");
                gauge!("fusebox_term", "breaker" => b.to_owned()).set(0.0);
            }
            Event::OutageBegan => tracing::warn!(breaker = b, node, "connection lost"),
            Event::OutagePolicyApplied { policy } => {
                tracing::warn!(breaker = b, node, ?policy, "outage policy in force");
            }
            Event::OutageEnded => tracing::info!(breaker = b, node, "connection back"),
            Event::Reconfigured { from, to } => {
                tracing::info!(breaker = b, node, from, to, "running on another config version");
                #[allow(clippy::cast_precision_loss)]
                gauge!("fusebox_config_version", "breaker" => b.to_owned()).set(*to as f64);
            }
            Event::Refused(e) => {
                tracing::warn!(breaker = b, node, error = ?e, "input refused");
                counter!("fusebox_refused_inputs_total", "breaker" => b.to_owned(), "kind" => refused_kind(e))
                    .increment(1);
            }
            Event::Ignored(what) => {
                tracing::trace!(breaker = b, node, ?what, "input ignored");
                let n = match what {
                    Ignored::StaleOutcomes { calls } => *calls,
                    _ => 1,
                };
                counter!("fusebox_stale_inputs_total", "breaker" => b.to_owned(), "kind" => ignored_kind(what))
                    .increment(n);
            }
        }
        // No subscriber is not an error.
        let _ = self.events.send(BreakerEvent { breaker: breaker.clone(), node: self.node.clone(), event });
    }
}

/// Per-breaker call accounting: counters by outcome, and a rejection summary logged at
/// most once per [`REJECTION_SUMMARY_EVERY`].
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

    /// Counts drained outcomes.
    pub fn record(&mut self, counts: &OutcomeCounts) {
        let b = self.breaker.as_str();
        for (outcome, n) in [
            ("success", counts.success),
            ("failure", counts.failure),
            ("slow", counts.slow),
            ("ignored", counts.ignored),
            ("rejected", counts.rejected),
        ] {
            if n > 0 {
                counter!("fusebox_calls_total", "breaker" => b.to_owned(), "outcome" => outcome).increment(n);
            }
        }
        if counts.rejected > 0 {
            counter!("fusebox_rejections_total", "breaker" => b.to_owned()).increment(counts.rejected);
            self.rejected_since_log = self.rejected_since_log.saturating_add(counts.rejected);
        }
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

    /// Keeps every counter and gauge by its rendered key.
    #[derive(Default)]
    struct Tiny(Mutex<BTreeMap<String, Arc<Cell>>>);

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
        fn cell(&self, key: &Key) -> Arc<Cell> {
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
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[tokio::test]
    async fn events_are_counted_and_broadcast() {
        let recorder = Tiny::default();
        let breaker = BreakerName::new("db").unwrap();
        let observer = Observer::new(NodeId::new("n1").unwrap());
        let mut events = observer.subscribe();
        metrics::with_local_recorder(&recorder, || {
            let applied = |from, to| Event::Applied { id: DecisionId::new(1, 1), from, to, reason: Reason::Initial };
            observer.emit(&breaker, applied(StateLabel::Closed, StateLabel::Closed));
            observer.emit(&breaker, applied(StateLabel::Closed, StateLabel::Open));
            observer.emit(&breaker, Event::Ignored(Ignored::StaleOutcomes { calls: 7 }));
            let mut calls = CallStats::new(breaker.clone());
            calls.record(&OutcomeCounts { success: 3, rejected: 2, ..OutcomeCounts::default() });
        });
        assert_eq!(recorder.get("fusebox_decisions_applied_total{breaker=db}"), Some(2));
        assert_eq!(recorder.get("fusebox_transitions_total{breaker=db,from=closed,to=open}"), Some(1));
        assert_eq!(recorder.get("fusebox_transitions_total{breaker=db,from=closed,to=closed}"), None);
        assert_eq!(recorder.get("fusebox_stale_inputs_total{breaker=db,kind=stale_outcomes}"), Some(7));
        assert_eq!(recorder.get("fusebox_calls_total{breaker=db,outcome=success}"), Some(3));
        assert_eq!(recorder.get("fusebox_rejections_total{breaker=db}"), Some(2));
        let first = events.recv().await.unwrap();
        assert_eq!((first.breaker.as_str(), first.node.as_str()), ("db", "n1"));
    }
}
