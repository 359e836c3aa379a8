//! Table-driven example tests of the machine: one scripted [`Case`] per policy and
//! transition, all run through [`check`]. A case drives one machine (node `n0`, which may
//! hold the lease) with local outcomes, peers' reports, time, lease and transport inputs,
//! and asserts on what it applied, decided and emitted along the way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const ME: &str = "n0";

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// One thing that happens in a case.
#[derive(Clone)]
enum Act {
    /// Move the clock to this ms (absolute) and tick.
    At(u64),
    /// Gain the lease at this term (ttl 10 s, sent now).
    Lead(u64),
    /// A peer's report: (node, success, failure, slow, rejected, streak), attributed to
    /// the decision this node has applied.
    Report(&'static str, u64, u64, u64, u64, u64),
    /// A peer's report attributed to a decision from before the current phase.
    StaleReport(&'static str, u64, u64),
    /// A peer's report claiming to have applied decision `(term, seq)`: (node, failure,
    /// term, seq), whatever this node knows of it.
    ClaimsApplied(&'static str, u64, u64, u64),
    /// A peer's report replayed from the stream: (node, success, failure, age ms, backlog).
    Replayed(&'static str, u64, u64, u64, bool),
    /// The same peer report again (a redelivery).
    Redeliver,
    /// Local outcomes under the current generation: (success, failure, slow, rejected, streak).
    Local(u64, u64, u64, u64, u64),
    /// Local outcomes under a superseded generation.
    StaleLocal(u64),
    /// An operator command.
    Command(CommandKind),
    /// A time-boxed operator command: (kind, duration ms).
    Timed(CommandKind, u64),
    /// Answer the last health check.
    Health(bool),
    /// A decision of another decider at this term and seq with this state.
    Foreign(u64, u64, FleetState),
    /// Stop acknowledging writes (writes then fail with a transport error).
    FailWrites,
    /// Acknowledge writes again.
    AckWrites,
    /// The next write loses its CAS to a decision of another term in this state.
    LoseCas(u64, FleetState),
    /// Raw input.
    Raw(Input),
    /// Start over with a machine that has not bootstrapped.
    Fresh,
    /// The next write loses its CAS to a decision of this term and seq, made by someone else.
    SameTermWinner(u64, u64),
    /// Assert.
    Expect(Expect),
}

#[derive(Clone, Debug)]
enum Expect {
    /// The applied fleet state.
    Fleet(StateLabel),
    /// The effective state.
    Effective(StateLabel),
    /// The hot-path admission.
    Admission(Admission),
    /// Decisions written so far.
    Decisions(usize),
    /// The last written decision's reason, by Debug prefix.
    Reason(&'static str),
    /// Some effect since the start whose Debug output contains this.
    Emitted(&'static str),
    /// No effect since the start contains this.
    NotEmitted(&'static str),
    /// Whether this node decides.
    Deciding(bool),
    /// The probes granted to a node in the applied decision.
    Grant(&'static str, u32),
    /// A counter from `Stats`, by name.
    Stat(&'static str, u64),
    /// The last written decision's `expires_after_ms`.
    Expires(Option<u64>),
}

struct Case {
    name: &'static str,
    config: BreakerConfig,
    script: Vec<Act>,
}

struct Rig {
    m: Machine,
    now: u64,
    written: Vec<Decision>,
    log: Vec<Effect>,
    peer_seq: u64,
    last_peer_report: Option<Report>,
    acks: bool,
    lose_cas: Option<Decision>,
    last_health: Option<u64>,
    config: BreakerConfig,
}

impl Rig {
    fn new(config: &BreakerConfig) -> Self {
        let mut rig = Self::unbooted(config);
        rig.input(Input::NoDecisionYet);
        rig
    }

    fn unbooted(config: &BreakerConfig) -> Self {
        let params = NodeParams {
            breaker: BreakerName::new("b").unwrap(),
            node: node(ME),
            incarnation: 1,
            lease_margin_ms: 100,
        };
        Self {
            m: Machine::new(params, config).unwrap(),
            now: 0,
            written: Vec::new(),
            log: Vec::new(),
            peer_seq: 0,
            last_peer_report: None,
            acks: true,
            lose_cas: None,
            last_health: None,
            config: config.clone(),
        }
    }

    /// Feeds an input and plays the transport: writes are acknowledged and watched back,
    /// own reports are delivered back to the decider, health checks remembered.
    fn input(&mut self, input: Input) {
        let mut queue = std::collections::VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let effects = self.m.step(Millis(self.now), input);
            for e in &effects {
                match e {
                    Effect::WriteDecision(d) => {
                        if let Some(winner) = self.lose_cas.take() {
                            queue.push_back(Input::DecisionRejected { id: d.id, current: Some(winner) });
                        } else if self.acks {
                            self.written.push(d.clone());
                            queue.push_back(Input::DecisionWritten { id: d.id });
                            queue.push_back(Input::DecisionObserved(d.clone()));
                        } else {
                            queue.push_back(Input::DecisionWriteFailed { id: d.id });
                        }
                    }
                    Effect::PublishReport(r) => {
                        queue.push_back(Input::Report { report: r.clone(), arrival: Arrival::LIVE });
                    }
                    Effect::RunHealthCheck { attempt } => self.last_health = Some(*attempt),
                    _ => {}
                }
            }
            self.log.extend(effects);
        }
    }

    fn clock_for(&self, peer: &NodeId) -> VectorClock {
        let mut clock = self.m.applied().map_or_else(|| VectorClock::new(Term(0)), |d| d.clock.clone());
        for _ in 0..self.peer_seq {
            clock.tick(peer);
        }
        clock
    }

    fn peer_report(&mut self, peer: &str, counts: OutcomeCounts, streak: u64, applied: DecisionId) -> Report {
        self.peer_seq += 1;
        let peer = node(peer);
        Report {
            version: WIRE_VERSION,
            breaker: BreakerName::new("b").unwrap(),
            clock: self.clock_for(&peer),
            node: peer,
            incarnation: 1,
            seq: self.peer_seq,
            applied,
            counts,
            longest_failure_streak: streak,
            local_open: false,
        }
    }

    fn act(&mut self, act: &Act, case: &str) {
        match act.clone() {
            Act::At(ms) => {
                self.now = ms;
                self.input(Input::Tick);
            }
            Act::Lead(term) => {
                let sent_at = Millis(self.now);
                self.input(Input::LeaseGained { term: Term(term), sent_at, ttl_ms: 10_000 });
            }
            Act::Report(peer, success, failure, slow, rejected, streak) => {
                let counts = OutcomeCounts { success, failure, slow, rejected, ignored: 0 };
                let r = self.peer_report(peer, counts, streak, self.m.applied_id());
                self.last_peer_report = Some(r.clone());
                self.input(Input::Report { report: r, arrival: Arrival::LIVE });
            }
            Act::StaleReport(peer, success, failure) => {
                let counts = OutcomeCounts { success, failure, ..OutcomeCounts::default() };
                let phase = self.m.applied().map_or(DecisionId::NONE, |d| d.phase);
                let older = self.written.iter().rev().find(|d| d.id < phase).map_or(DecisionId::NONE, |d| d.id);
                let r = self.peer_report(peer, counts, 0, older);
                self.input(Input::Report { report: r, arrival: Arrival::LIVE });
            }
            Act::ClaimsApplied(peer, failure, term, seq) => {
                let counts = OutcomeCounts { failure, ..OutcomeCounts::default() };
                let r = self.peer_report(peer, counts, failure, DecisionId::new(term, seq));
                self.input(Input::Report { report: r, arrival: Arrival::LIVE });
            }
            Act::Replayed(peer, success, failure, age_ms, backlog) => {
                let counts = OutcomeCounts { success, failure, ..OutcomeCounts::default() };
                let report = self.peer_report(peer, counts, failure, self.m.applied_id());
                self.input(Input::Report { report, arrival: Arrival { age_ms, backlog } });
            }
            Act::Redeliver => {
                let r = self.last_peer_report.clone().expect("a report to redeliver");
                self.input(Input::Report { report: r, arrival: Arrival::LIVE });
            }
            Act::Local(success, failure, slow, rejected, streak) => {
                let counts = OutcomeCounts { success, failure, slow, rejected, ignored: 0 };
                let generation = self.m.snapshot().generation;
                self.input(Input::LocalOutcomes(LocalOutcomes { generation, counts, longest_failure_streak: streak }));
            }
            Act::StaleLocal(failure) => {
                let counts = OutcomeCounts { failure, ..OutcomeCounts::default() };
                let generation = self.m.snapshot().generation - 1;
                self.input(Input::LocalOutcomes(LocalOutcomes { generation, counts, longest_failure_streak: 0 }));
            }
            Act::Command(kind) => self.command(kind, None, case),
            Act::Timed(kind, ms) => self.command(kind, Some(ms), case),
            Act::Health(healthy) => {
                let attempt = self.last_health.expect("a health check was requested");
                self.input(Input::HealthCheckResult { attempt, healthy });
            }
            Act::Foreign(term, seq, state) => {
                let d = foreign(term, seq, state);
                self.input(Input::DecisionObserved(d));
            }
            Act::FailWrites => self.acks = false,
            Act::AckWrites => self.acks = true,
            Act::LoseCas(term, state) => self.lose_cas = Some(foreign(term, 1, state)),
            Act::Raw(input) => self.input(input),
            Act::Fresh => {
                let config = self.config.clone();
                *self = Self::unbooted(&config);
            }
            Act::SameTermWinner(term, seq) => self.lose_cas = Some(foreign(term, seq, FleetState::ForcedOpen)),
            Act::Expect(expect) => self.expect(&expect, case),
        }
    }

    fn command(&mut self, kind: CommandKind, duration_ms: Option<u64>, case: &str) {
        self.input(Input::Command(Command {
            version: WIRE_VERSION,
            breaker: BreakerName::new("b").unwrap(),
            kind,
            actor: "ops@example".into(),
            reason: format!("case {case}"),
            duration_ms,
        }));
    }

    fn expect(&self, expect: &Expect, case: &str) {
        let snapshot = self.m.snapshot();
        let fleet = self.m.applied().map_or(StateLabel::Closed, |d| d.state.label());
        let ok = match expect {
            Expect::Fleet(label) => fleet == *label,
            Expect::Effective(label) => snapshot.state == *label,
            Expect::Admission(a) => snapshot.admission == *a,
            Expect::Decisions(n) => self.written.len() == *n,
            Expect::Reason(prefix) => {
                self.written.last().is_some_and(|d| format!("{:?}", d.reason).starts_with(prefix))
            }
            Expect::Emitted(text) => self.log.iter().any(|e| format!("{e:?}").contains(text)),
            Expect::NotEmitted(text) => !self.log.iter().any(|e| format!("{e:?}").contains(text)),
            Expect::Deciding(d) => self.m.is_deciding() == *d,
            Expect::Grant(n, probes) => self.m.applied().is_some_and(|d| d.state.grant_for(&node(n)) == *probes),
            Expect::Stat(name, value) => stat(&self.m.stats(), name) == *value,
            Expect::Expires(ms) => {
                self.written.last().is_some_and(|d| d.expires_after_ms.map(std::num::NonZeroU64::get) == *ms)
            }
        };
        assert!(
            ok,
            "case `{case}` at {} ms: expected {expect:?}\n  fleet {fleet:?}, snapshot {snapshot:?}\n  stats {:?}\n  decisions:\n{}",
            self.now,
            self.m.stats(),
            self.written
                .iter()
                .map(|d| format!("    {} {:?} {:?}", d.id, d.state, d.reason))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

fn foreign(term: u64, seq: u64, state: FleetState) -> Decision {
    let id = DecisionId::new(term, seq);
    Decision {
        version: WIRE_VERSION,
        breaker: BreakerName::new("b").unwrap(),
        id,
        phase: id,
        state,
        backoff_level: 0,
        reason: Reason::Initial,
        decider: node("n9"),
        clock: VectorClock::new(Term(term)),
        config_version: 1,
        expires_after_ms: None,
    }
}

/// Another decider's time-boxed manual decision: `state` for `ms`.
fn timed(term: u64, seq: u64, state: FleetState, ms: u64) -> Decision {
    Decision { expires_after_ms: std::num::NonZeroU64::new(ms), ..foreign(term, seq, state) }
}

fn stat(stats: &Stats, name: &str) -> u64 {
    match name {
        "stale_outcomes" => stats.stale_outcomes,
        "stale_reports" => stats.stale_reports,
        "duplicate_reports" => stats.duplicate_reports,
        "stale_decisions" => stats.stale_decisions,
        "refused_inputs" => stats.refused_inputs,
        "reports_not_judged" => stats.reports_not_judged,
        "reports_counted" => stats.reports_counted,
        "commands_not_deciding" => stats.commands_not_deciding,
        "decisions_made" => stats.decisions_made,
        other => panic!("no stat {other}"),
    }
}

/// Runs one case.
fn check(case: &Case) {
    let mut rig = Rig::new(&case.config);
    for act in &case.script {
        rig.act(act, case.name);
    }
}

/// A config small enough to script: count window of 10, minimum 10, 50 % failure rate,
/// open 1 s, 2 probes needed of a budget of 3, half-open waits 5 s, no overlay.
fn base() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy { window: WindowConfig::Count { calls: 10 }, minimum_calls: 10, ..TripPolicy::default() },
        open: OpenPolicy::Fixed { duration_ms: 1_000 },
        half_open: HalfOpenPolicy { probe_budget: 3, success_threshold: 2, max_wait_ms: 5_000, ramp: None },
        local: None,
        ..BreakerConfig::default()
    }
}

use Act::{At, Expect as E, Lead, Local, Report as R};
use Expect::{
    Admission as Adm, Deciding, Decisions, Effective, Emitted, Expires, Fleet, Grant, NotEmitted, Reason as Why, Stat,
};
use StateLabel::{Closed, ForcedOpen, HalfOpen, Open, Ramping};

/// Trip and open: leader n0, five failures of ten from a peer.
fn tripped() -> Vec<Act> {
    vec![Lead(1), R("n1", 5, 5, 0, 0, 0), E(Fleet(Open))]
}

fn cases() -> Vec<Case> {
    let burn = BurnRateRule { objective: 0.9, long_window_ms: 400, short_window_ms: 100, factor: 5.0 };
    vec![
        Case {
            name: "first decider writes the initial closed decision",
            config: base(),
            script: vec![
                E(Deciding(false)),
                Lead(1),
                E(Deciding(true)),
                E(Decisions(1)),
                E(Why("Initial")),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "failure rate trips at exactly the threshold (>=)",
            config: BreakerConfig {
                trip: TripPolicy {
                    window: WindowConfig::Count { calls: 20 },
                    minimum_calls: 10,
                    ..TripPolicy::default()
                },
                ..base()
            },
            script: vec![
                Lead(1),
                R("n1", 6, 4, 0, 0, 0),
                E(Fleet(Closed)),
                R("n2", 0, 2, 0, 0, 0),
                E(Fleet(Open)),
                E(Why("Tripped { rule: FailureRate, evidence: Evidence { decisive: 12, failed: 6")),
            ],
        },
        Case {
            name: "below the minimum number of calls no rate applies",
            config: BreakerConfig {
                trip: TripPolicy {
                    window: WindowConfig::Count { calls: 20 },
                    minimum_calls: 20,
                    ..TripPolicy::default()
                },
                ..base()
            },
            script: vec![Lead(1), R("n1", 0, 19, 0, 0, 0), E(Fleet(Closed)), R("n1", 1, 0, 0, 0, 0), E(Fleet(Open))],
        },
        Case {
            name: "count window forgets reports pushed out by newer ones",
            config: base(),
            script: vec![
                Lead(1),
                R("n1", 0, 4, 0, 0, 0),
                R("n1", 10, 0, 0, 0, 0),
                R("n1", 0, 4, 0, 0, 0),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "time window lets old failures expire",
            config: BreakerConfig {
                trip: TripPolicy {
                    window: WindowConfig::Time { duration_ms: 1_000, buckets: 10 },
                    minimum_calls: 4,
                    ..TripPolicy::default()
                },
                ..base()
            },
            script: vec![
                Lead(1),
                R("n1", 2, 1, 0, 0, 0),
                At(1_500),
                R("n1", 2, 1, 0, 0, 0),
                E(Fleet(Closed)),
                R("n1", 0, 2, 0, 0, 0),
                E(Fleet(Open)),
            ],
        },
        Case {
            name: "slow-call rate trips; slow calls are not failures",
            config: BreakerConfig {
                slow_call_threshold_ms: Some(200),
                trip: TripPolicy { failure_rate: Some(0.5), slow_call_rate: Some(0.6), ..base().trip },
                ..base()
            },
            script: vec![
                Lead(1),
                R("n1", 5, 0, 5, 0, 0),
                E(Fleet(Closed)),
                R("n1", 0, 0, 3, 0, 0),
                E(Fleet(Open)),
                E(Why("Tripped { rule: SlowCallRate")),
            ],
        },
        Case {
            name: "consecutive failures trip per node, below the minimum calls",
            config: BreakerConfig { trip: TripPolicy { consecutive_failures: Some(5), ..base().trip }, ..base() },
            script: vec![
                Lead(1),
                R("n1", 0, 4, 0, 0, 4),
                E(Fleet(Closed)),
                R("n1", 0, 1, 0, 0, 5),
                E(Fleet(Open)),
                E(Why("Tripped { rule: ConsecutiveFailures")),
            ],
        },
        Case {
            name: "burn rate needs the long and the short window burning",
            config: BreakerConfig {
                trip: TripPolicy { failure_rate: None, burn_rate: Some(burn), minimum_calls: 10, ..base().trip },
                ..base()
            },
            script: vec![
                Lead(1),
                R("n1", 10, 0, 0, 0, 0),
                E(Fleet(Closed)),
                At(300),
                R("n1", 5, 10, 0, 0, 0),
                E(Fleet(Closed)),
                At(310),
                R("n1", 0, 5, 0, 0, 0),
                E(Fleet(Open)),
                E(Why("Tripped { rule: BurnRate")),
            ],
        },
        Case {
            name: "a decider switched to a new config version stays open and records the switch",
            config: base(),
            script: [
                tripped(),
                vec![
                    Act::Raw(Input::Reconfigure(Box::new(
                        BreakerConfig { version: 2, quorum: 2, ..base() }.validate().unwrap(),
                    ))),
                    E(Fleet(Open)),
                    E(Why("Reconfigured { from: 1, to: 2 }")),
                    E(Emitted("Reconfigured { from: 1, to: 2 }")),
                    E(Decisions(3)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "a reconfigure command makes the decider read the fleet's config, and decides nothing",
            config: base(),
            script: vec![
                Lead(1),
                E(Decisions(1)),
                Act::Command(CommandKind::Reconfigure),
                E(Emitted("ReloadConfig { version: 0 }")),
                E(Decisions(1)),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "a decision made under another config version asks for the fleet's config",
            config: base(),
            script: vec![
                Act::Raw(Input::DecisionObserved(Decision { config_version: 7, ..foreign(1, 1, FleetState::Closed) })),
                E(Emitted("ReloadConfig { version: 7 }")),
                E(NotEmitted("ReloadConfig { version: 1 }")),
            ],
        },
        Case {
            name: "quorum: one sick node cannot open the fleet, two can",
            config: BreakerConfig { quorum: 2, ..base() },
            script: vec![
                Lead(1),
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(Closed)),
                R("n2", 0, 1, 0, 0, 0),
                E(Fleet(Open)),
                E(Why("Tripped { rule: FailureRate, evidence: Evidence { decisive: 11, failed: 11, slow: 0, nodes: 2")),
            ],
        },
        Case {
            name: "open ends exactly at its duration, then grants probes to nodes that showed demand",
            config: base(),
            script: [
                tripped(),
                vec![
                    R("n2", 0, 0, 0, 4, 0),
                    R("n3", 0, 0, 0, 1, 0),
                    At(999),
                    E(Fleet(Open)),
                    At(1_000),
                    E(Fleet(HalfOpen)),
                    E(Why("OpenElapsed")),
                    E(Grant("n2", 2)),
                    E(Grant("n3", 1)),
                    E(Grant("n1", 0)),
                    E(Adm(Admission::Probe { grant: 0, round: 1 })),
                ],
            ]
            .concat(),
        },
        Case {
            name: "half-open closes on enough probe successes",
            config: base(),
            script: [
                tripped(),
                vec![
                    R("n2", 0, 0, 0, 4, 0),
                    At(1_000),
                    R("n2", 1, 0, 0, 0, 0),
                    E(Fleet(HalfOpen)),
                    R("n2", 1, 0, 0, 0, 0),
                    E(Fleet(Closed)),
                    E(Why("ProbesSucceeded { successes: 2 }")),
                ],
            ]
            .concat(),
        },
        Case {
            name: "a probe failure reopens one backoff level up",
            config: BreakerConfig {
                open: OpenPolicy::Exponential { initial_ms: 1_000, max_ms: 10_000, multiplier: 2, jitter: 0.0 },
                ..base()
            },
            script: [
                tripped(),
                vec![
                    R("n2", 0, 0, 0, 4, 0),
                    At(1_000),
                    R("n2", 0, 1, 0, 0, 0),
                    E(Fleet(Open)),
                    E(Why("ProbeFailed")),
                    E(Emitted("Open { duration_ms: 2000 }")),
                    E(Emitted("backoff_level: 1")),
                ],
            ]
            .concat(),
        },
        Case {
            name: "probe results beyond a node's grant are not counted",
            config: base(),
            script: [
                tripped(),
                vec![R("n2", 0, 0, 0, 1, 0), At(1_000), E(Grant("n2", 1)), R("n2", 5, 0, 0, 0, 0), E(Fleet(HalfOpen))],
            ]
            .concat(),
        },
        Case {
            name: "late demand in half-open gets the rest of the budget",
            config: base(),
            script: [
                tripped(),
                vec![
                    R("n2", 0, 0, 0, 1, 0),
                    At(1_000),
                    E(Grant("n2", 1)),
                    R("n3", 0, 0, 0, 9, 0),
                    E(Why("ProbesGranted")),
                    E(Grant("n3", 2)),
                    E(Fleet(HalfOpen)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "half-open waits at most its max wait, then reopens",
            config: base(),
            script: [
                tripped(),
                vec![
                    At(1_000),
                    E(Fleet(HalfOpen)),
                    At(5_999),
                    E(Fleet(HalfOpen)),
                    At(6_000),
                    E(Fleet(Open)),
                    E(Why("HalfOpenTimedOut")),
                ],
            ]
            .concat(),
        },
        Case {
            name: "progressive ramp admits a share per stage, then closes",
            config: BreakerConfig {
                half_open: HalfOpenPolicy {
                    ramp: Some(RampPolicy { stages_percent: vec![25, 50], stage_ms: 500 }),
                    ..base().half_open
                },
                ..base()
            },
            script: [
                tripped(),
                vec![
                    R("n2", 0, 0, 0, 4, 0),
                    At(1_000),
                    R("n2", 2, 0, 0, 0, 0),
                    E(Fleet(Ramping)),
                    E(Adm(Admission::Fraction { per_mille: 250 })),
                    At(1_500),
                    E(Adm(Admission::Fraction { per_mille: 500 })),
                    At(2_000),
                    E(Fleet(Closed)),
                    E(Adm(Admission::Allow)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "force-open wins over evidence until reset",
            config: base(),
            script: vec![
                Lead(1),
                Act::Command(CommandKind::ForceOpen),
                E(Fleet(ForcedOpen)),
                E(Adm(Admission::Reject)),
                R("n1", 10, 0, 0, 0, 0),
                At(9_000),
                E(Fleet(ForcedOpen)),
                E(Why("Manual { command: ForceOpen, actor: \"ops@example\"")),
                Act::Command(CommandKind::Reset),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "force-closed never trips",
            config: base(),
            script: vec![
                Lead(1),
                Act::Command(CommandKind::ForceClosed),
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(StateLabel::ForcedClosed)),
                E(Adm(Admission::Allow)),
                E(Stat("reports_not_judged", 1)),
            ],
        },
        Case {
            name: "disabled permits everything and records nothing",
            config: base(),
            script: vec![
                Lead(1),
                Act::Command(CommandKind::Disable),
                E(Fleet(StateLabel::Disabled)),
                E(Adm(Admission::Allow)),
                E(Emitted("record: false")),
            ],
        },
        Case {
            name: "metrics-only reports what would trip but permits",
            config: base(),
            script: vec![
                Lead(1),
                Act::Command(CommandKind::MetricsOnly),
                R("n1", 0, 10, 0, 0, 0),
                E(Emitted("WouldTrip { rule: FailureRate }")),
                E(Fleet(StateLabel::MetricsOnly)),
                E(Adm(Admission::Allow)),
            ],
        },
        Case {
            name: "a time-boxed force-open returns to automatic control when it expires",
            config: base(),
            script: [
                vec![
                    Lead(1),
                    At(1_000),
                    Act::Timed(CommandKind::ForceOpen, 5_000),
                    E(Fleet(ForcedOpen)),
                    E(Expires(Some(5_000))),
                    E(Emitted("WakeAt(Millis(6000))")),
                    R("n1", 0, 10, 0, 0, 0),
                    At(5_999),
                    E(Fleet(ForcedOpen)),
                    E(Decisions(2)),
                    At(6_000),
                    E(Fleet(Closed)),
                    E(Decisions(3)),
                    E(Why("OverrideExpired { command: ForceOpen, after_ms: 5000 }")),
                    E(Expires(None)),
                    At(9_000),
                    E(Decisions(3)),
                ],
                // Automatic again: evidence trips it.
                vec![R("n1", 5, 5, 0, 0, 0), E(Fleet(Open))],
            ]
            .concat(),
        },
        Case {
            name: "every manual state can be time-boxed and ends closed",
            config: base(),
            script: vec![
                Lead(1),
                Act::Timed(CommandKind::ForceClosed, 100),
                E(Fleet(StateLabel::ForcedClosed)),
                At(100),
                E(Why("OverrideExpired { command: ForceClosed")),
                Act::Timed(CommandKind::Disable, 100),
                E(Fleet(StateLabel::Disabled)),
                At(200),
                E(Why("OverrideExpired { command: Disable")),
                Act::Timed(CommandKind::MetricsOnly, 100),
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(StateLabel::MetricsOnly)),
                At(300),
                E(Why("OverrideExpired { command: MetricsOnly")),
                E(Fleet(Closed)),
                E(Adm(Admission::Allow)),
            ],
        },
        Case {
            name: "a reset or a newer command ends a time box early and it never fires",
            config: base(),
            script: vec![
                Lead(1),
                Act::Timed(CommandKind::ForceOpen, 1_000),
                Act::Command(CommandKind::Reset),
                E(Fleet(Closed)),
                Act::Timed(CommandKind::Disable, 1_000),
                Act::Command(CommandKind::ForceOpen),
                E(Expires(None)),
                At(5_000),
                E(Fleet(ForcedOpen)),
                E(Decisions(5)),
                E(NotEmitted("OverrideExpired")),
            ],
        },
        Case {
            name: "a new decider restates a time-boxed override in full and ends it",
            config: base(),
            script: vec![
                Act::Fresh,
                Act::Raw(Input::DecisionObserved(timed(1, 3, FleetState::ForcedOpen, 5_000))),
                At(2_000),
                Lead(2),
                E(Why("TermStarted")),
                E(Fleet(ForcedOpen)),
                E(Expires(Some(5_000))),
                At(6_999),
                E(Fleet(ForcedOpen)),
                At(7_000),
                E(Fleet(Closed)),
                E(Why("OverrideExpired { command: ForceOpen, after_ms: 5000 }")),
            ],
        },
        Case {
            name: "impossible time boxes are refused",
            config: base(),
            script: vec![
                Lead(1),
                Act::Timed(CommandKind::Reset, 1_000),
                Act::Timed(CommandKind::ForceOpen, 0),
                Act::Timed(CommandKind::ForceOpen, MAX_OVERRIDE_MS + 1),
                E(Stat("refused_inputs", 3)),
                E(Fleet(Closed)),
                E(Decisions(1)),
                Act::Timed(CommandKind::ForceOpen, MAX_OVERRIDE_MS),
                E(Fleet(ForcedOpen)),
                // A decision may only time-box a manual state.
                Act::Raw(Input::DecisionObserved(timed(5, 1, FleetState::Closed, 1_000))),
                Act::Raw(Input::DecisionObserved(timed(5, 1, FleetState::ForcedOpen, MAX_OVERRIDE_MS + 1))),
                E(Stat("refused_inputs", 5)),
                E(Emitted("BadOverride")),
                E(Fleet(ForcedOpen)),
            ],
        },
        Case {
            name: "commands reach only a deciding node",
            config: base(),
            script: vec![Act::Command(CommandKind::ForceOpen), E(Fleet(Closed)), E(Stat("commands_not_deciding", 1))],
        },
        Case {
            name: "health checks while open start half-open early",
            config: BreakerConfig {
                health_check: Some(HealthCheckPolicy {
                    initial_interval_ms: 100,
                    max_interval_ms: 400,
                    successes_required: 2,
                    closes_directly: false,
                }),
                open: OpenPolicy::Fixed { duration_ms: 60_000 },
                ..base()
            },
            script: [
                tripped(),
                vec![
                    At(100),
                    E(Emitted("RunHealthCheck { attempt: 1 }")),
                    Act::Health(false),
                    At(200),
                    E(NotEmitted("RunHealthCheck { attempt: 2 }")),
                    At(300),
                    Act::Health(true),
                    At(400),
                    Act::Health(true),
                    E(Fleet(HalfOpen)),
                    E(Why("HealthCheckPassed { successes: 2 }")),
                ],
            ]
            .concat(),
        },
        Case {
            name: "health checks may close directly",
            config: BreakerConfig {
                health_check: Some(HealthCheckPolicy {
                    initial_interval_ms: 100,
                    max_interval_ms: 400,
                    successes_required: 1,
                    closes_directly: true,
                }),
                open: OpenPolicy::Fixed { duration_ms: 60_000 },
                ..base()
            },
            script: [tripped(), vec![At(100), Act::Health(true), E(Fleet(Closed))]].concat(),
        },
        Case {
            name: "local overlay trips alone, most restrictive wins, fleet stays closed",
            config: BreakerConfig {
                local: Some(LocalOverlayPolicy {
                    trip: TripPolicy {
                        window: WindowConfig::Count { calls: 4 },
                        minimum_calls: 4,
                        ..TripPolicy::default()
                    },
                    ..LocalOverlayPolicy::default()
                }),
                quorum: 2,
                ..base()
            },
            script: vec![
                Lead(1),
                Local(0, 4, 0, 0, 4),
                E(Fleet(Closed)),
                E(Effective(Open)),
                E(Emitted("local_open: true")),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "an open fleet decision that saw the local trip folds the overlay",
            config: BreakerConfig {
                local: Some(LocalOverlayPolicy {
                    trip: TripPolicy {
                        window: WindowConfig::Count { calls: 4 },
                        minimum_calls: 4,
                        ..TripPolicy::default()
                    },
                    ..LocalOverlayPolicy::default()
                }),
                trip: TripPolicy {
                    window: WindowConfig::Count { calls: 4 },
                    minimum_calls: 4,
                    ..TripPolicy::default()
                },
                ..base()
            },
            script: vec![
                Lead(1),
                Local(0, 4, 0, 0, 4),
                E(Fleet(Open)),
                E(Emitted("LocalFolded")),
                E(Effective(Open)),
                At(1_000),
                E(Fleet(HalfOpen)),
                E(Effective(HalfOpen)),
            ],
        },
        Case {
            name: "a concurrent fleet decision does not fold the overlay",
            config: BreakerConfig {
                local: Some(LocalOverlayPolicy {
                    trip: TripPolicy {
                        window: WindowConfig::Count { calls: 4 },
                        minimum_calls: 4,
                        ..TripPolicy::default()
                    },
                    ..LocalOverlayPolicy::default()
                }),
                ..base()
            },
            script: vec![
                Local(0, 4, 0, 0, 4),
                E(Effective(Open)),
                Act::Foreign(5, 1, FleetState::Open { duration_ms: 100 }),
                E(NotEmitted("LocalFolded")),
                At(150),
                Act::Foreign(5, 2, FleetState::Closed),
                E(Fleet(Closed)),
                E(Effective(Open)),
            ],
        },
        Case {
            name: "a rejection carrying an older value than the decider has applied never rolls the bucket back",
            config: base(),
            script: vec![
                Act::Foreign(1, 2, FleetState::Open { duration_ms: 60_000 }),
                // The reply says (1, 1) closed, which the watch already superseded.
                Act::LoseCas(1, FleetState::Closed),
                Lead(2),
                E(NotEmitted("previous: DecisionId { term: Term(1), seq: 1 }")),
                E(Expect::Reason("TermStarted { previous: DecisionId { term: Term(1), seq: 2 }")),
                E(Fleet(Open)),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "a new decider whose restatement has not landed rebases when an older term's newer decision shows up",
            config: base(),
            script: vec![
                Act::Foreign(1, 7, FleetState::Open { duration_ms: 1_000 }),
                Act::FailWrites,
                Lead(5),
                E(Emitted("previous: DecisionId { term: Term(1), seq: 7 }")),
                E(NotEmitted("previous: DecisionId { term: Term(1), seq: 8 }")),
                // The bucket moved after this decider read it (a late write of term 1, or
                // a stale read): retrying the restatement of (1, 7) could pass the CAS now.
                Act::Foreign(1, 8, FleetState::Open { duration_ms: 2_000 }),
                E(Fleet(Open)),
                E(Emitted("previous: DecisionId { term: Term(1), seq: 8 }")),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "a process that starts during a half-open round sits it out, and probes in the next one",
            config: base(),
            script: vec![
                Act::Fresh,
                Act::Foreign(
                    1,
                    4,
                    FleetState::HalfOpen { budget: 1, grants: vec![super::Grant { node: node(ME), probes: 1 }] },
                ),
                E(Fleet(HalfOpen)),
                E(Grant(ME, 1)),
                E(Adm(Admission::Probe { grant: 0, round: 1 })),
                Act::Foreign(1, 5, FleetState::Open { duration_ms: 1_000 }),
                Act::Foreign(
                    1,
                    6,
                    FleetState::HalfOpen { budget: 1, grants: vec![super::Grant { node: node(ME), probes: 1 }] },
                ),
                E(Adm(Admission::Probe { grant: 1, round: 2 })),
            ],
        },
        Case {
            name: "an outage flip inside a fleet round keeps the probe round (the grant is not re-armed)",
            config: BreakerConfig { outage: OutageConfig { policy: OutagePolicy::LastKnown, grace_ms: 100 }, ..base() },
            script: vec![
                Act::Foreign(
                    1,
                    1,
                    FleetState::HalfOpen { budget: 1, grants: vec![super::Grant { node: node(ME), probes: 1 }] },
                ),
                E(Adm(Admission::Probe { grant: 1, round: 1 })),
                Act::Raw(Input::ConnectionLost),
                At(200),
                E(Emitted("OutagePolicyApplied")),
                E(Adm(Admission::Probe { grant: 1, round: 1 })),
                At(300),
                Act::Raw(Input::ConnectionRestored),
                E(Adm(Admission::Probe { grant: 1, round: 1 })),
            ],
        },
        Case {
            name: "outcomes of an older generation still count while the fleet phase is the same",
            config: base(),
            script: vec![
                Lead(1),
                Act::Raw(Input::ConnectionLost),
                At(10_000),
                E(Emitted("OutagePolicyApplied")),
                Act::StaleLocal(7),
                E(Stat("stale_outcomes", 0)),
                E(Emitted("failure: 7")),
            ],
        },
        Case {
            name: "outage: last-known keeps the fleet state",
            config: base(),
            script: [
                tripped(),
                vec![
                    Act::Raw(Input::ConnectionLost),
                    At(10_000),
                    E(Emitted("OutagePolicyApplied { policy: LastKnown }")),
                    E(Effective(Open)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "outage: fail-open permits after the grace period only",
            config: BreakerConfig { outage: OutageConfig { policy: OutagePolicy::FailOpen, grace_ms: 500 }, ..base() },
            script: [
                tripped(),
                vec![
                    Act::Raw(Input::ConnectionLost),
                    At(499),
                    E(Effective(Open)),
                    At(500),
                    E(Effective(Closed)),
                    Act::Raw(Input::ConnectionRestored),
                    E(Emitted("Resync")),
                    E(Effective(Open)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "outage: fail-closed rejects",
            config: BreakerConfig {
                outage: OutageConfig { policy: OutagePolicy::FailClosed, grace_ms: 500 },
                ..base()
            },
            script: vec![Act::Raw(Input::ConnectionLost), At(500), E(Effective(Open)), E(Adm(Admission::Reject))],
        },
        Case {
            name: "outage: local-only ignores the fleet",
            config: BreakerConfig {
                outage: OutageConfig { policy: OutagePolicy::LocalOnly, grace_ms: 500 },
                local: Some(LocalOverlayPolicy::default()),
                ..base()
            },
            script: [tripped(), vec![Act::Raw(Input::ConnectionLost), At(500), E(Effective(Closed))]].concat(),
        },
        Case {
            name: "reports from before the phase began are stale",
            config: base(),
            script: [
                tripped(),
                vec![
                    At(1_000),
                    R("n2", 0, 0, 0, 3, 0),
                    Act::StaleReport("n2", 0, 9),
                    E(Stat("stale_reports", 1)),
                    E(Fleet(HalfOpen)),
                ],
            ]
            .concat(),
        },
        Case {
            name: "redelivered reports are counted once",
            config: BreakerConfig {
                trip: TripPolicy {
                    window: WindowConfig::Count { calls: 20 },
                    minimum_calls: 20,
                    ..TripPolicy::default()
                },
                ..base()
            },
            script: vec![
                Lead(1),
                R("n1", 0, 10, 0, 0, 0),
                Act::Redeliver,
                E(Stat("duplicate_reports", 1)),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "outcomes of a superseded generation are dropped",
            config: base(),
            script: [tripped(), vec![Act::StaleLocal(7), E(Stat("stale_outcomes", 7))]].concat(),
        },
        Case {
            name: "older decisions are ignored; a newer term deposes the decider",
            config: base(),
            script: vec![
                Lead(3),
                E(Deciding(true)),
                Act::Foreign(2, 9, FleetState::ForcedOpen),
                E(Fleet(Closed)),
                // The older term's, and the watch's copies of the restatement (applied when
                // its write was confirmed): seeing an older decision than its landed one,
                // the decider wrote that one again (the bucket may have gone back).
                E(Stat("stale_decisions", 3)),
                E(Decisions(2)),
                Act::Foreign(4, 1, FleetState::Open { duration_ms: 5 }),
                E(Deciding(false)),
                E(Emitted("Deposed")),
                E(Fleet(Open)),
            ],
        },
        Case {
            name: "a report claiming a decision from the future neither deposes the decider nor counts",
            config: base(),
            script: vec![
                Lead(3),
                Act::ClaimsApplied("py-1", 10, u64::MAX, 0),
                Act::ClaimsApplied("py-1", 10, 203, 1),
                Act::ClaimsApplied("py-1", 10, 3, 999),
                E(Deciding(true)),
                E(NotEmitted("Deposed")),
                E(NotEmitted("StepDown")),
                E(Emitted("ReportFromFuture")),
                E(Stat("refused_inputs", 3)),
                E(Stat("reports_counted", 0)),
                E(Fleet(Closed)),
                // Honest evidence still trips at once.
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(Open)),
                E(Decisions(2)),
            ],
        },
        Case {
            name: "a new decider judges a replay as the window stands once it is through, not mid-way",
            config: base(),
            script: vec![
                Lead(1),
                At(5_000),
                // A 1 s outage that ended while no one decided: its failures, then the
                // recovery, replayed.
                Act::Replayed("n1", 0, 10, 3_000, true),
                E(Fleet(Closed)),
                Act::Replayed("n1", 10, 0, 1_500, false),
                E(Fleet(Closed)),
                E(Decisions(1)),
                // Live failures still trip at once.
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(Open)),
            ],
        },
        Case {
            name: "a replay whose last report never comes is judged once the replay has been quiet a while",
            config: base(),
            script: vec![
                Lead(1),
                At(5_000),
                Act::Replayed("n1", 0, 10, 200, true),
                E(Fleet(Closed)),
                At(5_499),
                E(Fleet(Closed)),
                At(5_500),
                E(Fleet(Open)),
            ],
        },
        Case {
            // A loaded node's feed pauses mid-replay (scheduling, its consumer re-created):
            // with a 50 ms quiet this tripped on the outage whose recovery came 300 ms later.
            name: "a replay that pauses for less than the quiet period is still judged as a whole",
            config: base(),
            script: vec![
                Lead(1),
                At(5_000),
                Act::Replayed("n1", 0, 10, 3_000, true),
                At(5_300),
                E(Fleet(Closed)),
                Act::Replayed("n1", 10, 0, 1_500, true),
                At(5_700),
                E(Fleet(Closed)),
                At(5_800),
                E(Fleet(Closed)),
                E(Decisions(1)),
            ],
        },
        Case {
            // Every report with more behind it, never a quiet gap: the old rule never judged.
            name: "a feed that never catches up is still judged, at the latest when the deferral bound is reached",
            config: base(),
            script: std::iter::once(Lead(1))
                .chain((0..50).flat_map(|i| [At(5_000 + 40 * i), Act::Replayed("n1", 0, 1, 0, true)]))
                .chain([E(Fleet(Closed)), At(6_999), E(Fleet(Closed)), At(7_000), E(Fleet(Open))])
                .collect(),
        },
        Case {
            name: "evidence older than the age bound is not judged",
            config: BreakerConfig { trip: TripPolicy { max_evidence_age_ms: 2_000, ..base().trip }, ..base() },
            script: vec![
                Lead(1),
                At(9_000),
                Act::Replayed("n1", 0, 10, 2_000, false),
                E(Fleet(Closed)),
                Act::Replayed("n1", 0, 10, 1_900, false),
                E(Fleet(Open)),
            ],
        },
        Case {
            name: "a count window forgets evidence older than the age bound, deciding all along",
            config: BreakerConfig { trip: TripPolicy { max_evidence_age_ms: 2_000, ..base().trip }, ..base() },
            script: vec![
                Lead(1),
                R("n1", 1, 4, 0, 0, 0),
                At(2_000),
                R("n1", 1, 4, 0, 0, 0),
                E(Fleet(Closed)),
                At(3_000),
                R("n1", 1, 4, 0, 0, 0),
                E(Fleet(Open)),
            ],
        },
        Case {
            name: "a decider whose bucket went back writes its newest decision again, once",
            config: base(),
            script: vec![
                Lead(3),
                E(Decisions(1)),
                // Lost acknowledged writes, or an older backup: the bucket is empty again.
                Act::Raw(Input::NoDecisionYet),
                E(Decisions(2)),
                E(Expect::Reason("Initial")),
                E(Fleet(Closed)),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "the decider stops deciding at sent_at + ttl - margin",
            config: base(),
            script: vec![
                Lead(1),
                At(9_899),
                E(Deciding(true)),
                At(9_900),
                E(Deciding(false)),
                E(Emitted("LeaseSuspended")),
                R("n1", 0, 10, 0, 0, 0),
                E(Fleet(Closed)),
                E(Stat("reports_not_judged", 1)),
                Act::Raw(Input::LeaseRenewed { term: Term(1), sent_at: Millis(9_900), ttl_ms: 10_000 }),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "losing the CAS to an older term rebases and restates under this term",
            config: base(),
            script: vec![
                Act::LoseCas(1, FleetState::Open { duration_ms: 1_000 }),
                Lead(2),
                E(Fleet(Open)),
                E(Why("TermStarted { previous: DecisionId { term: Term(1), seq: 1 } }")),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "a lease before bootstrap is refused",
            config: base(),
            script: vec![
                Act::Fresh,
                Lead(1),
                E(Deciding(false)),
                E(Emitted("LeaseBeforeBootstrap")),
                Act::Raw(Input::NoDecisionYet),
                Lead(1),
                E(Deciding(true)),
            ],
        },
        Case {
            name: "a lost CAS revealing this term's decisions from an earlier tenure steps down",
            config: base(),
            script: vec![
                Act::LoseCas(2, FleetState::ForcedOpen),
                Act::Raw(Input::DecisionObserved(foreign(1, 1, FleetState::Closed))),
                Act::SameTermWinner(2, 5),
                Lead(2),
                E(Deciding(false)),
                E(Emitted("Unstable")),
            ],
        },
        Case {
            name: "losing the CAS to a newer term steps down",
            config: base(),
            script: vec![
                Act::LoseCas(7, FleetState::Closed),
                Lead(2),
                E(Deciding(false)),
                E(Emitted("Deposed { newer: Term(7) }")),
            ],
        },
        Case {
            // Seen in the simulation (seed 473, every fault kind): after the lease bucket was
            // wiped, the old decider was granted term 2 below its own retired term 13; it
            // refused the grant silently, its transport kept renewing it, and nobody decided.
            name: "a grant at or below a term this node retired is handed back above it",
            config: base(),
            script: vec![
                Lead(5),
                Act::Raw(Input::LeaseLost { term: Term(5) }),
                Lead(3),
                E(Deciding(false)),
                E(Emitted("StepDown { term: Term(3), reason: Deposed { newer: Term(5) } }")),
            ],
        },
        Case {
            // Seen in the simulation (seeds 5148 and 5908, every fault kind): the heal's
            // reset waited behind a restatement whose CAS lost to an older term's decision
            // (the bucket had been rolled back); the rebase dropped the queue, and with it
            // the operator's command, taken once from the control stream and never carried
            // out: the fleet stayed forced closed.
            name: "an operator command waiting behind a write that loses its CAS is carried out after the rebase",
            config: base(),
            script: vec![
                Act::FailWrites,
                Lead(2),
                Act::Command(CommandKind::ForceOpen),
                Act::LoseCas(1, FleetState::Closed),
                Act::AckWrites,
                At(200),
                At(400),
                E(Fleet(StateLabel::ForcedOpen)),
                E(Expect::Reason("Manual { command: ForceOpen")),
            ],
        },
        Case {
            // Seen in the simulation (seed 7157): a decider cut off from the store retried
            // its write long after its lease ran out; a rolled-back bucket reused the
            // revision it expected and the stale write passed the CAS.
            name: "a decider whose lease ran out on its clock holds its write retries until renewed",
            config: base(),
            script: vec![
                Act::FailWrites,
                Lead(1),
                Act::AckWrites,
                At(20_000),
                E(Decisions(0)),
                // The renewal itself sends the held retry (an idle decider's next tick may be
                // a whole lease away).
                Act::Raw(Input::LeaseRenewed { term: Term(1), sent_at: Millis(20_000), ttl_ms: 10_000 }),
                E(Decisions(1)),
            ],
        },
        Case {
            name: "failing writes are retried with backoff, then the decider steps down",
            config: base(),
            script: vec![
                Act::FailWrites,
                Lead(1),
                At(100),
                At(300),
                At(700),
                E(Deciding(true)),
                At(1_499),
                E(Deciding(true)),
                At(1_500),
                E(Deciding(false)),
                E(Emitted("WritesFailing")),
                E(Stat("decisions_made", 1)),
            ],
        },
        Case {
            name: "malformed inputs are refused and counted",
            config: base(),
            script: vec![
                Act::Raw(Input::DecisionObserved(Decision {
                    breaker: BreakerName::new("other").unwrap(),
                    ..foreign(1, 1, FleetState::Closed)
                })),
                Act::Raw(Input::DecisionObserved(Decision { version: 99, ..foreign(1, 1, FleetState::Closed) })),
                Act::Raw(Input::DecisionObserved(Decision {
                    phase: DecisionId::new(1, 2),
                    ..foreign(1, 1, FleetState::Closed)
                })),
                Act::Raw(Input::DecisionObserved(foreign(
                    1,
                    1,
                    FleetState::HalfOpen { budget: 1, grants: vec![super::Grant { node: node("a"), probes: 2 }] },
                ))),
                E(Stat("refused_inputs", 4)),
                E(Fleet(Closed)),
            ],
        },
        Case {
            name: "graceful shutdown steps down",
            config: base(),
            script: vec![
                Lead(1),
                Act::Raw(Input::Shutdown),
                E(Deciding(false)),
                E(Emitted("StepDown { term: Term(1), reason: Shutdown }")),
            ],
        },
    ]
}

#[test]
fn every_case() {
    for case in cases() {
        check(&case);
    }
}

#[test]
fn the_check_helper_can_fail() {
    let wrong = Case { name: "wrong on purpose", config: base(), script: vec![Lead(1), E(Fleet(Open))] };
    assert!(std::panic::catch_unwind(|| check(&wrong)).is_err());
}

#[test]
fn exponential_backoff_caps_and_jitter_follows_the_seed() {
    let durations = |seed: u64| -> Vec<u64> {
        let config = BreakerConfig {
            open: OpenPolicy::Exponential { initial_ms: 100, max_ms: 1_000, multiplier: 2, jitter: 0.5 },
            seed,
            ..base()
        };
        let mut rig = Rig::new(&config);
        for act in tripped() {
            rig.act(&act, "backoff");
        }
        for _ in 0..5 {
            rig.act(&R("n2", 0, 0, 0, 3, 0), "backoff");
            let FleetState::Open { duration_ms } = rig.m.applied().unwrap().state else { panic!("not open") };
            rig.act(&At(rig.now + duration_ms), "backoff");
            rig.act(&R("n2", 0, 1, 0, 0, 0), "backoff");
        }
        rig.written
            .iter()
            .filter_map(|d| if let FleetState::Open { duration_ms } = d.state { Some(duration_ms) } else { None })
            .collect()
    };
    let a = durations(1);
    assert_eq!(a, durations(1), "same seed, same durations");
    assert_ne!(a, durations(2), "jitter depends on the seed");
    let bases = [100, 200, 400, 800, 1_000, 1_000];
    for (d, b) in a.iter().zip(bases) {
        assert!(*d >= b && *d <= (b + b / 2).min(1_000), "{a:?}");
    }
}

#[test]
fn a_lease_run_out_by_the_clock_is_not_deciding_before_the_next_step() {
    // A decider resumed after a stop longer than its lease: asked before its first step,
    // it must not call itself deciding (it printed `deciding: true` for ~1 ms).
    let mut rig = Rig::new(&base());
    rig.act(&Lead(4), "resumed");
    assert!(rig.m.is_deciding_at(Millis(9_899)));
    assert!(!rig.m.is_deciding_at(Millis(9_900)), "ttl 10 s, margin 100 ms: run out at 9.9 s");
    assert!(!rig.m.is_deciding_at(Millis(60_000)));
    assert_eq!(rig.m.decider_term(), Some(Term(4)), "nothing was stepped: the term is still held");
}

#[test]
fn a_trip_names_the_nodes_whose_failures_made_it() {
    let mut rig = Rig::new(&base());
    rig.act(&Lead(1), "named");
    rig.act(&R("n1", 2, 3, 0, 0, 0), "named");
    rig.act(&R("py-1", 0, 5, 0, 0, 0), "named");
    let Some(Reason::Tripped { evidence, .. }) = rig.written.last().map(|d| d.reason.clone()) else {
        panic!("tripped: {:?}", rig.written.last())
    };
    let top: Vec<(&str, u64)> = evidence.top.iter().map(|c| (c.node.as_str(), c.failed)).collect();
    assert_eq!(top, [("py-1", 5), ("n1", 3)], "most failures first");
}

#[test]
fn a_foreign_publishers_messages_and_a_rust_node_of_the_same_id_are_deduplicated_apart() {
    // A postcard report from id `py-1` at incarnation 3 once made every later JSON message
    // of `py-1` (incarnation 0, the stream sequence as seq) look like a redelivery.
    let mut rig = Rig::new(&base());
    rig.act(&Lead(1), "dedupe");
    let counts = OutcomeCounts { failure: 1, ..OutcomeCounts::default() };
    let mut postcard = rig.peer_report("py-1", counts, 1, rig.m.applied_id());
    postcard.incarnation = 3;
    postcard.seq = 500;
    rig.input(Input::Report { report: postcard, arrival: Arrival::LIVE });
    for seq in [7, 8] {
        let mut json = rig.peer_report("py-1", counts, 1, rig.m.applied_id());
        json.incarnation = 0;
        json.seq = seq;
        rig.input(Input::Report { report: json, arrival: Arrival::LIVE });
    }
    assert_eq!((rig.m.stats().reports_counted, rig.m.stats().duplicate_reports), (3, 0));
    let mut again = rig.peer_report("py-1", counts, 1, rig.m.applied_id());
    again.incarnation = 0;
    again.seq = 8;
    rig.input(Input::Report { report: again, arrival: Arrival::LIVE });
    assert_eq!(rig.m.stats().duplicate_reports, 1, "a redelivered JSON message is still a duplicate");
}
