//! The safety properties of the protocol, checked as the fleet harness runs: a
//! [`SafetyMonitor`] sees every decision the simulated store accepts, every decision a
//! node applies, every report it publishes or its decider receives, every call it admits
//! and every drain into its machine, and records a [`Violation`] the moment one of them
//! breaks a property. The liveness properties are judged by the simulation driver
//! ([`crate::sim`]) once faults have healed; they share the [`Property`] names.
//!
//! The monitor judges what the real machines did, never what they say about themselves:
//! "applied" is the [`Event::Applied`](breaker_actors::machine::Event::Applied) a machine
//! emits, the decision's content is compared with the store's copy, and counts come from
//! the harness's own tallies of what it fed in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use breaker_actors::machine::{
    Admission, Decision, DecisionId, FleetState, Reason, Report, Snapshot, Stats, StepDownReason, Term, TripRule,
};

/// Violations kept per run: one is enough to fail it, a few show a pattern.
pub const MAX_VIOLATIONS: usize = 32;

/// Delivered reports the monitor keeps per node for [`Property::FreshEvidence`].
pub const MAX_EVIDENCE_KEPT: usize = 65_536;

/// A property of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Property {
    /// Safety: the store holds at most one decision per `(term, seq)`, and every decision a
    /// node applies is the store's decision with that id.
    OneDecisionPerId,
    /// Safety: a deposed decider's decision never lands after its successor's (the fence):
    /// the store accepts decisions in increasing `(term, seq)`, equal only for a retried
    /// write of the same decision (the simulation), and a decision that landed after a
    /// newer term's is never applied (the exploration, where the store may be unfenced).
    FencedStore,
    /// Safety: a decision lands only on the value it follows: an initial decision only in
    /// an empty bucket, a takeover's restatement only on the decision it restates; anything
    /// else rolls the fleet state back (a trip lost).
    NoRollback,
    /// Safety: every node (incarnation) applies decisions in strictly increasing
    /// `(term, seq)`.
    MonotonicApply,
    /// Safety: under one half-open phase, the probes holding a slot fleet-wide (admitted,
    /// less those that gave their slot back by ending ignored or without an outcome; that
    /// is, probes in flight plus probes that ended in a success or a failure) never exceed
    /// its budget.
    ProbeBudget,
    /// Safety: a report names as applied only a decision its node had applied, and its
    /// failure streak is made of failures its node recorded under that decision's phase (a
    /// streak never crosses a phase).
    AttributedOutcomes,
    /// Safety: a node that applied a manual state enforces it.
    ForcedStates,
    /// Safety: every outcome drained into a machine is recorded once or dropped as stale;
    /// a decider counts no report twice in a term.
    Conservation,
    /// Safety: a decider trips only on evidence younger than the evidence age bound (with
    /// an allowance for clock drift): the failures (slow calls, streak) a trip names are
    /// found in reports delivered to it in its term that the stream stored within the
    /// bound. A decider taking over must not trip on a replay of old outcomes.
    FreshEvidence,
    /// Safety: only the store deposes a decider: a decider steps down as deposed only by a
    /// term the lease store granted, never by what a report (anyone's, forged or not) claims.
    DeposedByStore,
    /// Liveness: after faults heal, every node applies the store's current decision, made under
    /// the fleet's config version, which every node runs.
    Convergence,
    /// Liveness: after faults heal, a failing dependency opens the fleet.
    OpensWhenFailing,
    /// Liveness: after faults heal, a recovered dependency closes the fleet.
    ClosesWhenRecovered,
    /// Liveness: after faults heal, no half-open decision stays current past its max wait.
    HalfOpenBounded,
    /// Determinism: the same seed gives the same trace.
    Determinism,
    /// Reachability: some node applies an open decision.
    CanOpen,
    /// Reachability: some node applies a closed decision after probes succeeded.
    CanCloseAfterOpen,
    /// Reachability: a new decider's restatement of an earlier decider's decision lands.
    CanTakeOver,
    /// Reachability: some node applies a forced-open decision.
    CanForceOpen,
    /// Reachability: a probe slot that an ignored probe gave back is used again in the
    /// same half-open round (neutral outcomes do not stall a round).
    CanReuseIgnoredProbe,
}

/// How a property is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// Safety: never violated, checked at every step or transition.
    Always,
    /// Liveness: holds within a bound once faults have healed.
    Eventually,
    /// Reachability: some explored state shows it (evidence the model can get there).
    Sometimes,
}

impl Property {
    /// Every property, in the order reports list them.
    pub const ALL: [Self; 20] = [
        Self::OneDecisionPerId,
        Self::FencedStore,
        Self::NoRollback,
        Self::MonotonicApply,
        Self::ProbeBudget,
        Self::AttributedOutcomes,
        Self::ForcedStates,
        Self::Conservation,
        Self::DeposedByStore,
        Self::FreshEvidence,
        Self::Convergence,
        Self::OpensWhenFailing,
        Self::ClosesWhenRecovered,
        Self::HalfOpenBounded,
        Self::Determinism,
        Self::CanOpen,
        Self::CanCloseAfterOpen,
        Self::CanTakeOver,
        Self::CanForceOpen,
        Self::CanReuseIgnoredProbe,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::OneDecisionPerId => "one-decision-per-id",
            Self::FencedStore => "fenced-store",
            Self::NoRollback => "no-rollback",
            Self::MonotonicApply => "monotonic-apply",
            Self::ProbeBudget => "probe-budget",
            Self::AttributedOutcomes => "attributed-outcomes",
            Self::ForcedStates => "forced-states",
            Self::Conservation => "conservation",
            Self::DeposedByStore => "deposed-by-store",
            Self::FreshEvidence => "fresh-evidence",
            Self::Convergence => "convergence",
            Self::OpensWhenFailing => "opens-when-failing",
            Self::ClosesWhenRecovered => "closes-when-recovered",
            Self::HalfOpenBounded => "half-open-bounded",
            Self::Determinism => "determinism",
            Self::CanOpen => "can-open",
            Self::CanCloseAfterOpen => "can-close-after-open",
            Self::CanTakeOver => "can-take-over",
            Self::CanForceOpen => "can-force-open",
            Self::CanReuseIgnoredProbe => "can-reuse-ignored-probe",
        }
    }

    /// How it is judged.
    pub fn kind(self) -> PropertyKind {
        match self {
            Self::Convergence | Self::OpensWhenFailing | Self::ClosesWhenRecovered | Self::HalfOpenBounded => {
                PropertyKind::Eventually
            }
            Self::CanOpen
            | Self::CanCloseAfterOpen
            | Self::CanTakeOver
            | Self::CanForceOpen
            | Self::CanReuseIgnoredProbe => PropertyKind::Sometimes,
            _ => PropertyKind::Always,
        }
    }
}

impl PropertyKind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Eventually => "eventually",
            Self::Sometimes => "sometimes",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property found broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Simulated time, in ms.
    pub at_ms: u64,
    /// Which property.
    pub property: Property,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} ms] {}: {}", self.at_ms, self.property, self.detail)
    }
}

/// What the monitor knows of one node's current incarnation.
#[derive(Debug, Clone, Default)]
struct NodeView {
    /// The newest decision this incarnation applied.
    last_applied: DecisionId,
    /// Every decision this incarnation applied.
    applied: BTreeSet<DecisionId>,
    /// Outcomes (calls) drained into this incarnation's machine.
    drained: u64,
    /// Distinct reports delivered to this incarnation's decider, per term.
    reports_seen: BTreeMap<Term, BTreeSet<(String, u64, u64)>>,
    /// Evidence delivered to this incarnation's decider: `(term, stored at, failures, slow,
    /// streak)`, oldest first, pruned to what a trip could still name.
    evidence: VecDeque<(Term, u64, u64, u64, u64)>,
    /// The newest decision this incarnation's decider asked to write.
    last_decided: DecisionId,
    /// Per fleet phase: this incarnation's run of failures in progress and its longest run,
    /// over the outcomes its hot path recorded under that phase.
    runs: BTreeMap<DecisionId, (u64, u64)>,
}

/// Watches a run for safety violations; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SafetyMonitor {
    /// Every decision the store accepted, by id.
    stored: BTreeMap<DecisionId, Decision>,
    /// The id of the last decision the store accepted.
    last_stored: DecisionId,
    /// Decisions the store accepted and then lost to a rollback: a takeover may restate
    /// one of them on the value the rollback left.
    lost: BTreeSet<DecisionId>,
    nodes: Vec<NodeView>,
    /// The newest term the lease store has granted.
    newest_lease_term: Term,
    /// Probes fleet-wide, by half-open phase: `(admitted, gave their slot back, budget)`.
    probes: BTreeMap<DecisionId, (u64, u64, u32)>,
    violations: Vec<Violation>,
    /// Violations beyond [`MAX_VIOLATIONS`], counted.
    violations_dropped: u64,
}

impl SafetyMonitor {
    /// A monitor for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self { nodes: vec![NodeView::default(); nodes], ..Self::default() }
    }

    /// The violations found so far (at most [`MAX_VIOLATIONS`]).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Violations found beyond those kept.
    pub fn violations_dropped(&self) -> u64 {
        self.violations_dropped
    }

    /// Probes admitted fleet-wide per half-open phase.
    pub fn probes_by_phase(&self) -> impl Iterator<Item = (DecisionId, u64)> + '_ {
        self.probes.iter().map(|(phase, (n, _, _))| (*phase, *n))
    }

    /// Records a violation found outside the monitor (by the driver's liveness checks).
    pub fn violate(&mut self, at_ms: u64, property: Property, detail: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation { at_ms, property, detail });
        } else {
            self.violations_dropped += 1;
        }
    }

    fn view(&mut self, node: usize) -> Option<&mut NodeView> {
        self.nodes.get_mut(node)
    }

    /// Node `node` started a new incarnation: what it applied and drained before is
    /// forgotten.
    pub fn restarted(&mut self, node: usize) {
        if let Some(view) = self.view(node) {
            *view = NodeView::default();
        }
    }

    /// The store went back to `current` (a rollback, see `Fleet::roll_back_store`),
    /// losing `lost`: it may accept ids from `current` on again.
    pub fn rolled_back(&mut self, current: Option<DecisionId>, lost: &[DecisionId]) {
        self.last_stored = current.unwrap_or(DecisionId::NONE);
        self.lost.extend(lost.iter().copied());
    }

    /// The store accepted `decision` as its new value, replacing `current`.
    pub fn stored(&mut self, at_ms: u64, current: Option<&Decision>, decision: &Decision) {
        // An equal id is a retried write of the same decision (its first reply was lost);
        // the id check below tells it from a different decision under the same id.
        if decision.id < self.last_stored {
            let detail = format!("the store accepted {} after {}", decision.id, self.last_stored);
            self.violate(at_ms, Property::FencedStore, detail);
        }
        self.last_stored = self.last_stored.max(decision.id);
        // Landing on itself is a retried write whose first reply was lost: harmless.
        let follows = current == Some(decision)
            || match &decision.reason {
                Reason::Initial => current.is_none(),
                Reason::TermStarted { previous } => {
                    current.is_some_and(|c| c.id == *previous)
                        || (self.lost.contains(previous) && current.is_none_or(|c| c.id < *previous))
                }
                _ => true,
            };
        if !follows {
            let on = current.map_or_else(|| "an empty bucket".to_owned(), |c| c.id.to_string());
            let detail = format!("{} ({:?}) landed on {on}", decision.id, decision.reason);
            self.violate(at_ms, Property::NoRollback, detail);
        }
        if let Some(earlier) = self.stored.get(&decision.id) {
            if earlier != decision {
                let detail = format!("two different decisions {}: {earlier:?} and {decision:?}", decision.id);
                self.violate(at_ms, Property::OneDecisionPerId, detail);
            }
            return;
        }
        self.stored.insert(decision.id, decision.clone());
    }

    /// Node `node` applied `decision` (its machine emitted `Event::Applied` for it).
    pub fn applied(&mut self, at_ms: u64, node: usize, decision: Option<&Decision>, id: DecisionId) {
        let matches_store = decision.is_some_and(|d| self.stored.get(&d.id) == Some(d));
        if !matches_store {
            let detail = format!("n{} applied {id}, which is not the store's decision {id}", node + 1);
            self.violate(at_ms, Property::OneDecisionPerId, detail);
        }
        let Some(view) = self.view(node) else {
            return;
        };
        let last = view.last_applied;
        view.last_applied = view.last_applied.max(id);
        view.applied.insert(id);
        if id <= last {
            let detail = format!("n{} applied {id} after {last}", node + 1);
            self.violate(at_ms, Property::MonotonicApply, detail);
        }
    }

    /// Node `node` published `report`.
    pub fn published(&mut self, at_ms: u64, node: usize, report: &Report) {
        let phase = if report.applied == DecisionId::NONE {
            Some(DecisionId::NONE)
        } else {
            self.stored.get(&report.applied).map(|d| d.phase)
        };
        let Some(view) = self.view(node) else {
            return;
        };
        if report.applied != DecisionId::NONE && !view.applied.contains(&report.applied) {
            let detail = format!("n{} reported outcomes under {}, which it never applied", node + 1, report.applied);
            self.violate(at_ms, Property::AttributedOutcomes, detail);
            return;
        }
        let truth = phase.map_or(0, |phase| view.runs.get(&phase).map_or(0, |(_, longest)| *longest));
        if phase.is_some() && report.longest_failure_streak > truth {
            let detail = format!(
                "n{} reported a failure streak of {} under phase {}, whose longest run of failures there is {truth}",
                node + 1,
                report.longest_failure_streak,
                phase.unwrap_or(DecisionId::NONE)
            );
            self.violate(at_ms, Property::AttributedOutcomes, detail);
        }
    }

    /// `report` was delivered to node `node`'s machine while it decided for `term`.
    pub fn report_delivered(&mut self, node: usize, term: Term, report: &Report) {
        if let Some(view) = self.view(node) {
            let key = (report.node.as_str().to_owned(), report.incarnation, report.seq);
            view.reports_seen.entry(term).or_default().insert(key);
        }
    }

    /// The lease store granted `term`.
    pub fn lease_granted(&mut self, term: Term) {
        self.newest_lease_term = self.newest_lease_term.max(term);
    }

    /// Node `node`'s machine stepped down from `term` for `reason`.
    pub fn stepped_down(&mut self, at_ms: u64, node: usize, term: Term, reason: StepDownReason) {
        if let StepDownReason::Deposed { newer } = reason {
            if newer > self.newest_lease_term {
                let detail = format!(
                    "n{} stepped down from term {} as deposed by term {}, which the lease store never granted \
                     (newest granted: {})",
                    node + 1,
                    term.0,
                    newer.0,
                    self.newest_lease_term.0
                );
                self.violate(at_ms, Property::DeposedByStore, detail);
            }
        }
    }

    /// Report `report`, stored by the stream at `stored_at_ms`, was delivered to node `node`'s
    /// decider of `term`.
    pub fn evidence_delivered(&mut self, node: usize, term: Term, stored_at_ms: u64, report: &Report) {
        if let Some(view) = self.view(node) {
            let c = &report.counts;
            view.evidence.push_back((term, stored_at_ms, c.failure, c.slow, report.longest_failure_streak));
            if view.evidence.len() > MAX_EVIDENCE_KEPT {
                view.evidence.pop_front();
            }
        }
    }

    /// Node `node`'s decider asks to write `decision` at `at_ms`; evidence older than
    /// `max_age_ms` (its config's bound) must not have tripped it.
    pub fn decided(&mut self, at_ms: u64, node: usize, decision: &Decision, max_age_ms: u64) {
        let Some(view) = self.view(node) else {
            return;
        };
        if decision.id <= view.last_decided {
            return; // a retried write
        }
        view.last_decided = decision.id;
        // Drift of up to 2 % either way on the decider's clock, and a flush or two.
        let cutoff = at_ms.saturating_sub(max_age_ms + max_age_ms / 20 + 100);
        while view.evidence.front().is_some_and(|e| e.1 < cutoff.saturating_sub(max_age_ms)) {
            view.evidence.pop_front();
        }
        let Reason::Tripped { rule, evidence } = &decision.reason else {
            return;
        };
        let fresh = view.evidence.iter().filter(|e| e.0 == decision.id.term && e.1 >= cutoff);
        let (failed, slow, streak) =
            fresh.fold((0u64, 0u64, 0u64), |(f, s, k), e| (f.saturating_add(e.2), s.saturating_add(e.3), k.max(e.4)));
        let supported = match rule {
            TripRule::FailureRate | TripRule::BurnRate => failed >= evidence.failed,
            TripRule::SlowCallRate => slow >= evidence.slow,
            TripRule::ConsecutiveFailures => streak >= evidence.streak,
        };
        if !supported {
            let detail = format!(
                "n{} tripped ({rule:?}, {evidence:?}) as {} on evidence older than {max_age_ms} ms: reports stored \
                 since {cutoff} ms held only {failed} failures, {slow} slow, streak {streak}",
                node + 1,
                decision.id
            );
            self.violate(at_ms, Property::FreshEvidence, detail);
        }
    }

    /// `calls` outcomes were drained into node `node`'s machine.
    pub fn drained(&mut self, node: usize, calls: u64) {
        if let Some(view) = self.view(node) {
            view.drained += calls;
        }
    }

    /// Node `node`'s hot path recorded a decisive outcome while it had applied a decision of
    /// fleet phase `phase`: the truth a report's failure streak is judged against.
    pub fn outcome_recorded(&mut self, node: usize, phase: DecisionId, failed: bool) {
        if let Some(view) = self.view(node) {
            let (run, longest) = view.runs.entry(phase).or_default();
            if failed {
                *run += 1;
                *longest = (*longest).max(*run);
            } else {
                *run = 0;
            }
        }
    }

    /// Node `node` admitted a probe while it had applied the half-open decision `phase`
    /// with `budget` probes fleet-wide.
    pub fn probe_admitted(&mut self, at_ms: u64, node: usize, phase: DecisionId, budget: u32) {
        let entry = self.probes.entry(phase).or_insert((0, 0, budget));
        entry.0 += 1;
        let (admitted, returned, budget) = *entry;
        let holding = admitted - returned;
        if holding > u64::from(budget) {
            let detail = format!(
                "n{} admitted a probe of phase {phase} with {holding} holding a slot ({admitted} admitted, {returned} \
                 gave theirs back), budget {budget}",
                node + 1
            );
            self.violate(at_ms, Property::ProbeBudget, detail);
        }
    }

    /// A probe node `node` admitted under the half-open decision `phase` gave its slot back
    /// (it ended ignored): it no longer counts against the budget.
    pub fn probe_returned(&mut self, _node: usize, phase: DecisionId) {
        if let Some(entry) = self.probes.get_mut(&phase) {
            entry.1 = (entry.1 + 1).min(entry.0);
        }
    }

    /// Checks the state of node `node` after a step: its machine's statistics against what
    /// it was fed, and its hot path against a manual state it applied.
    pub fn check_node(
        &mut self,
        at_ms: u64,
        node: usize,
        applied: Option<&Decision>,
        snapshot: &Snapshot,
        stats: &Stats,
    ) {
        let Some(view) = self.view(node) else {
            return;
        };
        let accounted = stats.recorded.total() + stats.stale_outcomes;
        let drained = view.drained;
        let seen: u64 = view.reports_seen.values().map(|s| s.len() as u64).sum();
        if accounted != drained {
            let detail = format!(
                "n{} drained {drained} outcomes into its machine, which recorded {} and dropped {} as stale",
                node + 1,
                stats.recorded.total(),
                stats.stale_outcomes
            );
            self.violate(at_ms, Property::Conservation, detail);
        }
        if stats.reports_counted > seen {
            let detail = format!(
                "n{} counted {} reports but was delivered only {seen} distinct ones per term",
                node + 1,
                stats.reports_counted
            );
            self.violate(at_ms, Property::Conservation, detail);
        }
        let Some(manual) = applied.map(|d| &d.state) else {
            return;
        };
        let enforced = match manual {
            FleetState::ForcedOpen => snapshot.admission == Admission::Reject,
            FleetState::ForcedClosed | FleetState::MetricsOnly => snapshot.admission == Admission::Allow,
            FleetState::Disabled => snapshot.admission == Admission::Allow && !snapshot.record,
            _ => true,
        };
        if !enforced {
            let detail = format!("n{} applied {:?} but admits {:?}", node + 1, manual.label(), snapshot.admission);
            self.violate(at_ms, Property::ForcedStates, detail);
        }
    }
}
