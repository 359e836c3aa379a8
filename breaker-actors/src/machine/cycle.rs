//! The recovery cycle shared by the fleet decider and the local overlay:
//! closed -> open -> half-open -> (ramping ->) closed, with the trip rules, open durations
//! (backoff and seeded jitter) and probe grants. It judges evidence it is handed; deciding
//! *which* evidence belongs to the current phase (causality) is its callers' job.

use super::config::{Backoff, Cycle};
use super::domain::{Contribution, Evidence, FleetState, Grant, MAX_CONTRIBUTORS, OutcomeCounts, Reason, TripRule};
use super::names::NodeId;
use super::rng::SeededRng;
use super::units::Millis;
use super::window::{Bad, BurnSeries, EvidenceWindow, NodeTable};

/// How long after the last replayed report the evidence of an unfinished replay is judged
/// anyway (its last report may never come: the consumer failed, the stream was pruned).
/// Generous next to a busy node's scheduling gaps and a feed's consumer being re-created
/// mid-replay (tens to hundreds of ms): judging in such a gap judges a replayed past. At
/// 50 ms a loaded node tripped on an outage whose recovery was still being replayed.
pub(super) const REPLAY_QUIET_MS: u64 = 500;
/// The longest evidence waits for a replay to end, from the first report held back: a
/// decider whose feed never catches up (every report arrives with more behind it) still
/// judges, at least this often.
pub(super) const REPLAY_MAX_DEFER_MS: u64 = 2_000;

/// Evidence is reported in `u64`; window sums are exact `u128`.
fn saturate(wide: u128) -> u64 {
    u64::try_from(wide).unwrap_or(u64::MAX)
}

/// Where the cycle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Calls flow.
    Closed,
    /// A share of calls flows.
    Ramping {
        /// Stage index.
        stage: usize,
        /// When the stage ends, on this node's clock.
        stage_ends: Millis,
    },
    /// Calls are rejected until `until`.
    Open {
        /// End of the open period, on this node's clock.
        until: Millis,
        /// Its length.
        duration_ms: u64,
    },
    /// Granted probes flow.
    HalfOpen {
        /// When the round gives up, on this node's clock.
        deadline: Millis,
        /// Probe slots, sorted by node; granted probes sum to at most the budget.
        slots: Vec<ProbeSlot>,
        /// Probe successes so far.
        successes: u32,
    },
}

/// One node's probes in a half-open round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSlot {
    /// The node.
    pub node: NodeId,
    /// Probes granted.
    pub granted: u32,
    /// Probe results received.
    pub settled: u32,
}

/// How a report reached its judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arrival {
    /// How long before now its outcomes happened (how long it had been in the outcome
    /// stream; 0 when live).
    pub age_ms: u64,
    /// More retained reports wait behind it (a replay in progress): record it, judge once
    /// the backlog is through.
    pub backlog: bool,
}

impl Arrival {
    /// A report delivered as it was published.
    pub const LIVE: Self = Self { age_ms: 0, backlog: false };
}

/// The cycle's state and evidence.
#[derive(Debug, Clone)]
pub struct Judge {
    cycle: Cycle,
    phase: Phase,
    window: EvidenceWindow,
    burn: Option<BurnSeries>,
    /// Each node's latest reported failure streak in this phase, and when it happened.
    streaks: NodeTable<(u64, Millis)>,
    /// Failed and slow calls each node reported as evidence in this phase: who to name.
    contributions: NodeTable<(u64, u64)>,
    /// Evidence recorded while a replay was under way and not judged yet: when the first
    /// and the last replayed reports came.
    unjudged: Option<(Millis, Millis)>,
    /// Reports whose outcomes were older than the evidence age bound: not judged.
    aged_out: u64,
    /// Calls each node saw rejected in this phase: who wants probes.
    demand: NodeTable<u64>,
    /// A node that always counts as demanding (the local overlay's own node).
    self_demand: Option<NodeId>,
    backoff_level: u32,
    rng: SeededRng,
    /// Probe results beyond a node's grant, or from nodes without one: ignored.
    excess_probe_results: u64,
}

impl Judge {
    /// A closed cycle.
    pub fn new(cycle: Cycle, max_nodes: u32, seed: u64, self_demand: Option<NodeId>) -> Self {
        Self {
            window: EvidenceWindow::new(&cycle.rules.window, max_nodes),
            burn: cycle.rules.burn_rate.as_ref().map(BurnSeries::new),
            streaks: NodeTable::new(max_nodes),
            demand: NodeTable::new(max_nodes),
            contributions: NodeTable::new(max_nodes),
            cycle,
            phase: Phase::Closed,
            self_demand,
            backoff_level: 0,
            rng: SeededRng::new(seed),
            excess_probe_results: 0,
            unjudged: None,
            aged_out: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Failed rounds since the breaker last closed.
    pub fn backoff_level(&self) -> u32 {
        self.backoff_level
    }

    /// Probe results that were beyond a grant and so ignored.
    pub fn excess_probe_results(&self) -> u64 {
        self.excess_probe_results
    }

    /// Reports too old to be evidence (see [`Arrival`]), so not judged.
    pub fn aged_out(&self) -> u64 {
        self.aged_out
    }

    /// Per-node entries evicted from the bounded tables.
    pub fn evictions(&self) -> u64 {
        self.streaks.evictions() + self.demand.evictions()
    }

    /// The phase as a fleet state.
    pub fn fleet_state(&self) -> FleetState {
        match &self.phase {
            Phase::Closed => FleetState::Closed,
            Phase::Ramping { stage, .. } => FleetState::Ramping {
                stage: u8::try_from(*stage).unwrap_or(u8::MAX),
                admit_per_mille: self.ramp_per_mille(*stage),
            },
            Phase::Open { duration_ms, .. } => FleetState::Open { duration_ms: *duration_ms },
            Phase::HalfOpen { slots, .. } => FleetState::HalfOpen {
                budget: self.cycle.probing.budget,
                grants: slots.iter().map(|s| Grant { node: s.node.clone(), probes: s.granted }).collect(),
            },
        }
    }

    fn ramp_per_mille(&self, stage: usize) -> u16 {
        self.cycle.probing.ramp.as_ref().and_then(|(stages, _)| stages.get(stage).copied()).unwrap_or(1000)
    }

    /// The probes granted to `node` in the current round (0 outside half-open).
    pub fn grant_for(&self, node: &NodeId) -> u32 {
        match &self.phase {
            Phase::HalfOpen { slots, .. } => slots.iter().find(|s| &s.node == node).map_or(0, |s| s.granted),
            _ => 0,
        }
    }

    /// The earliest time at which [`Judge::tick`] may change something.
    pub fn next_deadline(&self) -> Option<Millis> {
        match &self.phase {
            Phase::Closed => self.replay_deadline(),
            Phase::Ramping { stage_ends, .. } => {
                Some(self.replay_deadline().map_or(*stage_ends, |u| u.min(*stage_ends)))
            }
            Phase::Open { until, .. } => Some(*until),
            Phase::HalfOpen { deadline, .. } => Some(*deadline),
        }
    }

    /// When held-back evidence is judged without waiting any longer: the replay has been
    /// quiet for [`REPLAY_QUIET_MS`], or held back for [`REPLAY_MAX_DEFER_MS`].
    fn replay_deadline(&self) -> Option<Millis> {
        self.unjudged.map(|(first, last)| last.plus(REPLAY_QUIET_MS).min(first.plus(REPLAY_MAX_DEFER_MS)))
    }

    fn clear_evidence(&mut self) {
        self.unjudged = None;
        self.window.clear();
        if let Some(burn) = &mut self.burn {
            burn.clear();
        }
        self.streaks.clear();
        self.demand.clear();
        self.contributions.clear();
    }

    /// Back to closed with fresh evidence and backoff level 0 (a manual reset).
    pub fn reset(&mut self) {
        self.clear_evidence();
        self.phase = Phase::Closed;
        self.backoff_level = 0;
    }

    /// Takes over a state decided elsewhere (a decider taking over from another, or
    /// resuming after a rebase). Open periods restart in full on this node's clock: the
    /// elapsed part was measured on another clock, which is never trusted.
    pub fn restore(&mut self, now: Millis, state: &FleetState, backoff_level: u32) {
        self.clear_evidence();
        self.backoff_level = backoff_level;
        self.phase = match state {
            FleetState::Ramping { stage, .. } => {
                Phase::Ramping { stage: usize::from(*stage), stage_ends: now.plus(self.ramp_stage_ms()) }
            }
            FleetState::Open { duration_ms } => {
                Phase::Open { until: now.plus(*duration_ms), duration_ms: *duration_ms }
            }
            FleetState::HalfOpen { grants, .. } => {
                // Grants already handed out stay spent: the budget is per round.
                let mut budget_left = self.cycle.probing.budget;
                let slots = grants
                    .iter()
                    .map(|g| {
                        let granted = g.probes.min(budget_left);
                        budget_left -= granted;
                        ProbeSlot { node: g.node.clone(), granted, settled: 0 }
                    })
                    .collect();
                Phase::HalfOpen { deadline: now.plus(self.cycle.probing.max_wait_ms), slots, successes: 0 }
            }
            _ => Phase::Closed,
        };
    }

    fn ramp_stage_ms(&self) -> u64 {
        self.cycle.probing.ramp.as_ref().map_or(0, |(_, ms)| *ms)
    }

    fn open_duration(&mut self) -> u64 {
        match self.cycle.backoff {
            Backoff::Fixed(ms) => ms,
            Backoff::Exponential { initial_ms, max_ms, multiplier, jitter } => {
                let growth = multiplier.saturating_pow(self.backoff_level);
                let base = initial_ms.saturating_mul(growth).min(max_ms);
                let extra = self.rng.below(jitter.of(base).saturating_add(1));
                base.saturating_add(extra).min(max_ms)
            }
        }
    }

    fn open(&mut self, now: Millis) {
        self.clear_evidence();
        let duration_ms = self.open_duration();
        self.phase = Phase::Open { until: now.plus(duration_ms), duration_ms };
    }

    fn close(&mut self, now: Millis) {
        self.clear_evidence();
        if self.cycle.probing.ramp.is_some() {
            self.phase = Phase::Ramping { stage: 0, stage_ends: now.plus(self.ramp_stage_ms()) };
        } else {
            self.phase = Phase::Closed;
            self.backoff_level = 0;
        }
    }

    fn half_open(&mut self, now: Millis) {
        let mut wanting: Vec<(NodeId, u64)> = self.demand.iter().map(|(n, d)| (n.clone(), *d)).collect();
        if let Some(me) = &self.self_demand {
            match wanting.iter_mut().find(|(n, _)| n == me) {
                Some(entry) => entry.1 = u64::MAX,
                None => wanting.push((me.clone(), u64::MAX)),
            }
        }
        self.clear_evidence();
        // Most demand first, then by node id: deterministic.
        wanting.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut slots: Vec<ProbeSlot> =
            wanting.iter().map(|(node, _)| ProbeSlot { node: node.clone(), granted: 0, settled: 0 }).collect();
        let mut left = self.cycle.probing.budget;
        // Round-robin, one probe at a time, never more than a node's demand.
        while left > 0 {
            let mut gave = false;
            for (slot, (_, want)) in slots.iter_mut().zip(&wanting) {
                if left > 0 && u64::from(slot.granted) < *want {
                    slot.granted += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
        slots.retain(|s| s.granted > 0);
        slots.sort_by(|a, b| a.node.cmp(&b.node));
        self.phase = Phase::HalfOpen { deadline: now.plus(self.cycle.probing.max_wait_ms), slots, successes: 0 };
    }

    /// Judges one node's outcomes, already attributed to the current phase. While closed
    /// or ramping they are evidence: filed at the time they happened (`now - age`), not
    /// judged at all if older than the evidence age bound, and judged as the window stands
    /// now once no replayed report waits behind them — so a decider that takes over judges
    /// what a decider that had never stopped would have in its window now, not what it had
    /// at some point of the replayed past.
    pub fn ingest(
        &mut self,
        now: Millis,
        node: &NodeId,
        counts: &OutcomeCounts,
        streak: u64,
        arrival: Arrival,
    ) -> Option<Reason> {
        match &self.phase {
            Phase::Closed | Phase::Ramping { .. } => {
                if arrival.age_ms < self.cycle.rules.max_evidence_age_ms {
                    self.record_evidence(Millis(now.0.saturating_sub(arrival.age_ms)), now, node, counts, streak);
                } else {
                    self.aged_out = self.aged_out.saturating_add(1);
                }
                if arrival.backlog {
                    let first = self.unjudged.map_or(now, |(first, _)| first);
                    self.unjudged = Some((first, now));
                    if now < first.plus(REPLAY_MAX_DEFER_MS) {
                        return None;
                    }
                }
                self.judge_evidence(now)
            }
            Phase::Open { .. } => {
                if counts.rejected > 0 {
                    let d = self.demand.entry(now, node, || 0);
                    *d = d.saturating_add(counts.rejected);
                }
                None
            }
            Phase::HalfOpen { .. } => self.ingest_probes(now, node, counts),
        }
    }

    /// Evaluates the rules on the evidence as it stands at `now` and trips if one fires.
    fn judge_evidence(&mut self, now: Millis) -> Option<Reason> {
        self.unjudged = None;
        if let Some(cutoff) = now.0.checked_sub(self.cycle.rules.max_evidence_age_ms) {
            self.window.forget_before(Millis(cutoff));
        }
        let (rule, evidence) = self.evaluate(now)?;
        if matches!(self.phase, Phase::Ramping { .. }) {
            // Recovery failed on the way back: escalate as a failed round would.
            self.backoff_level = self.backoff_level.saturating_add(1);
        }
        self.open(now);
        Some(Reason::Tripped { rule, evidence })
    }

    fn record_evidence(&mut self, at: Millis, now: Millis, node: &NodeId, counts: &OutcomeCounts, streak: u64) {
        self.window.record(at, node, counts);
        if counts.failure > 0 || counts.slow > 0 {
            let (failed, slow) = self.contributions.entry(now, node, || (0, 0));
            *failed = failed.saturating_add(counts.failure);
            *slow = slow.saturating_add(counts.slow);
        }
        if let Some(burn) = &mut self.burn {
            burn.record(at, counts);
        }
        if self.cycle.rules.consecutive_failures.is_some() && (streak > 0 || self.streaks.get(node).is_some()) {
            let entry = self.streaks.entry(now, node, || (0, at));
            if at >= entry.1 {
                *entry = (streak, at);
            }
        }
    }

    /// The streaks recent enough to count at `now`.
    fn live_streaks(&self, now: Millis) -> impl Iterator<Item = u64> + '_ {
        let cutoff = now.0.checked_sub(self.cycle.rules.max_evidence_age_ms);
        self.streaks.iter().filter(move |(_, (_, at))| cutoff.is_none_or(|c| at.0 > c)).map(|(_, (s, _))| *s)
    }

    fn ingest_probes(&mut self, now: Millis, node: &NodeId, counts: &OutcomeCounts) -> Option<Reason> {
        let slow_is_failure = self.cycle.rules.slow_call_rate.is_some();
        let (mut bad, mut good) = (counts.failure, counts.success);
        if slow_is_failure {
            bad = bad.saturating_add(counts.slow);
        } else {
            good = good.saturating_add(counts.slow);
        }
        let threshold = self.cycle.probing.success_threshold;
        let budget = self.cycle.probing.budget;
        let Phase::HalfOpen { slots, successes, .. } = &mut self.phase else {
            return None;
        };
        let granted_total: u32 = slots.iter().map(|s| s.granted).sum();
        let (mut failures, mut excess) = (0u32, 0u64);
        match slots.iter_mut().find(|s| &s.node == node) {
            Some(slot) => {
                let room = u64::from(slot.granted - slot.settled);
                // Failures first: with more results than grants, safety wins.
                let take_bad = bad.min(room);
                let take_good = good.min(room - take_bad);
                excess = bad.saturating_add(good) - take_bad - take_good;
                slot.settled += u32::try_from(take_bad + take_good).unwrap_or(u32::MAX);
                failures = u32::try_from(take_bad).unwrap_or(u32::MAX);
                *successes = successes.saturating_add(u32::try_from(take_good).unwrap_or(u32::MAX));
            }
            None => excess = excess.saturating_add(bad.saturating_add(good)),
        }
        self.excess_probe_results = self.excess_probe_results.saturating_add(excess);
        if failures > 0 {
            self.backoff_level = self.backoff_level.saturating_add(1);
            self.open(now);
            return Some(Reason::ProbeFailed { failures });
        }
        if *successes >= threshold {
            let successes = *successes;
            self.close(now);
            return Some(Reason::ProbesSucceeded { successes });
        }
        let left = budget.saturating_sub(granted_total);
        if counts.rejected > 0 && left > 0 {
            let extra = u32::try_from(counts.rejected.min(u64::from(left))).unwrap_or(left);
            match slots.binary_search_by(|s| s.node.cmp(node)) {
                Ok(i) => slots[i].granted += extra,
                Err(i) => slots.insert(i, ProbeSlot { node: node.clone(), granted: extra, settled: 0 }),
            }
            return Some(Reason::ProbesGranted);
        }
        None
    }

    /// The first trip rule that fires on the current evidence, without acting on it.
    pub fn evaluate(&self, now: Millis) -> Option<(TripRule, Evidence)> {
        let rules = &self.cycle.rules;
        let totals = self.window.totals(now);
        let mut evidence = Evidence {
            decisive: saturate(totals.decisive),
            failed: saturate(totals.failed),
            slow: saturate(totals.slow),
            nodes: 0,
            streak: self.live_streaks(now).max().unwrap_or(0),
            top: self.top_contributors(),
        };
        if let Some(limit) = rules.consecutive_failures {
            let nodes = self.live_streaks(now).filter(|s| *s >= limit).count();
            evidence.nodes = u32::try_from(nodes).unwrap_or(u32::MAX);
            if evidence.nodes >= rules.quorum {
                return Some((TripRule::ConsecutiveFailures, evidence));
            }
        }
        let enough = totals.decisive >= u128::from(rules.minimum_calls);
        if let Some(rate) = rules.failure_rate {
            if enough && rate.reached(totals.failed, totals.decisive) {
                evidence.nodes = self.window.bad_nodes(now, Bad::Failed);
                if evidence.nodes >= rules.quorum {
                    return Some((TripRule::FailureRate, evidence));
                }
            }
        }
        if let Some(rate) = rules.slow_call_rate {
            if enough && rate.reached(totals.slow, totals.decisive) {
                evidence.nodes = self.window.bad_nodes(now, Bad::Slow);
                if evidence.nodes >= rules.quorum {
                    return Some((TripRule::SlowCallRate, evidence));
                }
            }
        }
        if let Some((decisive, failed)) = self.burn.as_ref().and_then(|b| b.firing(now, rules.minimum_calls)) {
            evidence.nodes = self.window.bad_nodes(now, Bad::Failed);
            if evidence.nodes >= rules.quorum {
                return Some((
                    TripRule::BurnRate,
                    Evidence { decisive: saturate(decisive), failed: saturate(failed), ..evidence },
                ));
            }
        }
        None
    }

    /// The nodes with the most failed (then slow) calls in this phase, most first, ties by
    /// node id: at most [`MAX_CONTRIBUTORS`].
    fn top_contributors(&self) -> Vec<Contribution> {
        let mut all: Vec<Contribution> = self
            .contributions
            .iter()
            .map(|(node, (failed, slow))| Contribution { node: node.clone(), failed: *failed, slow: *slow })
            .collect();
        all.sort_by(|a, b| (b.failed, b.slow).cmp(&(a.failed, a.slow)).then_with(|| a.node.cmp(&b.node)));
        all.truncate(MAX_CONTRIBUTORS);
        all
    }

    /// Records evidence and evaluates the rules without acting on them (metrics-only):
    /// a rule that fires is returned and the evidence forgotten, so it fires once per
    /// window's worth of bad outcomes rather than on every report.
    pub fn shadow(&mut self, now: Millis, node: &NodeId, counts: &OutcomeCounts, streak: u64) -> Option<TripRule> {
        self.record_evidence(now, now, node, counts, streak);
        let (rule, _) = self.evaluate(now)?;
        self.clear_evidence();
        Some(rule)
    }

    /// Moves on by time alone: open period over, round timed out, ramp stage over.
    pub fn tick(&mut self, now: Millis) -> Option<Reason> {
        let replay_stalled = self.replay_deadline().is_some_and(|due| now >= due);
        if replay_stalled && matches!(self.phase, Phase::Closed | Phase::Ramping { .. }) {
            // A replay's evidence waited for a report that never came: judge it now.
            if let Some(verdict) = self.judge_evidence(now) {
                return Some(verdict);
            }
        }
        match &self.phase {
            Phase::Closed => None,
            Phase::Open { until, .. } => (now >= *until).then(|| {
                self.half_open(now);
                Reason::OpenElapsed
            }),
            Phase::HalfOpen { deadline, .. } => (now >= *deadline).then(|| {
                self.open(now);
                Reason::HalfOpenTimedOut
            }),
            Phase::Ramping { stage, stage_ends } => {
                if now < *stage_ends {
                    return None;
                }
                let next = stage + 1;
                let stages = self.cycle.probing.ramp.as_ref().map_or(0, |(s, _)| s.len());
                if next < stages {
                    self.phase = Phase::Ramping { stage: next, stage_ends: now.plus(self.ramp_stage_ms()) };
                } else {
                    self.phase = Phase::Closed;
                    self.backoff_level = 0;
                }
                Some(Reason::RampAdvanced)
            }
        }
    }

    /// Health checks passed while open: half-open now, or closed if they close directly.
    pub fn health_passed(&mut self, now: Millis, closes_directly: bool, successes: u32) -> Option<Reason> {
        if !matches!(self.phase, Phase::Open { .. }) {
            return None;
        }
        if closes_directly {
            self.close(now);
        } else {
            self.half_open(now);
        }
        Some(Reason::HealthCheckPassed { successes })
    }

    /// The evidence in the window at `now`: `(decisive, failed, slow)`.
    pub fn window_totals(&self, now: Millis) -> (u128, u128, u128) {
        let t = self.window.totals(now);
        (t.decisive, t.failed, t.slow)
    }

    /// Failed and slow calls each node reported as evidence in this phase (the table that
    /// names a trip's contributors), sorted by node.
    pub fn contributions(&self) -> Vec<Contribution> {
        let mut all: Vec<Contribution> = self
            .contributions
            .iter()
            .map(|(node, (failed, slow))| Contribution { node: node.clone(), failed: *failed, slow: *slow })
            .collect();
        all.sort_by(|a, b| a.node.cmp(&b.node));
        all
    }

    /// The window's size in entries, for boundedness checks.
    pub fn window_len(&self) -> usize {
        self.window.len()
    }
}
