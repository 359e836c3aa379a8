//! The scripted outage behind `make demo`: a small fleet over the deterministic harness
//! (`model_check::fleet`), a dependency that fails and recovers, a decider that crashes and
//! nodes that restart; the notable moments of the run and a summary that says whether the
//! story unfolded (tripped, probed within the fleet budget, closed, taken over).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use breaker_actors::machine::{
    Admission, BreakerConfig, Decision, DecisionId, Event, FleetState, HalfOpenPolicy, OpenPolicy, Reason, StateLabel,
    Term, TripPolicy, TripRule, WindowConfig,
};
use model_check::fleet::{Fleet, FleetError, FleetSpec, UNHEALTHY_PER_MILLE};

/// The most nodes the timeline lays out on one line per moment.
pub const MAX_NODES: usize = 64;

/// Something done to the fleet at a scripted moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The lease holder crashes (no step-down): the lease must expire before a takeover.
    KillDecider,
    /// The highest-numbered live node that does not hold the lease restarts.
    RestartStandby,
    /// The node killed last comes back.
    RestartKilled,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Seed of the dependency's failures and of the open-period jitter.
    pub seed: u64,
    /// The breaker's configuration.
    pub config: BreakerConfig,
    /// The dependency's failure rate per mille from each start time on.
    pub dependency: Vec<(u64, u16)>,
    /// Faults, by time.
    pub faults: Vec<(u64, Fault)>,
    /// When the run ends.
    pub end_ms: u64,
    /// Flush interval (and simulation step).
    pub flush_ms: u64,
    /// Calls per node per flush.
    pub calls_per_flush: u32,
    /// Lease time-to-live.
    pub lease_ttl_ms: u64,
    /// Lease safety margin.
    pub lease_margin_ms: u64,
}

impl Script {
    /// The demo's outage: healthy until 3 s, failing (90 %) until 10 s, fully recovered after;
    /// a standby restarted at 8 s while the breaker is open, the decider killed at 14 s
    /// and brought back at 16 s.
    pub fn outage(nodes: usize, seed: u64) -> Self {
        let config = BreakerConfig {
            trip: TripPolicy {
                window: WindowConfig::Count { calls: 40 },
                minimum_calls: 20,
                failure_rate: Some(0.5),
                ..TripPolicy::default()
            },
            // 1.2 s doubling: the third round starts after the 10 s recovery whatever the
            // jitter, so the story shows two failed rounds and a successful one.
            open: OpenPolicy::Exponential { initial_ms: 1_200, max_ms: 9_600, multiplier: 2, jitter: 0.1 },
            half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: 2_000, ramp: None },
            local: None,
            seed,
            ..BreakerConfig::default()
        };
        Self {
            nodes,
            seed,
            config,
            // A clean recovery: with background errors a post-recovery probe fails for ~2 % of
            // seeds and the next round comes after the run ends, so the smoke check would flake.
            dependency: vec![(0, 10), (3_000, 900), (10_000, 0)],
            faults: vec![(8_000, Fault::RestartStandby), (14_000, Fault::KillDecider), (16_000, Fault::RestartKilled)],
            end_ms: 18_000,
            flush_ms: 10,
            calls_per_flush: 2,
            lease_ttl_ms: 1_500,
            lease_margin_ms: 300,
        }
    }

    fn spec(&self) -> FleetSpec {
        FleetSpec {
            nodes: self.nodes,
            breaker: "payments".into(),
            config: self.config.clone(),
            lease_ttl_ms: self.lease_ttl_ms,
            lease_margin_ms: self.lease_margin_ms,
            flush_ms: self.flush_ms,
            calls_per_flush: self.calls_per_flush,
            seed: self.seed,
            dependency: self.dependency.clone(),
        }
    }

    /// When the dependency first became unhealthy.
    pub fn failing_since(&self) -> Option<u64> {
        self.dependency.iter().find(|(_, p)| *p >= UNHEALTHY_PER_MILLE).map(|(at, _)| *at)
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// Sim time.
    pub at_ms: u64,
    /// Each node's effective state after the moment (`None`: down).
    pub states: Vec<Option<StateLabel>>,
    /// The lease holder and its term.
    pub decider: Option<(usize, Term)>,
    /// What happened.
    pub what: String,
}

/// One half-open round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// The half-open decision's phase.
    pub phase: DecisionId,
    /// Its fleet-wide probe budget.
    pub budget: u32,
    /// Probes admitted fleet-wide in it.
    pub probes: u64,
}

/// A crash of the decider and who took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// The crashed decider.
    pub killed: usize,
    /// When it crashed.
    pub killed_at_ms: u64,
    /// Its term.
    pub old_term: Term,
    /// The new decider and when and at which term it took over (`None`: nobody did).
    pub by: Option<(usize, u64, Term)>,
}

/// A restart, and whether the node enforced the bucket's state from its first call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// The node.
    pub node: usize,
    /// When.
    pub at_ms: u64,
    /// The fleet state in the bucket then.
    pub fleet: StateLabel,
    /// The node's admission right after its bootstrap.
    pub admission: Admission,
}

/// The numbers of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// When the dependency started failing.
    pub failing_since_ms: Option<u64>,
    /// When the first trip decision was written.
    pub first_trip_ms: Option<u64>,
    /// The trip's evidence, for the record.
    pub first_trip: Option<String>,
    /// The slowest propagation of a decision (written -> applied by every node up then).
    pub propagation_ms: Option<u64>,
    /// Every half-open round.
    pub rounds: Vec<Round>,
    /// The configured fleet-wide probe budget.
    pub probe_budget: u32,
    /// Calls admitted by nodes that had applied an open decision.
    pub admitted_while_open: u64,
    /// Calls admitted by nodes that had applied a half-open decision (the probes).
    pub admitted_while_half_open: u64,
    /// Calls rejected, fleet-wide.
    pub rejected: u64,
    /// Decider crashes.
    pub takeovers: Vec<Takeover>,
    /// Restarts.
    pub restarts: Vec<Restart>,
    /// Each node's effective state at the end (`None`: down).
    pub final_states: Vec<Option<StateLabel>>,
    /// Decisions written.
    pub decisions: usize,
    /// The run's trace hash (same script and seed, same hash).
    pub trace_hash: u64,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// What was simulated.
    pub header: Vec<String>,
    /// The notable moments, in order.
    pub moments: Vec<Moment>,
    /// The numbers.
    pub summary: Summary,
}

fn name(i: usize) -> String {
    format!("n{}", i + 1)
}

fn secs(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

fn states(fleet: &Fleet) -> Vec<Option<StateLabel>> {
    (0..fleet.len()).map(|i| fleet.snapshot(i).map(|s| s.state)).collect()
}

fn lease_of(fleet: &Fleet) -> Option<(usize, Term)> {
    fleet.lease().map(|l| (l.holder, l.term))
}

fn rule_name(rule: TripRule) -> &'static str {
    match rule {
        TripRule::FailureRate => "failure rate",
        TripRule::SlowCallRate => "slow-call rate",
        TripRule::ConsecutiveFailures => "consecutive failures",
        TripRule::BurnRate => "error-budget burn rate",
    }
}

fn state_text(state: &FleetState) -> String {
    match state {
        FleetState::Open { duration_ms } => format!("open for {}", secs(*duration_ms)),
        FleetState::HalfOpen { budget, grants } => {
            let total: u32 = grants.iter().map(|g| g.probes).sum();
            let who: Vec<&str> = grants.iter().map(|g| g.node.as_str()).collect();
            format!(
                "half-open, {total} of {budget} probes granted to {}",
                if who.is_empty() { "nobody".into() } else { who.join(",") }
            )
        }
        FleetState::Ramping { admit_per_mille, .. } => format!("ramping, admitting {admit_per_mille}‰"),
        other => other.label().as_str().to_owned(),
    }
}

/// One decision, in words.
pub fn describe(d: &Decision) -> String {
    let state = state_text(&d.state);
    match &d.reason {
        Reason::Initial => format!("first decision: {state}"),
        Reason::TermStarted { previous } => {
            format!(
                "{} restated the fleet state under term {}: {state} (was decision {previous})",
                d.decider, d.id.term.0
            )
        }
        Reason::Tripped { rule, evidence } => {
            let basis = match rule {
                TripRule::ConsecutiveFailures => format!("a streak of {} failures", evidence.streak),
                TripRule::SlowCallRate => format!("{}/{} slow", evidence.slow, evidence.decisive),
                _ => format!("{}/{} failed", evidence.failed, evidence.decisive),
            };
            let from = if evidence.nodes == 1 { "1 node".to_owned() } else { format!("{} nodes", evidence.nodes) };
            format!("tripped on {}: {basis} from {from}; {state}", rule_name(*rule))
        }
        Reason::OpenElapsed => state,
        Reason::HealthCheckPassed { successes } => format!("{successes} health checks passed: {state}"),
        Reason::ProbesGranted => format!("more probes for nodes that asked: {state}"),
        Reason::ProbesSucceeded { successes } => format!("{state}: {successes} probe successes"),
        Reason::ProbeFailed { failures } => {
            let n = if *failures == 1 { "a probe".to_owned() } else { format!("{failures} probes") };
            format!("{n} failed: {state} (backoff level {})", d.backoff_level)
        }
        Reason::HalfOpenTimedOut => format!("half-open round timed out: {state}"),
        Reason::RampAdvanced => format!("ramp advanced: {state}"),
        Reason::Reconfigured { from, to } => format!("config version {from} -> {to}: {state}"),
        Reason::Manual { command, actor, reason } => format!("{command:?} by {actor} ({reason}): {state}"),
        Reason::OverrideExpired { command, after_ms } => format!("{command:?} expired after {after_ms} ms: {state}"),
    }
}

struct Run {
    fleet: Fleet,
    moments: Vec<Moment>,
    /// Each node's effective state as far as the events read so far tell.
    states: Vec<Option<StateLabel>>,
    seen_events: usize,
    announced: BTreeSet<DecisionId>,
    written_at: BTreeMap<DecisionId, u64>,
    takeovers: Vec<Takeover>,
    restarts: Vec<Restart>,
    last_killed: Option<usize>,
}

impl Run {
    fn note(&mut self, at_ms: u64, what: String) {
        let moment = Moment { at_ms, states: self.states.clone(), decider: lease_of(&self.fleet), what };
        self.moments.push(moment);
    }

    fn fault(&mut self, fault: Fault) -> Result<(), FleetError> {
        let now = self.fleet.now();
        match fault {
            Fault::KillDecider => {
                let Some((holder, term)) = lease_of(&self.fleet) else {
                    self.note(now, "no decider to kill".into());
                    return Ok(());
                };
                self.fleet.kill(holder)?;
                self.states[holder] = None;
                self.last_killed = Some(holder);
                self.takeovers.push(Takeover { killed: holder, killed_at_ms: now, old_term: term, by: None });
                self.note(now, format!("decider {} killed (no step-down: its lease must expire)", name(holder)));
            }
            Fault::RestartStandby => {
                let decider = self.fleet.decider();
                if let Some(i) = (0..self.fleet.len()).rev().find(|&i| self.fleet.is_up(i) && Some(i) != decider) {
                    self.restart(i)?;
                }
            }
            Fault::RestartKilled => {
                if let Some(i) = self.last_killed.take() {
                    self.restart(i)?;
                }
            }
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> Result<(), FleetError> {
        let now = self.fleet.now();
        self.fleet.restart(i)?;
        // A fresh machine starts closed; its bootstrap's events say where it went from there.
        self.states[i] = Some(StateLabel::Closed);
        self.read_events();
        let fleet = self.fleet.current_decision().map_or(StateLabel::Closed, |d| d.state.label());
        let admission = self.fleet.snapshot(i).map_or(Admission::Reject, |s| s.admission);
        self.restarts.push(Restart { node: i, at_ms: now, fleet, admission });
        let incarnation = self.fleet.incarnation(i).unwrap_or(0);
        let state = self.fleet.snapshot(i).map_or(StateLabel::Closed, |s| s.state);
        self.note(
            now,
            format!(
                "{} restarted (incarnation {incarnation}): bootstrapped from the state bucket, {} before its first call",
                name(i),
                state.as_str()
            ),
        );
        Ok(())
    }

    /// Walks the events not read yet. A decision's line is written once every node has
    /// applied it (all its watch deliveries come before the next decision's), so several
    /// decisions within one step each show the states they produced.
    fn read_events(&mut self) {
        let now = self.fleet.now();
        let events: Vec<(usize, Event)> =
            self.fleet.events()[self.seen_events..].iter().map(|(_, node, e)| (*node, e.clone())).collect();
        self.seen_events += events.len();
        let mut pending: Option<DecisionId> = None;
        for (node, event) in events {
            match event {
                Event::EffectiveChanged { to, .. } => self.states[node] = Some(to),
                Event::Applied { id, .. } if !self.announced.contains(&id) => {
                    if let Some(done) = pending.replace(id) {
                        self.note_decision(now, done);
                    }
                    self.announced.insert(id);
                }
                Event::LeaseGained { term } => {
                    if let Some(done) = pending.take() {
                        self.note_decision(now, done);
                    }
                    self.note_lease(now, node, term);
                }
                _ => {}
            }
        }
        if let Some(done) = pending {
            self.note_decision(now, done);
        }
    }

    fn note_decision(&mut self, now: u64, id: DecisionId) {
        if let Some(d) = self.fleet.history().iter().rev().find(|(_, d)| d.id == id).map(|(_, d)| d.clone()) {
            self.note(now, describe(&d));
        }
    }

    fn note_lease(&mut self, now: u64, node: usize, term: Term) {
        let pending = self.takeovers.iter_mut().find(|t| t.by.is_none() && t.old_term < term);
        let what = match pending {
            Some(t) => {
                t.by = Some((node, now, term));
                format!(
                    "{} took over the lease, term {} ({} after the crash)",
                    name(node),
                    term.0,
                    secs(now - t.killed_at_ms)
                )
            }
            None => format!("{} acquired the lease, term {}", name(node), term.0),
        };
        self.note(now, what);
    }

    fn after_step(&mut self) {
        let now = self.fleet.now();
        for (_, d) in self.fleet.history() {
            self.written_at.entry(d.id).or_insert(now);
        }
        self.read_events();
    }
}

/// Runs `script` and collects its timeline.
pub fn run(script: &Script) -> Result<Timeline, FleetError> {
    if script.nodes > MAX_NODES {
        return Err(FleetError::Spec { field: "nodes", problem: format!("at most {MAX_NODES} for the timeline") });
    }
    let fleet = Fleet::new(script.spec())?;
    let mut run = Run {
        states: states(&fleet),
        fleet,
        moments: Vec::new(),
        announced: BTreeSet::new(),
        written_at: BTreeMap::new(),
        seen_events: 0,
        takeovers: Vec::new(),
        restarts: Vec::new(),
        last_killed: None,
    };
    let mut faults = script.faults.clone();
    faults.sort_by_key(|(at, _)| *at);
    let mut faults = faults.into_iter().peekable();
    let mut health = script.dependency.iter().peekable();
    while run.fleet.now() < script.end_ms {
        while let Some((_, fault)) = faults.next_if(|(at, _)| *at <= run.fleet.now()) {
            run.fault(fault)?;
        }
        run.fleet.step();
        let now = run.fleet.now();
        while let Some((from, per_mille)) = health.next_if(|(from, _)| *from <= now) {
            if *from > 0 {
                let what = if *per_mille >= UNHEALTHY_PER_MILLE {
                    format!("dependency starts failing ({per_mille}‰ of calls)")
                } else {
                    format!("dependency recovers ({per_mille}‰ of calls fail)")
                };
                run.note(*from, what);
            }
        }
        run.after_step();
    }
    let summary = summarize(script, &run);
    Ok(Timeline { header: header(script), moments: run.moments, summary })
}

fn summarize(script: &Script, run: &Run) -> Summary {
    let fleet = &run.fleet;
    let written = |d: &Decision| run.written_at.get(&d.id).copied().unwrap_or(0);
    let first_trip = fleet
        .history()
        .iter()
        .find(|(_, d)| matches!(d.reason, Reason::Tripped { .. }))
        .map(|(_, d)| (written(d), describe(d)));
    // A node applying an old decision at its own restart is a bootstrap, not propagation.
    let bootstrap = |at: u64, node: usize| run.restarts.iter().any(|r| r.at_ms == at && r.node == node);
    let propagation_ms = fleet
        .history()
        .iter()
        .filter_map(|(_, d)| {
            let written = written(d);
            fleet
                .events()
                .iter()
                .filter(|(at, node, e)| matches!(e, Event::Applied { id, .. } if *id == d.id) && !bootstrap(*at, *node))
                .map(|(at, _, _)| at.saturating_sub(written))
                .max()
        })
        .max();
    let rounds = fleet
        .history()
        .iter()
        .filter_map(|(_, d)| match &d.state {
            FleetState::HalfOpen { budget, .. } if d.phase == d.id => Some(Round {
                phase: d.phase,
                budget: *budget,
                probes: fleet.probes_by_phase().get(&d.phase).copied().unwrap_or(0),
            }),
            _ => None,
        })
        .collect();
    let admitted = |label| fleet.admitted_by_fleet_state().get(&label).copied().unwrap_or(0);
    Summary {
        failing_since_ms: script.failing_since(),
        first_trip_ms: first_trip.as_ref().map(|(at, _)| *at),
        first_trip: first_trip.map(|(_, what)| what),
        propagation_ms,
        rounds,
        probe_budget: script.config.half_open.probe_budget,
        admitted_while_open: admitted(StateLabel::Open),
        admitted_while_half_open: admitted(StateLabel::HalfOpen),
        rejected: fleet.total_counters().rejected,
        takeovers: run.takeovers.clone(),
        restarts: run.restarts.clone(),
        final_states: states(fleet),
        decisions: fleet.history().len(),
        trace_hash: fleet.trace_hash(),
    }
}

fn header(script: &Script) -> Vec<String> {
    let ttl = secs(script.lease_ttl_ms);
    let mut health = String::new();
    for (i, (from, per_mille)) in script.dependency.iter().enumerate() {
        let span = match script.dependency.get(i + 1) {
            Some((to, _)) if *from == 0 => format!("until {}", secs(*to)),
            Some((to, _)) => format!("{}-{}", secs(*from), secs(*to)),
            None => format!("from {}", secs(*from)),
        };
        let _ = write!(health, "{}{} {span}", if i == 0 { "" } else { ", " }, per_mille_text(*per_mille));
    }
    vec![
        format!(
            "Fusebox outage timeline: a deterministic simulation of {} nodes running the real breaker state machine",
            script.nodes
        ),
        format!(
            "over a simulated NATS (outcome stream, state bucket with CAS, lease with a {ttl} TTL; no network latency),"
        ),
        "seeded, so every run of the same seed is identical. The live NATS cluster demo comes later.".into(),
        format!(
            "Script: {} calls per node every {} ms; dependency {health}; seed {}.",
            script.calls_per_flush, script.flush_ms, script.seed
        ),
    ]
}

fn per_mille_text(per_mille: u16) -> String {
    if per_mille >= UNHEALTHY_PER_MILLE {
        format!("failing ({per_mille}‰)")
    } else {
        format!("healthy ({per_mille}‰ errors)")
    }
}

impl Timeline {
    /// Why the run does not tell the story it should; empty when it does.
    pub fn problems(&self) -> Vec<String> {
        let s = &self.summary;
        let mut problems = Vec::new();
        if s.first_trip_ms.is_none() {
            problems.push("the fleet never tripped".to_owned());
        }
        if s.rounds.is_empty() {
            problems.push("the fleet never went half-open".to_owned());
        }
        for r in &s.rounds {
            if r.probes > u64::from(r.budget) {
                problems
                    .push(format!("round {}: {} probes admitted, over the budget of {}", r.phase, r.probes, r.budget));
            }
        }
        if s.admitted_while_open > 0 {
            problems.push(format!("{} calls were let through by nodes that had applied open", s.admitted_while_open));
        }
        if s.final_states.iter().flatten().any(|state| *state != StateLabel::Closed) {
            problems.push("the fleet did not end closed on every node".to_owned());
        }
        if s.final_states.iter().all(Option::is_none) {
            problems.push("no node is up at the end".to_owned());
        }
        for t in &s.takeovers {
            match t.by {
                None => problems.push(format!("nobody took over from {} after it was killed", name(t.killed))),
                Some((_, _, term)) if term <= t.old_term => {
                    problems.push(format!("the takeover's term {} is not above {}", term.0, t.old_term.0));
                }
                Some(_) => {}
            }
        }
        for r in &s.restarts {
            if r.fleet == StateLabel::Open && r.admission != Admission::Reject {
                problems.push(format!("{} restarted while open but admitted calls ({:?})", name(r.node), r.admission));
            }
        }
        problems
    }

    /// The header and one line per moment.
    pub fn render_moments(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        for m in &self.moments {
            let _ = write!(out, "{:>9}  ", secs(m.at_ms));
            for (i, state) in m.states.iter().enumerate() {
                let label = state.map_or("down", StateLabel::as_str);
                let _ = write!(out, "{:<13}", format!("{} {label}", name(i)));
            }
            let decider = m.decider.map_or("decider -      ".to_owned(), |(d, t)| {
                format!("{:<15}", format!("decider {}/t{}", name(d), t.0))
            });
            let _ = writeln!(out, " {decider} {}", m.what);
        }
        out
    }

    /// The summary table.
    pub fn render_summary(&self) -> String {
        let s = &self.summary;
        let mut rows: Vec<(String, String)> = Vec::new();
        let detection = match (s.failing_since_ms, s.first_trip_ms) {
            (Some(from), Some(at)) => format!(
                "{} (failing from {}, first trip decision at {})",
                ms(at.saturating_sub(from)),
                secs(from),
                secs(at)
            ),
            (_, None) => "never tripped".into(),
            (None, Some(at)) => format!("tripped at {} without a failing dependency", secs(at)),
        };
        rows.push(("detection".into(), detection));
        if let Some(trip) = &s.first_trip {
            rows.push(("first trip".into(), trip.clone()));
        }
        rows.push((
            "propagation".into(),
            s.propagation_ms.map_or("-".into(), |p| {
                format!(
                    "{} (slowest decision: written -> applied on every node up; the simulated network has no latency)",
                    ms(p)
                )
            }),
        ));
        let probes: Vec<String> = s.rounds.iter().map(|r| r.probes.to_string()).collect();
        let max = s.rounds.iter().map(|r| r.probes).max().unwrap_or(0);
        rows.push((
            "half-open rounds".into(),
            format!(
                "{} rounds, probes per round [{}]: max {max}, fleet-wide budget {}",
                s.rounds.len(),
                probes.join(", "),
                s.probe_budget
            ),
        ));
        rows.push((
            "let through".into(),
            format!(
                "{} calls while open, {} probes while half-open; {} calls rejected",
                s.admitted_while_open, s.admitted_while_half_open, s.rejected
            ),
        ));
        for t in &s.takeovers {
            let value = match t.by {
                Some((by, at, term)) => format!(
                    "{} (decider {} killed at {}, {} took over at {}, term {} -> {}; terms are lease-key revisions)",
                    ms(at - t.killed_at_ms),
                    name(t.killed),
                    secs(t.killed_at_ms),
                    name(by),
                    secs(at),
                    t.old_term.0,
                    term.0
                ),
                None => {
                    format!("none: decider {} killed at {}, nobody took over", name(t.killed), secs(t.killed_at_ms))
                }
            };
            rows.push(("takeover".into(), value));
        }
        for r in &s.restarts {
            rows.push((
                "restart".into(),
                format!(
                    "{} at {} while the fleet was {}: {} from its first call",
                    name(r.node),
                    secs(r.at_ms),
                    r.fleet.as_str(),
                    r.admission.label().as_str()
                ),
            ));
        }
        let finals: Vec<String> = s
            .final_states
            .iter()
            .enumerate()
            .map(|(i, st)| format!("{} {}", name(i), st.map_or("down", StateLabel::as_str)))
            .collect();
        rows.push(("final state".into(), finals.join(", ")));
        rows.push(("decisions".into(), format!("{} written; trace hash {:016x}", s.decisions, s.trace_hash)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::from("Summary\n");
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }
}

fn ms(v: u64) -> String {
    format!("{v} ms")
}
