//! The pure breaker state machine: `step(machine, now, input) -> effects`.
//!
//! One [`Machine`] per breaker per node. It is deterministic and does no I/O: time enters
//! as `now` (this node's monotonic clock), randomness from the seed in the config, and
//! everything that happens as one [`Input`]. What it wants done comes out as [`Effect`]s,
//! which the runtime carries out (and the simulator and model checker interpret).
//!
//! Three parts live in one machine:
//! - the **follower** (every node): applies fleet decisions newer in `(term, seq)`,
//!   reports its outcomes stamped with its vector clock and the decision it had applied;
//! - the **local overlay** (optional): the same cycle on this node's evidence alone; the
//!   effective state is the more restrictive of fleet and overlay, manual states win;
//! - the **decider** (the lease holder only): attributes reports to phases by causality and
//!   decides for the fleet.
//!
//! Causality: a report counts towards a phase only if its node had
//! applied the decision that began that phase; outcomes recorded under a snapshot
//! generation that has since changed are dropped as stale; a local trip concurrent with a
//! fleet decision keeps the node open until an open fleet decision that has seen the trip
//! (its clock covers the report that carried it) takes over.
//!
//! ```
//! use breaker_actors::machine::{
//!     Admission, Arrival, BreakerConfig, BreakerName, Effect, Input, LocalOutcomes, Machine, Millis, NodeId, NodeParams,
//!     OutcomeCounts, Term,
//! };
//!
//! let params = NodeParams {
//!     breaker: BreakerName::new("payments-api").unwrap(),
//!     node: NodeId::new("node-1").unwrap(),
//!     incarnation: 1,
//!     lease_margin_ms: 250,
//! };
//! let mut m = Machine::new(params, &BreakerConfig::default()).unwrap();
//! m.step(Millis(0), Input::NoDecisionYet);
//! // This node wins the lease: it restates the (empty) state under its term.
//! let fx = m.step(Millis(0), Input::LeaseGained { term: Term(7), sent_at: Millis(0), ttl_ms: 5_000 });
//! let Some(Effect::WriteDecision(first)) = fx.into_iter().find(|e| matches!(e, Effect::WriteDecision(_))) else {
//!     panic!("a new decider writes a decision first")
//! };
//! m.step(Millis(1), Input::DecisionWritten { id: first.id });
//! m.step(Millis(1), Input::DecisionObserved(first));
//! // 100 calls, 60 failed: the default rule (50 % of at least 100 calls) trips.
//! let counts = OutcomeCounts { success: 40, failure: 60, ..OutcomeCounts::default() };
//! let generation = m.snapshot().generation;
//! let fx = m.step(Millis(10), Input::LocalOutcomes(LocalOutcomes { generation, counts, longest_failure_streak: 3 }));
//! // The report goes out on the feed; the decider hears it back and decides.
//! let Some(Effect::PublishReport(report)) = fx.into_iter().find(|e| matches!(e, Effect::PublishReport(_))) else {
//!     panic!("outcomes are reported")
//! };
//! let fx = m.step(Millis(12), Input::Report { report, arrival: Arrival::LIVE });
//! let Some(Effect::WriteDecision(open)) = fx.into_iter().find(|e| matches!(e, Effect::WriteDecision(_))) else {
//!     panic!("the decider trips the fleet")
//! };
//! m.step(Millis(13), Input::DecisionObserved(open));
//! assert_eq!(m.snapshot().admission, Admission::Reject);
//! ```

mod config;
mod cycle;
mod decider;
mod domain;
mod lease;
mod names;
mod rng;
mod tuning;
mod units;
mod vclock;
mod window;

pub use config::{
    BreakerConfig, BreakerConfigBuilder, BurnRateRule, ConfigError, DEFAULT_MAX_EVIDENCE_AGE_MS, HalfOpenPolicy,
    HealthCheckPolicy, HumanMillis, LocalOverlayBuilder, LocalOverlayPolicy, MAX_CONFIG_VERSION, MAX_FLEET, OpenPolicy,
    OutageConfig, OutagePolicy, RampPolicy, TripPolicy, ValidConfig, WindowConfig,
};
pub use cycle::{Arrival, Judge, Phase, ProbeSlot};
pub use decider::{MAX_QUEUED, MAX_REBASES, MAX_WRITE_ATTEMPTS, StepDownReason};
pub use domain::{
    Command, CommandKind, Contribution, Decision, Evidence, FleetState, Grant, LocalOutcomes, MAX_CONTRIBUTORS,
    MAX_OVERRIDE_MS, MAX_TEXT_LEN, OutcomeCounts, OverrideError, Reason, Report, StateLabel, TripRule, WIRE_VERSION,
    check_override,
};
pub use lease::{MAX_TERM, StaleLease, next_term};
pub use names::{BreakerName, MAX_NAME_LEN, NameError, NodeId};
pub use rng::SeededRng;
pub use tuning::{ConfigRecord, ConfigSource, Tuning, operator_version, resolve as resolve_tuning};
pub use units::{DecisionId, Millis, Term};
pub use vclock::{CLOCK_CAP, Causality, VectorClock};
pub use window::MAX_WINDOW_REPORTS;

use decider::{Decider, DeciderOut, ReportFate};

/// Everything that can happen to a breaker on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the runtime ticks at the last [`Effect::WakeAt`], or on its flush).
    Tick,
    /// Outcomes drained from the hot path.
    LocalOutcomes(LocalOutcomes),
    /// A report from the outcome feed (any node's, this one's included).
    Report {
        /// The report.
        report: Report,
        /// How old it is and whether a replay continues behind it.
        arrival: Arrival,
    },
    /// A decision read from the state bucket.
    DecisionObserved(Decision),
    /// The state bucket holds no decision for this breaker: bootstrap is complete.
    NoDecisionYet,
    /// This node acquired the lease covering the breaker: `term` is the acquiring
    /// revision; the request was sent at `sent_at` on this node's clock.
    LeaseGained {
        /// Fencing token.
        term: Term,
        /// When the acquiring request was sent.
        sent_at: Millis,
        /// Lease time-to-live.
        ttl_ms: u64,
    },
    /// A renewal of `term` sent at `sent_at` succeeded.
    LeaseRenewed {
        /// The term renewed.
        term: Term,
        /// When the renewal was sent.
        sent_at: Millis,
        /// Lease time-to-live.
        ttl_ms: u64,
    },
    /// The lease of `term` is gone (renewal lost its CAS, or it was released).
    LeaseLost {
        /// The term lost.
        term: Term,
    },
    /// The decision `id` is in the state bucket.
    DecisionWritten {
        /// Which.
        id: DecisionId,
    },
    /// Writing `id` failed for a transport reason; the decider retries with backoff.
    DecisionWriteFailed {
        /// Which.
        id: DecisionId,
    },
    /// The CAS write of `id` lost; `current` is the bucket's value now.
    DecisionRejected {
        /// Which.
        id: DecisionId,
        /// What the bucket holds.
        current: Option<Decision>,
    },
    /// An operator's command from the control subject.
    Command(Command),
    /// The result of health check `attempt`.
    HealthCheckResult {
        /// Which.
        attempt: u64,
        /// Whether the dependency answered well.
        healthy: bool,
    },
    /// The connection to NATS was lost.
    ConnectionLost,
    /// The connection to NATS is back.
    ConnectionRestored,
    /// The node is shutting down: step down gracefully.
    Shutdown,
    /// Run on this config from now on (the fleet's config changed: a newer version was
    /// deployed, or an operator set one). The fleet state stays; the windows start afresh
    /// under the new rules; a decider records the switch ([`Reason::Reconfigured`]).
    Reconfigure(Box<ValidConfig>),
}

/// How the hot path admits calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every call.
    Allow,
    /// `per_mille` of every thousand calls.
    Fraction {
        /// Calls per thousand.
        per_mille: u16,
    },
    /// At most `grant` probes in probe round `round`, in total. A round outlives snapshot
    /// generations (an overlay or outage change inside a fleet round keeps it): the hot path
    /// resets its probe count only when `round` changes.
    Probe {
        /// Probes allowed in the round.
        grant: u32,
        /// The probe round.
        round: u64,
    },
    /// No call.
    Reject,
}

impl Admission {
    fn rank(self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::Fraction { .. } => 1,
            Self::Probe { .. } => 2,
            Self::Reject => 3,
        }
    }

    /// The more restrictive of two admissions.
    #[must_use]
    pub fn tighter(self, other: Self) -> Self {
        match (self, other) {
            (Self::Fraction { per_mille: a }, Self::Fraction { per_mille: b }) => {
                Self::Fraction { per_mille: a.min(b) }
            }
            (Self::Probe { grant: a, round }, Self::Probe { grant: b, .. }) => Self::Probe { grant: a.min(b), round },
            (a, b) if a.rank() >= b.rank() => a,
            (_, b) => b,
        }
    }

    /// The state a node in this admission is in, effectively.
    pub fn label(self) -> StateLabel {
        match self {
            Self::Allow => StateLabel::Closed,
            Self::Fraction { .. } => StateLabel::Ramping,
            Self::Probe { .. } => StateLabel::HalfOpen,
            Self::Reject => StateLabel::Open,
        }
    }
}

/// What the hot path enforces. A new `generation` starts whenever the fleet phase, the
/// overlay phase or the outage mode changes; outcomes are tagged with it (the machine still
/// takes outcomes of a recent generation whose fleet or overlay phase is unchanged). A probe
/// grant is a total for its probe round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Generation, from 1.
    pub generation: u64,
    /// Admission.
    pub admission: Admission,
    /// Whether outcomes are recorded (not when disabled).
    pub record: bool,
    /// The effective state.
    pub state: StateLabel,
    /// The fleet's state as last applied.
    pub fleet: StateLabel,
    /// The overlay's state (`None` without overlay).
    pub local: Option<StateLabel>,
    /// When a rejected caller may expect a change, on this node's clock.
    pub retry_at: Option<Millis>,
    /// Whether the outage policy is in force.
    pub outage: bool,
    /// Whether the hot path may trip itself on the call that completes the overlay's
    /// consecutive-failure run (`local.trip.consecutive_failures`) under this generation:
    /// set while the admission is allow and the overlay, closed, is what would reject once
    /// tripped. The machine trips its overlay on the same run at the next drain.
    pub trip_on_streak: bool,
}

impl Snapshot {
    /// The snapshot of a breaker whose only source is `admission` (no overlay, no outage, no
    /// retry hint), for standalone breakers, benchmarks and tests.
    pub fn standalone(generation: u64, admission: Admission) -> Self {
        Self {
            generation,
            admission,
            record: true,
            state: admission.label(),
            fleet: admission.label(),
            local: None,
            retry_at: None,
            outage: false,
            trip_on_streak: false,
        }
    }
}

/// What the machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Publish a new hot-path snapshot.
    Snapshot(Snapshot),
    /// Publish this report on the outcome feed.
    PublishReport(Report),
    /// Write this decision to the state bucket, CAS on the last revision read.
    WriteDecision(Decision),
    /// This node stopped deciding the breaker for `term`: stop feeding it reports (and on
    /// `Shutdown`, release the lease).
    StepDown {
        /// The term.
        term: Term,
        /// Why.
        reason: StepDownReason,
    },
    /// Re-read the breaker's current decision (after an outage).
    Resync,
    /// Run active health check `attempt` and report its result.
    RunHealthCheck {
        /// Attempt number.
        attempt: u64,
    },
    /// Send [`Input::Tick`] at (or after) this time.
    WakeAt(Millis),
    /// Read the fleet's config of this breaker and, if it differs from the one this
    /// machine runs on, feed it back as [`Input::Reconfigure`]: a decision was made under
    /// config `version` (0: an operator's [`CommandKind::Reconfigure`] said it changed).
    ReloadConfig {
        /// The version seen, or 0.
        version: u64,
    },
    /// Something observers may want to know.
    Event(Event),
}

/// Where an effective change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A fleet decision.
    Fleet,
    /// The local overlay.
    Local,
    /// The outage policy.
    Outage,
}

/// Observability events: each fleet decision is announced exactly once per node, when it
/// is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A fleet decision was applied.
    Applied {
        /// Its id.
        id: DecisionId,
        /// Fleet state before.
        from: StateLabel,
        /// Fleet state after.
        to: StateLabel,
        /// Why it was decided.
        reason: Reason,
    },
    /// The effective state changed.
    EffectiveChanged {
        /// Before.
        from: StateLabel,
        /// After.
        to: StateLabel,
    },
    /// The local overlay changed phase.
    LocalTransition {
        /// Before.
        from: StateLabel,
        /// After.
        to: StateLabel,
    },
    /// An open fleet decision that had seen the local trip took it over.
    LocalFolded {
        /// The decision.
        id: DecisionId,
    },
    /// This node, as decider, made a decision.
    Decided {
        /// Its id.
        id: DecisionId,
        /// Its state.
        state: StateLabel,
    },
    /// A metrics-only breaker's rule fired.
    WouldTrip {
        /// Which rule.
        rule: TripRule,
    },
    /// This node became the decider.
    LeaseGained {
        /// The term.
        term: Term,
    },
    /// The lease's renewal is overdue on this node's clock: deciding paused.
    LeaseSuspended {
        /// The term.
        term: Term,
    },
    /// This node stopped deciding.
    SteppedDown {
        /// The term.
        term: Term,
        /// Why.
        reason: StepDownReason,
    },
    /// The connection was lost (the policy applies after the grace period).
    OutageBegan,
    /// The outage policy is now in force.
    OutagePolicyApplied {
        /// Which.
        policy: OutagePolicy,
    },
    /// The connection is back.
    OutageEnded,
    /// The machine switched to another config version.
    Reconfigured {
        /// The version it ran on.
        from: u64,
        /// The version it runs on now.
        to: u64,
    },
    /// An input was refused.
    Refused(InputError),
    /// An input was valid but had nothing to act on.
    Ignored(Ignored),
}

/// Valid inputs with nothing to act on (counted in [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Outcomes from a superseded generation.
    StaleOutcomes {
        /// Calls dropped.
        calls: u64,
    },
    /// A decision not newer than the one applied.
    StaleDecision {
        /// Its id.
        id: DecisionId,
    },
    /// A report from before the current phase.
    StaleReport,
    /// A report seen before.
    DuplicateReport,
    /// A command while not deciding.
    CommandNotDeciding,
    /// A lease input for a term this node does not hold or that is already superseded.
    StaleLease {
        /// The term.
        term: Term,
    },
    /// A lease gained before the node knew the fleet state.
    LeaseBeforeBootstrap {
        /// The term.
        term: Term,
    },
}

/// Inputs refused as malformed or impossible (counted in [`Stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// For another breaker.
    WrongBreaker {
        /// The breaker named.
        got: BreakerName,
    },
    /// A version this code does not read.
    UnsupportedVersion {
        /// The version.
        got: u16,
    },
    /// A vector clock breaking its invariants.
    MalformedClock,
    /// A decision that cannot be (grants over budget or unsorted, phase after id,
    /// sequence 0, a term above [`MAX_TERM`]).
    MalformedDecision,
    /// Free text over [`MAX_TEXT_LEN`].
    TextTooLong,
    /// A command's time box that cannot be (see [`check_override`]), or a decision whose
    /// [`Decision::expires_after_ms`] is zero, over [`MAX_OVERRIDE_MS`] or on an automatic
    /// state.
    BadOverride,
    /// A decision of this node's own term that it never made.
    DecisionFromFuture {
        /// Its id.
        id: DecisionId,
    },
    /// A report claiming to have applied a decision newer than any its decider made (of
    /// this term or a later one): refused, never a reason to step down.
    ReportFromFuture {
        /// What it claims to have applied.
        applied: DecisionId,
    },
}

/// Decisive calls in a decider's evidence window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Decisive calls (successes, failures, slow).
    pub calls: u64,
    /// Failed calls.
    pub failures: u64,
    /// Slow calls.
    pub slow: u64,
}

/// What a deciding node's machine holds for its breaker beyond the decisions it wrote: the
/// evidence it judges now. Only the decider has it (`fusebox describe` asks for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeciderView {
    /// The lease term it decides under.
    pub term: Term,
    /// The newest decision it made (written or not).
    pub last_decided: DecisionId,
    /// The phase it attributes reports against.
    pub phase: DecisionId,
    /// The fleet state it holds.
    pub state: FleetState,
    /// Failed half-open rounds since the breaker last closed.
    pub backoff_level: u32,
    /// The evidence window's totals now.
    pub window: WindowCounts,
    /// Failed and slow calls per node reported in this phase, sorted by node (bounded by
    /// the config's `max_nodes`).
    pub contributions: Vec<Contribution>,
    /// For a time-boxed manual state, how long until it ends on the decider's clock.
    pub override_ends_in_ms: Option<u64>,
}

/// Counters of everything the machine dropped, refused or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Outcomes recorded under the current generation and reported.
    pub recorded: OutcomeCounts,
    /// Calls dropped because their generation had ended.
    pub stale_outcomes: u64,
    /// Reports published.
    pub reports_published: u64,
    /// Decisions applied.
    pub decisions_applied: u64,
    /// Decisions not newer than the applied one.
    pub stale_decisions: u64,
    /// Reports counted by this node's decider.
    pub reports_counted: u64,
    /// Reports attributed to an older phase.
    pub stale_reports: u64,
    /// Reports seen twice.
    pub duplicate_reports: u64,
    /// Reports received while not deciding (or suspended, or under a manual state).
    pub reports_not_judged: u64,
    /// Inputs refused as malformed or impossible.
    pub refused_inputs: u64,
    /// Commands received while not deciding.
    pub commands_not_deciding: u64,
    /// Readings of `now` earlier than a previous one (clamped).
    pub clock_regressions: u64,
    /// Decisions made by this node's decider.
    pub decisions_made: u64,
}

/// Who this machine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeParams {
    /// The breaker.
    pub breaker: BreakerName,
    /// This node.
    pub node: NodeId,
    /// This process's incarnation (new at every start).
    pub incarnation: u64,
    /// Stop deciding this long before the lease would expire by this node's clock
    /// (allowance for clock drift and delivery delay).
    pub lease_margin_ms: u64,
}

#[derive(Debug, Clone)]
struct Overlay {
    judge: Judge,
    /// Bumped on every overlay phase change: part of the generation key.
    serial: u64,
    /// The clock position of the report that announced the current local trip.
    trip_stamp: Option<(Term, u64)>,
}

impl Overlay {
    fn label(&self) -> StateLabel {
        self.judge.fleet_state().label()
    }
}

/// Generations whose outcomes are still attributed (the current one and the ones before).
/// The hot path keeps exactly this many generation slots per counter shard.
pub const TRACKED_GENERATIONS: usize = 8;

/// Whose probe allowance a probe round counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeRoundKey {
    /// The fleet's half-open round that began at this decision.
    Fleet(DecisionId),
    /// The overlay's half-open phase with this serial.
    Local(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GenerationKey {
    fleet_phase: DecisionId,
    local_serial: u64,
    outage: bool,
}

/// One breaker's state machine on one node. See the module documentation.
#[derive(Debug, Clone)]
pub struct Machine {
    params: NodeParams,
    config: ValidConfig,
    now: Millis,
    bootstrapped: bool,
    /// The phase of the decision this incarnation bootstrapped from (`None` after an empty
    /// bucket): a half-open round that began before the process started is sat out (see
    /// `fleet_admission`).
    joined_phase: Option<DecisionId>,
    applied: Option<Decision>,
    applied_at: Millis,
    clock: VectorClock,
    report_seq: u64,
    overlay: Option<Overlay>,
    lost_since: Option<Millis>,
    outage_active: bool,
    generation: u64,
    generation_key: GenerationKey,
    /// `(generation, key)` of the last few generations, newest last.
    recent_generations: std::collections::VecDeque<(u64, GenerationKey)>,
    probe_round: u64,
    probe_round_key: Option<ProbeRoundKey>,
    snapshot: Snapshot,
    wake: Option<Millis>,
    decider: Option<Decider>,
    suspended_announced: bool,
    /// The newest term this node has stopped leading.
    retired_term: Term,
    /// The newest config version a [`Effect::ReloadConfig`] asked for (each is asked once).
    config_asked: u64,
    stats: Stats,
}

/// Runs one step of `machine`: the functional core's single entry point.
pub fn step(machine: &mut Machine, now: Millis, input: Input) -> Vec<Effect> {
    machine.step(now, input)
}

impl Machine {
    /// A machine for `params.breaker` on `params.node`, validating `config`.
    pub fn new(params: NodeParams, config: &BreakerConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_valid(params, config.validate()?))
    }

    /// A machine from an already validated config.
    pub fn with_valid(params: NodeParams, config: ValidConfig) -> Self {
        let overlay = config.local.clone().map(|cycle| Overlay {
            judge: Judge::new(cycle, 1, config.seed.rotate_left(17), Some(params.node.clone())),
            serial: 0,
            trip_stamp: None,
        });
        let generation_key = GenerationKey { fleet_phase: DecisionId::NONE, local_serial: 0, outage: false };
        let snapshot = Snapshot {
            generation: 1,
            admission: Admission::Allow,
            record: true,
            state: StateLabel::Closed,
            fleet: StateLabel::Closed,
            local: overlay.as_ref().map(|_| StateLabel::Closed),
            retry_at: None,
            outage: false,
            trip_on_streak: config.local.as_ref().is_some_and(|l| l.rules.consecutive_failures.is_some()),
        };
        Self {
            params,
            config,
            now: Millis(0),
            bootstrapped: false,
            joined_phase: None,
            applied: None,
            applied_at: Millis(0),
            clock: VectorClock::new(Term(0)),
            report_seq: 0,
            overlay,
            lost_since: None,
            outage_active: false,
            generation: 1,
            generation_key,
            recent_generations: std::collections::VecDeque::from([(1, generation_key)]),
            probe_round: 0,
            probe_round_key: None,
            snapshot,
            wake: None,
            decider: None,
            suspended_announced: false,
            retired_term: Term(0),
            config_asked: 0,
            stats: Stats::default(),
        }
    }

    /// Who this machine is.
    pub fn params(&self) -> &NodeParams {
        &self.params
    }

    /// The validated config.
    pub fn config(&self) -> &ValidConfig {
        &self.config
    }

    /// The hot-path snapshot in force.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
    }

    /// The newest fleet decision applied.
    pub fn applied(&self) -> Option<&Decision> {
        self.applied.as_ref()
    }

    /// The id of the newest decision applied (`NONE` before any).
    pub fn applied_id(&self) -> DecisionId {
        self.applied.as_ref().map_or(DecisionId::NONE, |d| d.id)
    }

    /// Whether the node knows the fleet state (a decision applied, or none exists).
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// The decider's term, if this node holds the lease.
    pub fn decider_term(&self) -> Option<Term> {
        self.decider.as_ref().map(Decider::term)
    }

    /// Whether this node decided at its last step (held a lease still good by its clock
    /// then). See [`Machine::is_deciding_at`] for a later time.
    pub fn is_deciding(&self) -> bool {
        self.is_deciding_at(self.now)
    }

    /// Whether this node decides at `now` on its clock: a lease whose validity has run out
    /// by then does not count, even before the machine has been stepped to `now`.
    pub fn is_deciding_at(&self, now: Millis) -> bool {
        self.decider.as_ref().is_some_and(|d| d.is_valid(now.max(self.now)))
    }

    /// The phase this node's decider attributes reports against, when deciding.
    pub fn decider_phase(&self) -> Option<DecisionId> {
        self.decider.as_ref().map(Decider::phase)
    }

    /// What this node's decider holds at `now`, if it decides then.
    pub fn decider_view(&self, now: Millis) -> Option<DeciderView> {
        let now = now.max(self.now);
        self.decider.as_ref().filter(|d| d.is_valid(now)).map(|d| d.view(now))
    }

    /// The fleet cycle, when deciding.
    pub fn fleet_judge(&self) -> Option<&Judge> {
        self.decider.as_ref().map(Decider::judge)
    }

    /// The local overlay's cycle.
    pub fn local_judge(&self) -> Option<&Judge> {
        self.overlay.as_ref().map(|o| &o.judge)
    }

    /// This node's vector clock.
    pub fn clock(&self) -> &VectorClock {
        &self.clock
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The last time this machine was stepped at.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The time of the next [`Input::Tick`] the machine needs.
    pub fn next_wake(&self) -> Option<Millis> {
        self.wake
    }

    /// Feeds everything that decides this machine's future behaviour into `hasher`: the
    /// `Debug` text of every field but its statistics and its config. For model checkers,
    /// which must recognise two machines that will act alike as one state although their
    /// counters differ.
    pub fn hash_behaviour<H: std::hash::Hasher>(&self, hasher: &mut H) {
        struct Feed<'a, H>(&'a mut H);
        impl<H: std::hash::Hasher> std::fmt::Write for Feed<'_, H> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.0.write(s.as_bytes());
                Ok(())
            }
        }
        // Destructured in full so that a new field must be classified here.
        let Self {
            params,
            config: _,
            now,
            bootstrapped,
            joined_phase,
            applied,
            applied_at,
            clock,
            report_seq,
            overlay,
            lost_since,
            outage_active,
            generation,
            generation_key,
            recent_generations,
            probe_round,
            probe_round_key,
            snapshot,
            wake,
            decider,
            suspended_announced,
            retired_term,
            config_asked,
            stats: _,
        } = self;
        // Writing into a hasher cannot fail.
        let _ = std::fmt::Write::write_fmt(
            &mut Feed(hasher),
            format_args!(
                "{params:?}|{now:?}|{bootstrapped:?}|{joined_phase:?}|{applied:?}|{applied_at:?}|{clock:?}|{report_seq:?}|{overlay:?}|\
                 {lost_since:?}|{outage_active:?}|{generation:?}|{generation_key:?}|{recent_generations:?}|\
                 {probe_round:?}|{probe_round_key:?}|{snapshot:?}|{wake:?}|{decider:?}|{suspended_announced:?}|\
                 {retired_term:?}|{config_asked:?}"
            ),
        );
    }

    /// Runs one step; see [`step`].
    pub fn step(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        if now < self.now {
            self.stats.clock_regressions += 1;
        }
        let now = now.max(self.now);
        self.now = now;
        let mut fx = Vec::new();
        self.handle(now, input, &mut fx);
        self.advance_time(now, &mut fx);
        self.refresh_snapshot(now, &mut fx);
        self.refresh_wake(now, &mut fx);
        fx
    }

    fn handle(&mut self, now: Millis, input: Input, fx: &mut Vec<Effect>) {
        match input {
            Input::Tick => {}
            Input::LocalOutcomes(outcomes) => self.local_outcomes(now, &outcomes, fx),
            Input::Report { report, arrival } => self.report(now, &report, arrival, fx),
            Input::DecisionObserved(decision) => self.observe(now, decision, fx),
            Input::NoDecisionYet => {
                self.bootstrapped = true;
                // An empty bucket under a decider that has landed decisions went back.
                if let (Some(d), Some(applied)) = (&mut self.decider, &self.applied) {
                    let out = d.bucket_went_back(applied);
                    self.decider_out(out, fx);
                }
            }
            Input::LeaseGained { term, sent_at, ttl_ms } => self.lease_gained(now, term, sent_at, ttl_ms, fx),
            Input::LeaseRenewed { term, sent_at, ttl_ms } => {
                let valid_until = self.lease_valid_until(sent_at, ttl_ms);
                match &mut self.decider {
                    Some(d) if d.term() == term => {
                        d.renewed(valid_until);
                        if d.is_valid(now) {
                            self.suspended_announced = false;
                        }
                    }
                    _ => Self::ignore(&mut self.stats, fx, Ignored::StaleLease { term }),
                }
            }
            Input::LeaseLost { term } => match &self.decider {
                Some(d) if d.term() == term => self.step_down(StepDownReason::LeaseLost, fx),
                _ => Self::ignore(&mut self.stats, fx, Ignored::StaleLease { term }),
            },
            Input::DecisionWritten { id } => {
                // The bucket holds it now: apply it, so that this machine never knows less
                // than the revision its transport will CAS on next (the watch may lag).
                let landed = self.decider.as_ref().and_then(|d| d.pending_decision(id)).cloned();
                let out = self.decider.as_mut().map(|d| d.written(id)).unwrap_or_default();
                self.decider_out(out, fx);
                if let Some(landed) = landed.filter(|d| d.id > self.applied_id()) {
                    self.observe(now, landed, fx);
                }
            }
            Input::DecisionWriteFailed { id } => {
                let out = self.decider.as_mut().map(|d| d.write_failed(now, id)).unwrap_or_default();
                self.decider_out(out, fx);
            }
            Input::DecisionRejected { id, current } => {
                if let Some(current) = &current {
                    if let Err(e) = self.check_decision(current) {
                        return self.refuse(e, fx);
                    }
                }
                // Learn the reply's value first (it may depose this decider or move the
                // bucket past its restatement), then rebase on the newest decision known:
                // a watch update can bring a newer one before the rejection arrives, and
                // restating the reply's older value would roll the bucket back (found by
                // the exhaustive model).
                if let Some(current) = &current {
                    self.observe(now, current.clone(), fx);
                }
                let newest = match (current, &self.applied) {
                    (Some(current), Some(applied)) if applied.id > current.id => Some(applied.clone()),
                    (current, _) => current,
                };
                let out = self.decider.as_mut().map(|d| d.write_rejected(now, id, newest.as_ref())).unwrap_or_default();
                self.decider_out(out, fx);
            }
            Input::Command(command) => self.command(now, &command, fx),
            Input::HealthCheckResult { attempt, healthy } => {
                let out = self.decider.as_mut().map(|d| d.health_result(now, attempt, healthy)).unwrap_or_default();
                self.decider_out(out, fx);
            }
            Input::ConnectionLost => {
                if self.lost_since.is_none() {
                    self.lost_since = Some(now);
                    fx.push(Effect::Event(Event::OutageBegan));
                }
            }
            Input::ConnectionRestored => {
                if self.lost_since.take().is_some() {
                    self.outage_active = false;
                    fx.push(Effect::Resync);
                    fx.push(Effect::Event(Event::OutageEnded));
                }
            }
            Input::Shutdown => {
                if self.decider.is_some() {
                    self.step_down(StepDownReason::Shutdown, fx);
                }
            }
            Input::Reconfigure(config) => self.reconfigure(now, *config, fx),
        }
    }

    fn reconfigure(&mut self, now: Millis, config: ValidConfig, fx: &mut Vec<Effect>) {
        if config == self.config {
            return;
        }
        let from = self.config.version;
        if config.local != self.config.local {
            // A new overlay (or none): a serial past the old one makes a new generation,
            // so outcomes admitted under the old overlay's snapshots count as stale.
            let serial = self.overlay.as_ref().map_or(0, |o| o.serial) + 1;
            self.overlay = config.local.clone().map(|cycle| Overlay {
                judge: Judge::new(cycle, 1, config.seed.rotate_left(17), Some(self.params.node.clone())),
                serial,
                trip_stamp: None,
            });
        }
        self.config = config;
        let out = self.decider.as_mut().map(|d| d.reconfigure(now, &self.config)).unwrap_or_default();
        self.decider_out(out, fx);
        if from != self.config.version {
            fx.push(Effect::Event(Event::Reconfigured { from, to: self.config.version }));
        }
    }

    /// Asks the shell for the fleet's config when a decision was made under a version this
    /// machine does not run, once per version.
    fn follow_config_version(&mut self, version: u64, fx: &mut Vec<Effect>) {
        if version != 0 && version != self.config.version && version != self.config_asked {
            self.config_asked = version;
            fx.push(Effect::ReloadConfig { version });
        }
    }

    fn ignore(stats: &mut Stats, fx: &mut Vec<Effect>, what: Ignored) {
        match what {
            Ignored::StaleOutcomes { calls } => stats.stale_outcomes = stats.stale_outcomes.saturating_add(calls),
            Ignored::StaleDecision { .. } => stats.stale_decisions += 1,
            Ignored::StaleReport => stats.stale_reports += 1,
            Ignored::DuplicateReport => stats.duplicate_reports += 1,
            Ignored::CommandNotDeciding => stats.commands_not_deciding += 1,
            Ignored::StaleLease { .. } | Ignored::LeaseBeforeBootstrap { .. } => {}
        }
        fx.push(Effect::Event(Event::Ignored(what)));
    }

    fn refuse(&mut self, error: InputError, fx: &mut Vec<Effect>) {
        self.stats.refused_inputs += 1;
        fx.push(Effect::Event(Event::Refused(error)));
    }

    fn check_breaker(&self, breaker: &BreakerName, version: u16) -> Result<(), InputError> {
        if breaker != &self.params.breaker {
            return Err(InputError::WrongBreaker { got: breaker.clone() });
        }
        if version != WIRE_VERSION {
            return Err(InputError::UnsupportedVersion { got: version });
        }
        Ok(())
    }

    fn check_decision(&self, d: &Decision) -> Result<(), InputError> {
        self.check_breaker(&d.breaker, d.version)?;
        if !d.clock.is_well_formed() {
            return Err(InputError::MalformedClock);
        }
        if d.id.seq == 0 || d.phase > d.id || d.id.term.0 > MAX_TERM {
            return Err(InputError::MalformedDecision);
        }
        if let FleetState::HalfOpen { budget, grants } = &d.state {
            let total = grants.iter().map(|g| u64::from(g.probes)).sum::<u64>();
            if total > u64::from(*budget) || !grants.windows(2).all(|w| w[0].node < w[1].node) {
                return Err(InputError::MalformedDecision);
            }
        }
        if let Reason::Manual { actor, reason, .. } = &d.reason {
            if actor.len() > MAX_TEXT_LEN || reason.len() > MAX_TEXT_LEN {
                return Err(InputError::TextTooLong);
            }
        }
        if let Reason::Tripped { evidence, .. } = &d.reason {
            if evidence.top.len() > MAX_CONTRIBUTORS {
                return Err(InputError::MalformedDecision);
            }
        }
        if let Some(ms) = d.expires_after_ms {
            if CommandKind::setting(&d.state).is_none_or(|kind| check_override(kind, Some(ms.get())).is_err()) {
                return Err(InputError::BadOverride);
            }
        }
        Ok(())
    }

    fn lease_valid_until(&self, sent_at: Millis, ttl_ms: u64) -> Millis {
        sent_at.plus(ttl_ms.saturating_sub(self.params.lease_margin_ms))
    }

    fn local_outcomes(&mut self, now: Millis, outcomes: &LocalOutcomes, fx: &mut Vec<Effect>) {
        // Outcomes belong to the phases their generation was in: the fleet's part counts if
        // the fleet phase is still the same, the overlay's part if the overlay phase is.
        let key = self.recent_generations.iter().find(|(g, _)| *g == outcomes.generation).map(|(_, k)| *k);
        let fleet_current = key.is_some_and(|k| k.fleet_phase == self.generation_key.fleet_phase);
        let local_current = key.is_some_and(|k| k.local_serial == self.generation_key.local_serial);
        if !fleet_current {
            let calls = outcomes.counts.total();
            Self::ignore(&mut self.stats, fx, Ignored::StaleOutcomes { calls });
            if !local_current {
                return;
            }
        }
        if outcomes.counts.is_empty() && outcomes.longest_failure_streak == 0 {
            return;
        }
        let manual = self.applied.as_ref().is_some_and(|d| d.state.is_manual());
        if let (Some(overlay), false, true) = (&mut self.overlay, manual, local_current) {
            let before = overlay.label();
            let me = self.params.node.clone();
            let (counts, streak) = (&outcomes.counts, outcomes.longest_failure_streak);
            if let Some(verdict) = overlay.judge.ingest(now, &me, counts, streak, Arrival::LIVE) {
                if verdict.starts_phase() {
                    overlay.serial += 1;
                }
                if matches!(verdict, Reason::Tripped { .. }) {
                    // The report below carries the trip: it is this clock position.
                    overlay.trip_stamp = Some((self.clock.term(), self.clock.get(&me).saturating_add(1)));
                }
                let after = overlay.label();
                if before != after {
                    fx.push(Effect::Event(Event::LocalTransition { from: before, to: after }));
                }
            }
        }
        if !fleet_current {
            return;
        }
        self.stats.recorded.add(&outcomes.counts);
        self.report_seq += 1;
        self.clock.tick(&self.params.node);
        let local_open = self.overlay.as_ref().is_some_and(|o| o.label() == StateLabel::Open);
        self.stats.reports_published += 1;
        fx.push(Effect::PublishReport(Report {
            version: WIRE_VERSION,
            breaker: self.params.breaker.clone(),
            node: self.params.node.clone(),
            incarnation: self.params.incarnation,
            seq: self.report_seq,
            applied: self.applied_id(),
            clock: self.clock.clone(),
            counts: outcomes.counts,
            longest_failure_streak: outcomes.longest_failure_streak,
            local_open,
        }));
    }

    fn report(&mut self, now: Millis, report: &Report, arrival: Arrival, fx: &mut Vec<Effect>) {
        if let Err(e) = self.check_breaker(&report.breaker, report.version) {
            return self.refuse(e, fx);
        }
        if !report.clock.is_well_formed() {
            return self.refuse(InputError::MalformedClock, fx);
        }
        let Some(decider) = &mut self.decider else {
            self.stats.reports_not_judged += 1;
            return;
        };
        // A report claims what its node applied, and anyone allowed to publish can claim
        // anything: only the store (a newer decision, a lost CAS, a lost lease) deposes a
        // decider. A claim ahead of the newest decision this decider made is refused.
        if report.applied > decider.last_decided() {
            let applied = report.applied;
            return self.refuse(InputError::ReportFromFuture { applied }, fx);
        }
        let (fate, out) = decider.ingest(now, report, arrival);
        match fate {
            ReportFate::Counted => self.stats.reports_counted += 1,
            ReportFate::Stale => Self::ignore(&mut self.stats, fx, Ignored::StaleReport),
            ReportFate::Duplicate => Self::ignore(&mut self.stats, fx, Ignored::DuplicateReport),
            ReportFate::Manual | ReportFate::NotDeciding => self.stats.reports_not_judged += 1,
        }
        self.decider_out(out, fx);
    }

    fn observe(&mut self, now: Millis, decision: Decision, fx: &mut Vec<Effect>) {
        if let Err(e) = self.check_decision(&decision) {
            return self.refuse(e, fx);
        }
        if decision.id <= self.applied_id() {
            self.bootstrapped = true;
            Self::ignore(&mut self.stats, fx, Ignored::StaleDecision { id: decision.id });
            if let (Some(d), Some(applied)) = (&mut self.decider, &self.applied) {
                if decision.id < applied.id {
                    let out = d.bucket_went_back(applied);
                    self.decider_out(out, fx);
                }
            }
            return;
        }
        let mut rebase = false;
        if let Some(d) = &self.decider {
            if decision.id.term > d.term() {
                self.step_down(StepDownReason::Deposed { newer: decision.id.term }, fx);
            } else if decision.id.term == d.term() && decision.id > d.last_decided() {
                return self.refuse(InputError::DecisionFromFuture { id: decision.id }, fx);
            } else {
                rebase = decision.id.term < d.term();
            }
        }
        let from = self.applied.as_ref().map_or(StateLabel::Closed, |d| d.state.label());
        self.clock.merge(&decision.clock);
        self.fold_overlay(&decision, fx);
        fx.push(Effect::Event(Event::Applied {
            id: decision.id,
            from,
            to: decision.state.label(),
            reason: decision.reason.clone(),
        }));
        self.stats.decisions_applied += 1;
        if !self.bootstrapped {
            self.joined_phase = Some(decision.phase);
        }
        self.bootstrapped = true;
        self.applied_at = now;
        let id = decision.id;
        self.follow_config_version(decision.config_version, fx);
        self.applied = Some(decision);
        let Some(d) = &mut self.decider else {
            return;
        };
        let out = if rebase {
            self.applied.as_ref().map(|applied| d.older_term_observed(now, applied)).unwrap_or_default()
        } else if d.pending_decision(id).is_some() {
            // The watch showed this decider's pending write in the bucket before the
            // write's reply came: it landed, and the next one need not wait for the reply.
            d.written(id)
        } else {
            Vec::new()
        };
        self.decider_out(out, fx);
    }

    /// A manual decision clears the overlay; an open fleet decision that has seen the
    /// local trip takes it over. A concurrent one leaves it in force (towards safety).
    fn fold_overlay(&mut self, decision: &Decision, fx: &mut Vec<Effect>) {
        let Some(overlay) = &mut self.overlay else {
            return;
        };
        if overlay.label() == StateLabel::Closed {
            return;
        }
        let seen_trip = overlay.trip_stamp.is_some_and(|(term, position)| {
            decision.clock.term() == term && decision.clock.get(&self.params.node) >= position
        });
        let takes_over = decision.state.is_manual() || (matches!(decision.state, FleetState::Open { .. }) && seen_trip);
        if takes_over {
            let from = overlay.label();
            overlay.judge.reset();
            overlay.serial += 1;
            overlay.trip_stamp = None;
            fx.push(Effect::Event(Event::LocalFolded { id: decision.id }));
            fx.push(Effect::Event(Event::LocalTransition { from, to: StateLabel::Closed }));
        }
    }

    fn lease_gained(&mut self, now: Millis, term: Term, sent_at: Millis, ttl_ms: u64, fx: &mut Vec<Effect>) {
        if let Some(d) = &mut self.decider {
            if d.term() == term {
                let valid_until = sent_at.plus(ttl_ms.saturating_sub(self.params.lease_margin_ms));
                d.renewed(valid_until);
                return;
            }
            if d.term() > term {
                return Self::ignore(&mut self.stats, fx, Ignored::StaleLease { term });
            }
            self.step_down(StepDownReason::LeaseLost, fx);
        }
        if !self.bootstrapped {
            // Deciding needs the current state: restating a state this node has not read
            // could roll the bucket back. The shell offers the lease again after bootstrap.
            return Self::ignore(&mut self.stats, fx, Ignored::LeaseBeforeBootstrap { term });
        }
        if term <= self.retired_term {
            // Never lead a term twice: decisions of the earlier tenure may still be in flight.
            // Hand the grant back with the term to beat, or the shell would keep renewing a
            // lease nobody decides under (a rebuilt lease bucket grants low terms again).
            let newer = self.retired_term.max(self.applied_id().term);
            fx.push(Effect::StepDown { term, reason: StepDownReason::Deposed { newer } });
            return Self::ignore(&mut self.stats, fx, Ignored::StaleLease { term });
        }
        if self.applied_id().term >= term {
            // Terms are unique acquiring revisions: a decision of this term or a newer one
            // already exists, so this grant is stale.
            fx.push(Effect::StepDown { term, reason: StepDownReason::Deposed { newer: self.applied_id().term } });
            return Self::ignore(&mut self.stats, fx, Ignored::StaleLease { term });
        }
        let valid_until = self.lease_valid_until(sent_at, ttl_ms);
        let (decider, out) = Decider::take_over(
            self.params.breaker.clone(),
            self.params.node.clone(),
            &self.config,
            now,
            term,
            valid_until,
            self.applied.as_ref(),
        );
        self.decider = Some(decider);
        self.suspended_announced = false;
        fx.push(Effect::Event(Event::LeaseGained { term }));
        self.decider_out(out, fx);
        // A retune the previous decider was told of (the `reconfigure` command is consumed
        // once) but lost its lease before recording would otherwise never reach the fleet:
        // a new decider reads the fleet's config once (simulation seed 259).
        fx.push(Effect::ReloadConfig { version: 0 });
    }

    fn command(&mut self, now: Millis, command: &Command, fx: &mut Vec<Effect>) {
        if let Err(e) = self.check_breaker(&command.breaker, command.version) {
            return self.refuse(e, fx);
        }
        if command.actor.len() > MAX_TEXT_LEN || command.reason.len() > MAX_TEXT_LEN {
            return self.refuse(InputError::TextTooLong, fx);
        }
        if check_override(command.kind, command.duration_ms).is_err() {
            return self.refuse(InputError::BadOverride, fx);
        }
        match &mut self.decider {
            // Not a state to carry out: the config bucket says what to run on.
            Some(d) if d.is_valid(now) && command.kind == CommandKind::Reconfigure => {
                fx.push(Effect::ReloadConfig { version: 0 });
            }
            Some(d) if d.is_valid(now) => {
                let out = d.command(now, command);
                self.decider_out(out, fx);
            }
            _ => Self::ignore(&mut self.stats, fx, Ignored::CommandNotDeciding),
        }
    }

    fn step_down(&mut self, reason: StepDownReason, fx: &mut Vec<Effect>) {
        if let Some(d) = self.decider.take() {
            let term = d.term();
            self.retired_term = self.retired_term.max(term);
            fx.push(Effect::StepDown { term, reason });
            fx.push(Effect::Event(Event::SteppedDown { term, reason }));
        }
    }

    fn decider_out(&mut self, out: Vec<DeciderOut>, fx: &mut Vec<Effect>) {
        for o in out {
            match o {
                DeciderOut::Decided(id, state) => {
                    self.stats.decisions_made += 1;
                    fx.push(Effect::Event(Event::Decided { id, state }));
                }
                DeciderOut::Write(decision) => fx.push(Effect::WriteDecision(decision)),
                DeciderOut::HealthCheck(attempt) => fx.push(Effect::RunHealthCheck { attempt }),
                DeciderOut::WouldTrip(rule) => fx.push(Effect::Event(Event::WouldTrip { rule })),
                DeciderOut::StepDown(reason) => self.step_down(reason, fx),
            }
        }
    }

    fn advance_time(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if let Some(overlay) = &mut self.overlay {
            let before = overlay.label();
            if let Some(verdict) = overlay.judge.tick(now) {
                if verdict.starts_phase() {
                    overlay.serial += 1;
                }
                let after = overlay.label();
                if before != after {
                    fx.push(Effect::Event(Event::LocalTransition { from: before, to: after }));
                }
            }
        }
        if let Some(d) = &mut self.decider {
            if !d.is_valid(now) && !self.suspended_announced {
                self.suspended_announced = true;
                fx.push(Effect::Event(Event::LeaseSuspended { term: d.term() }));
            }
            let out = d.tick(now);
            self.decider_out(out, fx);
        }
        if let Some(since) = self.lost_since {
            if !self.outage_active && now >= since.plus(self.config.outage.grace_ms) {
                self.outage_active = true;
                fx.push(Effect::Event(Event::OutagePolicyApplied { policy: self.config.outage.policy }));
            }
        }
    }

    fn fleet_admission(&self) -> (Admission, Option<Millis>) {
        match self.applied.as_ref().map(|d| &d.state) {
            None
            | Some(FleetState::Closed | FleetState::ForcedClosed | FleetState::Disabled | FleetState::MetricsOnly) => {
                (Admission::Allow, None)
            }
            Some(FleetState::Ramping { admit_per_mille, .. }) => {
                (Admission::Fraction { per_mille: *admit_per_mille }, None)
            }
            Some(FleetState::Open { duration_ms }) => (Admission::Reject, Some(self.applied_at.plus(*duration_ms))),
            // A grant is made to a node name, and an earlier process under this name may
            // have spent it before it died: a process that joins during a half-open round
            // sits that round out, or the fleet could probe beyond the round's budget
            // (found by the simulator: crash after probing, restart within max_wait).
            Some(FleetState::HalfOpen { .. }) if self.joined_phase == self.applied.as_ref().map(|d| d.phase) => {
                (Admission::Probe { grant: 0, round: 0 }, None)
            }
            Some(state @ FleetState::HalfOpen { .. }) => {
                (Admission::Probe { grant: state.grant_for(&self.params.node), round: 0 }, None)
            }
            Some(FleetState::ForcedOpen) => (Admission::Reject, None),
        }
    }

    fn local_admission(&self) -> (Admission, Option<Millis>) {
        let Some(overlay) = &self.overlay else {
            return (Admission::Allow, None);
        };
        match overlay.judge.phase() {
            Phase::Closed => (Admission::Allow, None),
            Phase::Ramping { .. } => match overlay.judge.fleet_state() {
                FleetState::Ramping { admit_per_mille, .. } => {
                    (Admission::Fraction { per_mille: admit_per_mille }, None)
                }
                _ => (Admission::Allow, None),
            },
            Phase::Open { until, .. } => (Admission::Reject, Some(*until)),
            Phase::HalfOpen { .. } => {
                (Admission::Probe { grant: overlay.judge.grant_for(&self.params.node), round: 0 }, None)
            }
        }
    }

    /// The effective admission, its state, whether to record, the retry hint, and whose
    /// probe round a probe admission counts against (the fleet's whenever the fleet probes).
    fn effective(&self) -> (Admission, StateLabel, bool, Option<Millis>, Option<ProbeRoundKey>) {
        let fleet_label = self.applied.as_ref().map_or(StateLabel::Closed, |d| d.state.label());
        if fleet_label.is_manual() {
            let (admission, _) = self.fleet_admission();
            return (admission, fleet_label, fleet_label != StateLabel::Disabled, None, None);
        }
        let (fleet, fleet_retry) = self.fleet_admission();
        let (local, local_retry) = self.local_admission();
        // While the fleet is half-open every probe counts against its round, whatever the
        // overlay or the outage policy admit; so a fleet round is one hot-path round from
        // start to end and its grant can never be re-armed.
        let round = if matches!(fleet, Admission::Probe { .. }) {
            ProbeRoundKey::Fleet(self.generation_key.fleet_phase)
        } else {
            ProbeRoundKey::Local(self.generation_key.local_serial)
        };
        let (admission, retry_at) = match (self.outage_active, self.config.outage.policy) {
            (true, OutagePolicy::FailOpen) => (Admission::Allow, None),
            (true, OutagePolicy::FailClosed) => (Admission::Reject, None),
            (true, OutagePolicy::LocalOnly) => (local, local_retry),
            _ => (fleet.tighter(local), fleet_retry.max(local_retry)),
        };
        let round = matches!(admission, Admission::Probe { .. }).then_some(round);
        (admission, admission.label(), true, retry_at, round)
    }

    /// Whether the overlay's consecutive-failure rule, tripping now, would make the
    /// effective admission reject: the overlay is closed and has the rule, no manual state
    /// rules, and the outage policy (if in force) follows the overlay. Then the hot path may
    /// trip on the crossing call itself ([`Snapshot::trip_on_streak`]); this machine trips
    /// the overlay on the same run when the drain brings it.
    fn overlay_streak_would_reject(&self) -> bool {
        let manual = self.applied.as_ref().is_some_and(|d| d.state.is_manual());
        let overlay_decides = !self.outage_active || self.config.outage.policy == OutagePolicy::LocalOnly;
        let rule = self.config.local.as_ref().is_some_and(|l| l.rules.consecutive_failures.is_some());
        let closed = self.overlay.as_ref().is_some_and(|o| matches!(o.judge.phase(), Phase::Closed));
        !manual && overlay_decides && rule && closed
    }

    fn refresh_snapshot(&mut self, _now: Millis, fx: &mut Vec<Effect>) {
        let key = GenerationKey {
            fleet_phase: self.applied.as_ref().map_or(DecisionId::NONE, |d| d.phase),
            local_serial: self.overlay.as_ref().map_or(0, |o| o.serial),
            outage: self.outage_active,
        };
        if key != self.generation_key {
            self.generation_key = key;
            self.generation += 1;
            if self.recent_generations.len() >= TRACKED_GENERATIONS {
                self.recent_generations.pop_front();
            }
            self.recent_generations.push_back((self.generation, key));
        }
        let (mut admission, state, record, retry_at, round_key) = self.effective();
        if let (Admission::Probe { round, .. }, Some(key)) = (&mut admission, round_key) {
            if self.probe_round_key != Some(key) {
                self.probe_round_key = Some(key);
                self.probe_round += 1;
            }
            *round = self.probe_round;
        }
        let snapshot = Snapshot {
            generation: self.generation,
            admission,
            record,
            state,
            fleet: self.applied.as_ref().map_or(StateLabel::Closed, |d| d.state.label()),
            local: self.overlay.as_ref().map(Overlay::label),
            retry_at,
            outage: self.outage_active,
            trip_on_streak: admission == Admission::Allow && record && self.overlay_streak_would_reject(),
        };
        if snapshot != self.snapshot {
            if snapshot.state != self.snapshot.state {
                fx.push(Effect::Event(Event::EffectiveChanged { from: self.snapshot.state, to: snapshot.state }));
            }
            self.snapshot = snapshot;
            fx.push(Effect::Snapshot(snapshot));
        }
    }

    fn refresh_wake(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let outage = match self.lost_since {
            Some(since) if !self.outage_active => Some(since.plus(self.config.outage.grace_ms)),
            _ => None,
        };
        let wake = [
            self.overlay.as_ref().and_then(|o| o.judge.next_deadline()),
            self.decider.as_ref().and_then(|d| d.next_deadline(now)),
            outage,
        ]
        .into_iter()
        .flatten()
        .min();
        if wake != self.wake {
            self.wake = wake;
            if let Some(at) = wake {
                fx.push(Effect::WakeAt(at));
            }
        }
    }
}

#[cfg(test)]
mod tests;
