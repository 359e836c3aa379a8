//! The seeded fleet simulation: one seed draws a dependency pattern and a fault plan
//! (network delay, reordering, duplication, loss, partitions; clock skew, drift and
//! jumps; crashes; pauses longer than the lease; operator commands; the lease store wiped
//! and the state bucket rolled back, drawn from a stream of their own), runs the real
//! machines through the [`Fleet`] harness under it, then heals everything and checks
//! liveness. Safety is checked at every step by the harness's
//! [`SafetyMonitor`](crate::properties::SafetyMonitor); a seed always runs twice and the
//! two trace hashes must match.
//!
//! # A run
//!
//! 1. **Chaos** (`[0, chaos_ms)`): the dependency follows its pattern and the fault plan's
//!    episodes start and end at their times.
//! 2. **Heal** (at `chaos_ms`): every link is mended, every pause ends, crashed nodes
//!    restart, a manual state is reset and the dependency is healthy.
//! 3. **Liveness**, each within its bound ([`CONVERGE_WITHIN_MS`], [`OPEN_WITHIN_MS`],
//!    [`CLOSE_WITHIN_MS`]): every node applies the store's current (automatic) decision;
//!    then the dependency fails and every node must reject; then it recovers and every
//!    node must admit again under a closed decision. Throughout, no half-open decision
//!    may stay current longer than its `max_wait` plus [`HALF_OPEN_SLACK_MS`].

use std::collections::BTreeMap;
use std::fmt;

use breaker_actors::machine::{
    Admission, BreakerConfig, CommandKind, DecisionId, FleetState, HalfOpenPolicy, NodeId, OpenPolicy, OutcomeCounts,
    SeededRng, TripPolicy, WindowConfig,
};

use crate::fleet::{Fleet, FleetError, FleetSpec, FleetStats, LinkFaults, PlantedBug};
use crate::properties::{Property, Violation};

/// The breaker's open duration in the simulation.
pub const OPEN_MS: u64 = 1_000;
/// The half-open round's max wait in the simulation.
pub const MAX_WAIT_MS: u64 = 2_000;
/// The lease TTL in the simulation.
pub const LEASE_TTL_MS: u64 = 1_500;
/// The deciders' lease margin in the simulation.
pub const LEASE_MARGIN_MS: u64 = 300;
/// The flush interval, and the simulation's step.
pub const FLUSH_MS: u64 = 20;
/// After the heal, every node applies the store's current automatic decision within this
/// long: a lease expiry, a resync, and a reset command's round trip.
pub const CONVERGE_WITHIN_MS: u64 = 2 * LEASE_TTL_MS + 2 * crate::fleet::RESYNC_INTERVAL_MS;
/// A dependency failing every call opens every node within this long.
pub const OPEN_WITHIN_MS: u64 = 2_000;
/// A recovered dependency closes every node within this long: the rest of the open
/// period, a half-open round, and one failed round's reopening.
pub const CLOSE_WITHIN_MS: u64 = 2 * (OPEN_MS + MAX_WAIT_MS) + 1_000;
/// How much longer than `max_wait` a half-open decision may stay current: the decider
/// notices at its next tick and the write travels.
pub const HALF_OPEN_SLACK_MS: u64 = 500;
/// The evidence age bound of the simulated breaker.
pub const MAX_EVIDENCE_AGE_MS: u64 = 1_000;
/// The default length of the chaos phase.
pub const DEFAULT_CHAOS_MS: u64 = 20_000;

/// A kind of fault the plan may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// One node's packets late by up to seconds (a stall).
    Delay,
    /// Every node's packets late by a little, so subjects overtake each other.
    Reorder,
    /// One node's publishes and watch updates delivered twice.
    Duplicate,
    /// One node's packets lost at random.
    Drop,
    /// Nodes cut off: two-way, one-way either way, or flapping.
    Partition,
    /// One node's clock skewed, drifting, or jumping forward.
    Clock,
    /// One node crashes and restarts later.
    Crash,
    /// The decider (or a node) stops the world for longer than the lease.
    Pause,
    /// An operator forces a manual state, and resets it later.
    Command,
    /// A foreign publisher sends reports claiming arbitrary applied decisions: far in the
    /// future, a later term, a later sequence of this term, none, or the current one.
    Foreign,
    /// The lease bucket is deleted and recreated while the decisions persist: lease
    /// revisions restart at 1, below the stored terms.
    LeaseWipe,
    /// The state bucket loses its newest values (acknowledged writes lost, an older
    /// backup restored): the decision and its revision go back.
    Rollback,
    /// The breaker is retuned: a newer config version in the config bucket and the
    /// `reconfigure` command (a rolling deploy or an operator's `config set`), mid-chaos.
    Retune,
    /// The outcome consumer stalls for up to 0.4 s on reaching a report published up to
    /// 1 s ago (a replay's middle when a takeover is under way), while every machine ticks.
    FeedStall,
}

impl FaultKind {
    /// Kinds whose episodes are drawn apart from the others (see [`plan`]).
    pub const DRAWN_APART: [Self; 3] = [Self::Foreign, Self::Retune, Self::FeedStall];

    /// Every kind.
    pub const ALL: [Self; 14] = [
        Self::Delay,
        Self::Reorder,
        Self::Duplicate,
        Self::Drop,
        Self::Partition,
        Self::Clock,
        Self::Crash,
        Self::Pause,
        Self::Command,
        Self::Foreign,
        Self::LeaseWipe,
        Self::Rollback,
        Self::Retune,
        Self::FeedStall,
    ];

    /// Whether it is a fault of the server's stores. These are drawn from a random stream
    /// of their own, so that adding them left every other seed's plan as it was.
    pub fn is_store(self) -> bool {
        matches!(self, Self::LeaseWipe | Self::Rollback)
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Delay => "delay",
            Self::Reorder => "reorder",
            Self::Duplicate => "duplicate",
            Self::Drop => "drop",
            Self::Partition => "partition",
            Self::Clock => "clock",
            Self::Crash => "crash",
            Self::Pause => "pause",
            Self::Command => "command",
            Self::Foreign => "foreign",
            Self::LeaseWipe => "lease-wipe",
            Self::Rollback => "rollback",
            Self::Retune => "retune",
            Self::FeedStall => "feed-stall",
        }
    }

    /// Parses a comma-separated list: kind names, `all` or `none`.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, SimError> {
        match list.trim() {
            "all" => return Ok(Self::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim) {
            let kind = Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| SimError::UnknownFault {
                name: name.to_owned(),
                known: Self::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds.sort();
        Ok(kinds)
    }

    /// The command-line form of `kinds`.
    pub fn list_name(kinds: &[Self]) -> String {
        if kinds.is_empty() {
            "none".to_owned()
        } else if kinds.len() == Self::ALL.len() {
            "all".to_owned()
        } else {
            kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a partition cuts its nodes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionShape {
    /// Nothing in or out: the clients notice the disconnection.
    TwoWay,
    /// The nodes' packets are lost; they still hear the server.
    OutboundOnly,
    /// The nodes hear nothing; their packets still arrive.
    InboundOnly,
    /// Two-way, on and off every `period_ms`.
    Flapping {
        /// Half a cycle.
        period_ms: u64,
    },
}

/// Which node a pause hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseTarget {
    /// Whoever holds the lease when the pause begins (the "paused old leader").
    Decider,
    /// A node by index.
    Node(usize),
}

/// One fault of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Node `node`'s packets are late by up to `max_delay_ms`.
    Delay {
        /// The node.
        node: usize,
        /// The longest delay.
        max_delay_ms: u64,
    },
    /// Every node's packets are late by up to `max_delay_ms`.
    Reorder {
        /// The longest delay.
        max_delay_ms: u64,
    },
    /// Node `node`'s publishes and watch updates are duplicated.
    Duplicate {
        /// The node.
        node: usize,
        /// Duplicated per thousand.
        per_mille: u16,
    },
    /// Node `node`'s packets are lost at random.
    Drop {
        /// The node.
        node: usize,
        /// Lost per thousand.
        per_mille: u16,
    },
    /// `nodes` are cut off.
    Partition {
        /// The nodes.
        nodes: Vec<usize>,
        /// How.
        shape: PartitionShape,
    },
    /// Node `node`'s clock is offset and drifts (from the start of the run).
    ClockSkew {
        /// The node.
        node: usize,
        /// The offset.
        offset_ms: u64,
        /// The drift, in parts per million.
        drift_ppm: i32,
    },
    /// Node `node`'s clock jumps forward by `jump_ms` at the episode's start.
    ClockJump {
        /// The node.
        node: usize,
        /// How far.
        jump_ms: u64,
    },
    /// Node `node` is down for the episode.
    Crash {
        /// The node.
        node: usize,
    },
    /// The target stops the world for the episode.
    Pause {
        /// Who.
        target: PauseTarget,
    },
    /// An operator forces `kind` at the start and resets at the end; a time-boxed command
    /// (`for_ms`) may run out before that, and the decider returns to automatic control.
    Command {
        /// The manual state.
        kind: CommandKind,
        /// The command's time box, if any.
        for_ms: Option<u64>,
    },
    /// A foreign publisher reports as node `py-<publisher>` every `every_ms` or so, each
    /// report claiming an applied decision drawn anew (see [`FaultKind::Foreign`]).
    Foreign {
        /// Which publisher (its node id is not a simulated node's).
        publisher: u64,
        /// Mean time between its reports.
        every_ms: u64,
    },
    /// The lease store is wiped at the episode's start.
    LeaseWipe,
    /// The state bucket loses its newest `entries` values at the episode's start.
    Rollback {
        /// How many.
        entries: usize,
    },
    /// The next config version (another jitter seed) is set at the episode's start.
    Retune,
    /// At the episode's start the outcome consumer stalls for `for_ms` on reaching a
    /// report published `back_ms` ago or later ([`Fleet::stall_feed`](crate::fleet::Fleet::stall_feed)).
    FeedStall {
        /// How far back the stall begins.
        back_ms: u64,
        /// How long it lasts.
        for_ms: u64,
    },
}

impl Fault {
    /// The kind it belongs to.
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::Delay { .. } => FaultKind::Delay,
            Self::Reorder { .. } => FaultKind::Reorder,
            Self::Duplicate { .. } => FaultKind::Duplicate,
            Self::Drop { .. } => FaultKind::Drop,
            Self::Partition { .. } => FaultKind::Partition,
            Self::ClockSkew { .. } | Self::ClockJump { .. } => FaultKind::Clock,
            Self::Crash { .. } => FaultKind::Crash,
            Self::Pause { .. } => FaultKind::Pause,
            Self::Command { .. } => FaultKind::Command,
            Self::Foreign { .. } => FaultKind::Foreign,
            Self::LeaseWipe => FaultKind::LeaseWipe,
            Self::Rollback { .. } => FaultKind::Rollback,
            Self::Retune => FaultKind::Retune,
            Self::FeedStall { .. } => FaultKind::FeedStall,
        }
    }
}

/// A fault in force over `[from_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// Start, in sim ms.
    pub from_ms: u64,
    /// End, in sim ms.
    pub until_ms: u64,
    /// The fault.
    pub fault: Fault,
}

/// How the dependency behaves during the chaos phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyPattern {
    /// Never fails.
    Healthy,
    /// Fails `per_mille` of calls from `from_ms` on.
    Failing {
        /// From when.
        from_ms: u64,
        /// How much.
        per_mille: u16,
    },
    /// Alternates between failing everything and healthy every `period_ms`.
    Flapping {
        /// Half a cycle.
        period_ms: u64,
    },
    /// Fails everything over `[from_ms, until_ms)`.
    Recovering {
        /// From when.
        from_ms: u64,
        /// Until when.
        until_ms: u64,
    },
}

impl DependencyPattern {
    /// The failure schedule it stands for, over `[0, until_ms)`.
    pub fn schedule(&self, until_ms: u64) -> Vec<(u64, u16)> {
        let mut schedule = match *self {
            Self::Healthy => vec![(0, 0)],
            Self::Failing { from_ms, per_mille } => vec![(0, 0), (from_ms, per_mille)],
            Self::Flapping { period_ms } => (0..until_ms.div_ceil(period_ms.max(1)))
                .map(|k| (k * period_ms, if k % 2 == 1 { 1000 } else { 0 }))
                .collect(),
            Self::Recovering { from_ms, until_ms } => vec![(0, 0), (from_ms, 1000), (until_ms, 0)],
        };
        schedule.retain(|(at, _)| *at < until_ms);
        schedule
    }
}

/// Everything one seed simulates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The dependency during chaos.
    pub dependency: DependencyPattern,
    /// The faults, in order of their start.
    pub episodes: Vec<Episode>,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    /// The seed of everything.
    pub seed: u64,
    /// Fleet size.
    pub nodes: usize,
    /// Fault kinds the plan may draw.
    pub faults: Vec<FaultKind>,
    /// Length of the chaos phase.
    pub chaos_ms: u64,
    /// A bug planted in the simulated server.
    pub planted: Option<PlantedBug>,
    /// Keep a readable trace.
    pub trace: bool,
}

impl SimSpec {
    /// Seed `seed`, `nodes` nodes, every fault kind, the default chaos phase.
    pub fn new(seed: u64, nodes: usize) -> Self {
        Self { seed, nodes, faults: FaultKind::ALL.to_vec(), chaos_ms: DEFAULT_CHAOS_MS, planted: None, trace: false }
    }

    /// The command that replays this seed with a trace.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "cargo run -p model-check --release -- sim --seed {} --nodes {} --faults {} --chaos-ms {} --trace",
            self.seed,
            self.nodes,
            FaultKind::list_name(&self.faults),
            self.chaos_ms
        );
        if self.planted == Some(PlantedBug::StoreWithoutCas) {
            command.push_str(" --plant store-without-cas");
        }
        command
    }
}

/// A simulation that cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The fleet refused the spec.
    Fleet(FleetError),
    /// A fault kind nobody knows.
    UnknownFault {
        /// The name given.
        name: String,
        /// The names known.
        known: String,
    },
    /// A spec field out of range.
    Spec {
        /// Which.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fleet(e) => write!(f, "{e}"),
            Self::UnknownFault { name, known } => write!(f, "unknown fault kind {name:?} (known: {known}, all, none)"),
            Self::Spec { field, problem } => write!(f, "invalid simulation: {field}: {problem}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<FleetError> for SimError {
    fn from(e: FleetError) -> Self {
        Self::Fleet(e)
    }
}

/// The largest fleet the simulator runs.
pub const MAX_SIM_NODES: usize = 16;
/// The longest chaos phase the simulator runs.
pub const MAX_CHAOS_MS: u64 = 600_000;

/// Trips on this many failures in a row on one node, besides the failure rate: so the hot
/// path's failure streaks, and whether one crosses a phase, are part of every run.
pub const SIM_CONSECUTIVE_FAILURES: u32 = 6;

/// The breaker configuration every simulation runs.
pub fn sim_config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 40 },
            minimum_calls: 10,
            failure_rate: Some(0.5),
            // Scaled like the lease and the stream (3 s retention): a replay holds reports
            // older than the bound.
            max_evidence_age_ms: MAX_EVIDENCE_AGE_MS,
            consecutive_failures: Some(SIM_CONSECUTIVE_FAILURES),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: OPEN_MS },
        half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: MAX_WAIT_MS, ramp: None },
        local: None,
        ..BreakerConfig::default()
    }
}

/// The share of admitted calls (per thousand) that end in an excluded error in `seed`'s
/// run: none in half the seeds, up to a fifth of them in the others, probes among them (an
/// ignored probe gives its slot back, and the round must go on).
pub fn ignored_per_mille(seed: u64) -> u16 {
    let mut rng = SeededRng::new(seed ^ 0x6967_6e6f_7265_6421);
    if rng.below(2) == 0 { 0 } else { u16::try_from(20 + rng.below(181)).unwrap_or(100) }
}

/// Draws the plan of `spec`'s seed.
pub fn plan(spec: &SimSpec) -> Plan {
    let mut rng = SeededRng::new(spec.seed ^ 0x706c_616e_706c_616e);
    let chaos = spec.chaos_ms.max(1_000);
    let dependency = match rng.below(4) {
        0 => DependencyPattern::Healthy,
        1 => DependencyPattern::Failing {
            from_ms: rng.below(chaos / 2),
            per_mille: u16::try_from(500 + rng.below(501)).unwrap_or(1000),
        },
        2 => DependencyPattern::Flapping { period_ms: 500 + rng.below(3_000) },
        _ => {
            let from_ms = rng.below(chaos / 2);
            DependencyPattern::Recovering { from_ms, until_ms: from_ms + 1_000 + rng.below(chaos / 2) }
        }
    };
    let mut episodes = Vec::new();
    // Kinds added after regression seeds were pinned draw from streams of their own, so a
    // seed's plan for the older kinds stays what it was.
    let (together, apart): (Vec<FaultKind>, Vec<FaultKind>) =
        spec.faults.iter().filter(|k| !k.is_store()).partition(|k| !FaultKind::DRAWN_APART.contains(k));
    if !together.is_empty() {
        let count = 2 + rng.below(5);
        let kinds = u64::try_from(together.len()).unwrap_or(1);
        for _ in 0..count {
            let kind = together[usize::try_from(rng.below(kinds)).unwrap_or(0)];
            draw_episode(kind, &mut rng, chaos, spec.nodes, &mut episodes);
        }
    }
    for kind in apart {
        let mut rng = SeededRng::new(
            spec.seed ^ kind.name().bytes().fold(0xa5a5_a5a5_u64, |h, b| h.rotate_left(8) ^ u64::from(b)),
        );
        let count = if together.is_empty() { 1 + rng.below(3) } else { rng.below(2) };
        for _ in 0..count {
            draw_episode(kind, &mut rng, chaos, spec.nodes, &mut episodes);
        }
    }
    // Store faults: each kind in a third of the seeds, once, after the fleet has decided
    // for a while (so that the stored terms are well above 1).
    let mut store_rng = SeededRng::new(spec.seed ^ 0x7374_6f72_6573_2121);
    for kind in spec.faults.iter().copied().filter(|k| k.is_store()) {
        if store_rng.below(3) != 0 {
            continue;
        }
        let from_ms = chaos / 4 + store_rng.below(chaos / 2);
        let fault = match kind {
            FaultKind::Rollback => Fault::Rollback { entries: 1 + usize::try_from(store_rng.below(4)).unwrap_or(0) },
            _ => Fault::LeaseWipe,
        };
        // Long enough to be in force at one step: it acts when it begins.
        episodes.push(Episode { from_ms, until_ms: (from_ms + 2 * FLUSH_MS).min(chaos), fault });
    }
    episodes.sort_by_key(|e| e.from_ms);
    Plan { dependency, episodes }
}

/// Draws one episode of `kind` within the chaos phase into `episodes`.
fn draw_episode(kind: FaultKind, rng: &mut SeededRng, chaos: u64, nodes: usize, episodes: &mut Vec<Episode>) {
    let node_count = u64::try_from(nodes.max(1)).unwrap_or(1);
    let node = |rng: &mut SeededRng| usize::try_from(rng.below(node_count)).unwrap_or(0);
    let from_ms = rng.below(chaos - 500);
    let length = |rng: &mut SeededRng, min: u64, spread: u64| min + rng.below(spread);
    let (fault, until_ms) = match kind {
        FaultKind::Delay => {
            let fault = Fault::Delay { node: node(rng), max_delay_ms: 20 + rng.below(2_500) };
            (fault, from_ms + length(rng, 500, 5_000))
        }
        FaultKind::Reorder => {
            let fault = Fault::Reorder { max_delay_ms: 5 + rng.below(100) };
            (fault, from_ms + length(rng, 500, 8_000))
        }
        FaultKind::Duplicate => {
            let per_mille = u16::try_from(100 + rng.below(500)).unwrap_or(500);
            (Fault::Duplicate { node: node(rng), per_mille }, from_ms + length(rng, 500, 8_000))
        }
        FaultKind::Drop => {
            let per_mille = u16::try_from(50 + rng.below(400)).unwrap_or(200);
            (Fault::Drop { node: node(rng), per_mille }, from_ms + length(rng, 500, 8_000))
        }
        FaultKind::Partition => {
            let mut cut: Vec<usize> = (0..nodes).filter(|_| rng.below(2) == 0).collect();
            if cut.is_empty() {
                cut.push(node(rng));
            }
            let shape = match rng.below(4) {
                0 => PartitionShape::TwoWay,
                1 => PartitionShape::OutboundOnly,
                2 => PartitionShape::InboundOnly,
                _ => PartitionShape::Flapping { period_ms: 200 + rng.below(1_500) },
            };
            (Fault::Partition { nodes: cut, shape }, from_ms + length(rng, 500, 6_000))
        }
        // A monotonic clock only ever moves forward: a skew and a drift hold from
        // the start, a jump goes forward once; neither ends before the run does.
        FaultKind::Clock => {
            if rng.below(2) == 0 {
                let drift = i32::try_from(rng.below(40_001)).unwrap_or(0) - 20_000;
                let skew = Fault::ClockSkew { node: node(rng), offset_ms: rng.below(1_000_000), drift_ppm: drift };
                episodes.push(Episode { from_ms: 0, until_ms: chaos, fault: skew });
                return;
            }
            (Fault::ClockJump { node: node(rng), jump_ms: 100 + rng.below(5_000) }, chaos)
        }
        FaultKind::Crash => (Fault::Crash { node: node(rng) }, from_ms + length(rng, 100, 5_000)),
        FaultKind::Pause => {
            let target = if rng.below(3) == 0 { PauseTarget::Node(node(rng)) } else { PauseTarget::Decider };
            (Fault::Pause { target }, from_ms + length(rng, LEASE_TTL_MS, 2 * LEASE_TTL_MS))
        }
        FaultKind::Command => {
            let kind = match rng.below(3) {
                0 => CommandKind::ForceOpen,
                1 => CommandKind::ForceClosed,
                _ => CommandKind::Disable,
            };
            let until_ms = from_ms + length(rng, 200, 4_000);
            // Half the commands are time-boxed, most of them ending within the episode.
            let for_ms = (rng.below(2) == 0).then(|| 100 + rng.below(until_ms - from_ms + 1_000));
            (Fault::Command { kind, for_ms }, until_ms)
        }
        // Drawn once per seed apart from the others (see `plan`).
        FaultKind::LeaseWipe | FaultKind::Rollback => return,
        FaultKind::Retune => (Fault::Retune, from_ms + 2 * FLUSH_MS),
        FaultKind::FeedStall => {
            (Fault::FeedStall { back_ms: rng.below(1_000), for_ms: 20 + rng.below(400) }, from_ms + 2 * FLUSH_MS)
        }
        FaultKind::Foreign => {
            let fault = Fault::Foreign { publisher: 1 + rng.below(3), every_ms: FLUSH_MS + rng.below(200) };
            (fault, from_ms + length(rng, 500, 8_000))
        }
    };
    episodes.push(Episode { from_ms, until_ms: until_ms.min(chaos), fault });
}

/// What one seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// The spec run.
    pub spec: SimSpec,
    /// The plan drawn.
    pub plan: Plan,
    /// Simulated time at the end.
    pub sim_ms: u64,
    /// The trace hash of the run.
    pub trace_hash: u64,
    /// Episodes injected, by kind.
    pub episodes: BTreeMap<FaultKind, u64>,
    /// The harness's counters (packet-level faults among them).
    pub stats: FleetStats,
    /// Decisions the store accepted.
    pub decisions: usize,
    /// After the heal: how long until every node converged, opened, closed.
    pub converged_after_ms: Option<u64>,
    /// How long a failing dependency took to open every node.
    pub opened_after_ms: Option<u64>,
    /// How long a recovered dependency took to close every node.
    pub closed_after_ms: Option<u64>,
    /// Violations found (none expected).
    pub violations: Vec<Violation>,
    /// The readable trace, if asked for.
    pub trace: Vec<String>,
}

/// Runs `spec` once; see the module documentation.
pub fn run_once(spec: &SimSpec) -> Result<SeedReport, SimError> {
    if spec.nodes == 0 || spec.nodes > MAX_SIM_NODES {
        return Err(SimError::Spec { field: "nodes", problem: format!("must be 1..={MAX_SIM_NODES}") });
    }
    if !(1_000..=MAX_CHAOS_MS).contains(&spec.chaos_ms) {
        return Err(SimError::Spec { field: "chaos_ms", problem: format!("must be 1000..={MAX_CHAOS_MS}") });
    }
    let plan = plan(spec);
    let fleet_spec = FleetSpec {
        nodes: spec.nodes,
        breaker: "sim".into(),
        config: sim_config(),
        lease_ttl_ms: LEASE_TTL_MS,
        lease_margin_ms: LEASE_MARGIN_MS,
        flush_ms: FLUSH_MS,
        calls_per_flush: 3,
        seed: spec.seed,
        dependency: plan.dependency.schedule(spec.chaos_ms),
    };
    let mut fleet = Fleet::new(fleet_spec)?;
    if spec.trace {
        fleet.record_trace();
    }
    if let Some(bug) = spec.planted {
        fleet.plant(bug);
    }
    fleet.set_ignored_per_mille(ignored_per_mille(spec.seed));
    let mut run = Run {
        fleet,
        plan: plan.clone(),
        active: vec![false; plan.episodes.len()],
        links: vec![LinkFaults::default(); spec.nodes],
        half_open_since: None,
        foreign_rng: SeededRng::new(spec.seed ^ 0x666f_7265_6967_6e00),
    };
    let mut episodes = BTreeMap::new();
    while run.fleet.now() < spec.chaos_ms {
        for kind in run.apply_plan()? {
            *episodes.entry(kind).or_insert(0) += 1;
        }
        run.publish_foreign();
        run.fleet.step();
    }
    run.heal()?;
    let liveness = run.check_liveness()?;
    let fleet = run.fleet;
    Ok(SeedReport {
        spec: spec.clone(),
        plan,
        sim_ms: fleet.now(),
        trace_hash: fleet.trace_hash(),
        episodes,
        stats: fleet.stats(),
        decisions: fleet.history().len(),
        converged_after_ms: liveness.converged,
        opened_after_ms: liveness.opened,
        closed_after_ms: liveness.closed,
        violations: fleet.violations().to_vec(),
        trace: fleet.trace_lines().to_vec(),
    })
}

/// Runs `spec` twice and checks the two runs are the same (a [`Property::Determinism`]
/// violation otherwise); the first run's report.
pub fn run_seed(spec: &SimSpec) -> Result<SeedReport, SimError> {
    let mut first = run_once(spec)?;
    let second = run_once(&SimSpec { trace: false, ..spec.clone() })?;
    if second.trace_hash != first.trace_hash {
        first.violations.push(Violation {
            at_ms: first.sim_ms,
            property: Property::Determinism,
            detail: format!("trace hash {:016x}, then {:016x}", first.trace_hash, second.trace_hash),
        });
    }
    Ok(first)
}

#[derive(Debug, Default)]
struct Liveness {
    converged: Option<u64>,
    opened: Option<u64>,
    closed: Option<u64>,
}

struct Run {
    fleet: Fleet,
    plan: Plan,
    /// Which episodes are in force.
    active: Vec<bool>,
    /// The link faults last set on each node.
    links: Vec<LinkFaults>,
    /// The current half-open decision, since when it is current (as seen after a step),
    /// and whether it was reported overdue.
    half_open_since: Option<(breaker_actors::machine::DecisionId, u64, bool)>,
    /// Draws what foreign publishers send (apart from the fleet's own randomness).
    foreign_rng: SeededRng,
}

impl Run {
    /// Each active foreign publisher sends a report with probability `FLUSH_MS / every_ms`
    /// per step: failures or successes, claiming an applied decision far in the future, of
    /// a later term, later in the current term, none at all, or the current one.
    fn publish_foreign(&mut self) {
        for k in 0..self.plan.episodes.len() {
            let Fault::Foreign { publisher, every_ms } = self.plan.episodes[k].fault else {
                continue;
            };
            if !self.active[k] || self.foreign_rng.below(every_ms.max(1)) >= FLUSH_MS {
                continue;
            }
            let Ok(node) = NodeId::new(&format!("py-{publisher}")) else {
                continue;
            };
            let current = self.fleet.current_decision().map_or(DecisionId::NONE, |d| d.id);
            let rng = &mut self.foreign_rng;
            let applied = match rng.below(5) {
                0 => DecisionId::new(u64::MAX, rng.below(2)),
                1 => DecisionId::new(current.term.0.saturating_add(1 + rng.below(500)), rng.below(10)),
                2 => DecisionId::new(current.term.0, current.seq.saturating_add(1 + rng.below(1_000))),
                3 => DecisionId::NONE,
                _ => current,
            };
            let calls = 1 + rng.below(5);
            let counts = if rng.below(2) == 0 {
                OutcomeCounts { failure: calls, ..OutcomeCounts::default() }
            } else {
                OutcomeCounts { success: calls, ..OutcomeCounts::default() }
            };
            let streak = counts.failure;
            self.fleet.publish_foreign(&node, applied, counts, streak);
        }
    }

    /// Starts and ends episodes due now; the kinds of those started.
    fn apply_plan(&mut self) -> Result<Vec<FaultKind>, SimError> {
        let now = self.fleet.now();
        let mut started = Vec::new();
        for k in 0..self.plan.episodes.len() {
            let episode = self.plan.episodes[k].clone();
            let live = episode.from_ms <= now && now < episode.until_ms;
            if live && !self.active[k] {
                started.push(episode.fault.kind());
                self.begin(&episode)?;
            } else if !live && self.active[k] {
                self.end(&episode)?;
            }
            self.active[k] = live;
        }
        self.update_links()?;
        Ok(started)
    }

    fn begin(&mut self, episode: &Episode) -> Result<(), SimError> {
        match &episode.fault {
            Fault::ClockSkew { node, offset_ms, drift_ppm } => self.fleet.set_clock(*node, *offset_ms, *drift_ppm)?,
            Fault::ClockJump { node, jump_ms } => self.fleet.jump_clock(*node, *jump_ms)?,
            Fault::Crash { node } => self.fleet.kill(*node)?,
            Fault::Pause { target } => {
                let node = match target {
                    PauseTarget::Decider => self.fleet.decider().unwrap_or(0),
                    PauseTarget::Node(i) => *i,
                };
                if self.fleet.is_up(node) {
                    self.fleet.pause(node, episode.until_ms)?;
                }
            }
            Fault::Command { kind, for_ms } => self.fleet.command_for(*kind, *for_ms),
            Fault::LeaseWipe => self.fleet.wipe_lease_store(),
            Fault::Rollback { entries } => self.fleet.roll_back_store(*entries),
            Fault::Retune => {
                let current = self.fleet.breaker_config();
                let next = BreakerConfig {
                    version: current.version + 1,
                    seed: current.seed.wrapping_add(1),
                    ..current.clone()
                };
                self.fleet.retune(&next)?;
            }
            Fault::FeedStall { back_ms, for_ms } => {
                let from = self.fleet.now().saturating_sub(*back_ms);
                self.fleet.stall_feed(from, *for_ms);
            }
            Fault::Foreign { .. }
            | Fault::Delay { .. }
            | Fault::Reorder { .. }
            | Fault::Duplicate { .. }
            | Fault::Drop { .. }
            | Fault::Partition { .. } => {}
        }
        Ok(())
    }

    fn end(&mut self, episode: &Episode) -> Result<(), SimError> {
        match &episode.fault {
            Fault::Crash { node } => {
                let still_down = self.plan.episodes.iter().zip(&self.active).any(|(e, active)| {
                    *active && e != episode && matches!(e.fault, Fault::Crash { node: n } if n == *node)
                });
                if !still_down {
                    self.fleet.restart(*node)?;
                }
            }
            Fault::Command { .. } => self.fleet.command(CommandKind::Reset),
            _ => {}
        }
        Ok(())
    }

    /// The link faults in force on each node: the union of the active episodes'.
    fn update_links(&mut self) -> Result<(), SimError> {
        let now = self.fleet.now();
        let mut links = vec![LinkFaults::default(); self.links.len()];
        for (episode, _) in self.plan.episodes.iter().zip(&self.active).filter(|(_, a)| **a) {
            let mut affect = |node: usize, f: &dyn Fn(&mut LinkFaults)| {
                if let Some(link) = links.get_mut(node) {
                    f(link);
                }
            };
            match &episode.fault {
                Fault::Delay { node, max_delay_ms } => {
                    affect(*node, &|l| l.max_delay_ms = l.max_delay_ms.max(*max_delay_ms));
                }
                Fault::Reorder { max_delay_ms } => {
                    for node in 0..self.links.len() {
                        affect(node, &|l| l.max_delay_ms = l.max_delay_ms.max(*max_delay_ms));
                    }
                }
                Fault::Duplicate { node, per_mille } => {
                    affect(*node, &|l| l.duplicate_per_mille = l.duplicate_per_mille.max(*per_mille));
                }
                Fault::Drop { node, per_mille } => {
                    affect(*node, &|l| l.drop_per_mille = l.drop_per_mille.max(*per_mille));
                }
                Fault::Partition { nodes, shape } => {
                    let (cut_out, cut_in) = match shape {
                        PartitionShape::TwoWay => (true, true),
                        PartitionShape::OutboundOnly => (true, false),
                        PartitionShape::InboundOnly => (false, true),
                        PartitionShape::Flapping { period_ms } => {
                            let on = ((now - episode.from_ms) / (*period_ms).max(1)) % 2 == 0;
                            (on, on)
                        }
                    };
                    for node in nodes {
                        affect(*node, &|l| {
                            l.cut_out |= cut_out;
                            l.cut_in |= cut_in;
                        });
                    }
                }
                _ => {}
            }
        }
        for (i, link) in links.into_iter().enumerate() {
            if self.links[i] != link {
                self.fleet.set_link(i, link)?;
                self.links[i] = link;
            }
        }
        Ok(())
    }

    /// Ends every fault: links mended, pauses over, crashed nodes restarted, a manual
    /// state reset, the dependency healthy.
    fn heal(&mut self) -> Result<(), SimError> {
        let now = self.fleet.now();
        for k in 0..self.plan.episodes.len() {
            if self.active[k] {
                let episode = self.plan.episodes[k].clone();
                self.active[k] = false;
                self.end(&episode)?;
            }
        }
        self.update_links()?;
        for i in 0..self.fleet.len() {
            if self.fleet.is_paused(i) {
                self.fleet.pause(i, now)?;
            }
            if !self.fleet.is_up(i) {
                self.fleet.restart(i)?;
            }
        }
        if self.plan.episodes.iter().any(|e| e.fault.kind() == FaultKind::Command) {
            self.fleet.command(CommandKind::Reset);
        }
        self.fleet.set_dependency(now, 0)?;
        Ok(())
    }

    /// Steps until `done` holds, at most `within_ms`, checking that no half-open decision
    /// outstays its max wait; how long it took.
    fn step_until(&mut self, within_ms: u64, done: impl Fn(&Fleet) -> bool) -> Option<u64> {
        let start = self.fleet.now();
        while self.fleet.now() < start + within_ms {
            self.fleet.step();
            self.check_half_open();
            if done(&self.fleet) {
                return Some(self.fleet.now() - start);
            }
        }
        None
    }

    fn violate(&mut self, property: Property, detail: String) {
        let now = self.fleet.now();
        self.fleet.monitor_mut().violate(now, property, detail);
    }

    fn check_half_open(&mut self) {
        let now = self.fleet.now();
        let current = self.fleet.current_decision().and_then(|d| match d.state {
            FleetState::HalfOpen { .. } => Some(d.id),
            _ => None,
        });
        let Some(id) = current else {
            self.half_open_since = None;
            return;
        };
        let (since, reported) = match self.half_open_since {
            Some((current, since, reported)) if current == id => (since, reported),
            _ => (now, false),
        };
        let over = now - since > MAX_WAIT_MS + HALF_OPEN_SLACK_MS;
        if over && !reported {
            let detail =
                format!("half-open decision {id} current for more than {} ms", MAX_WAIT_MS + HALF_OPEN_SLACK_MS);
            self.violate(Property::HalfOpenBounded, detail);
        }
        self.half_open_since = Some((id, since, reported || over));
    }

    fn check_liveness(&mut self) -> Result<Liveness, SimError> {
        let mut liveness =
            Liveness { converged: self.step_until(CONVERGE_WITHIN_MS, converged), ..Liveness::default() };
        let Some(_) = liveness.converged else {
            let detail = format!(
                "not every node applied the store's current decision (made under the fleet's config version, which \
                 every node runs) within {CONVERGE_WITHIN_MS} ms of the heal"
            );
            self.violate(Property::Convergence, detail);
            return Ok(liveness);
        };
        self.fleet.set_dependency(self.fleet.now(), 1000)?;
        liveness.opened = self.step_until(OPEN_WITHIN_MS, |f| every_node_admits(f, |a| a == Admission::Reject));
        if liveness.opened.is_none() {
            let detail = format!("a dependency failing every call did not open every node within {OPEN_WITHIN_MS} ms");
            self.violate(Property::OpensWhenFailing, detail);
            return Ok(liveness);
        }
        self.fleet.set_dependency(self.fleet.now(), 0)?;
        liveness.closed = self.step_until(CLOSE_WITHIN_MS, |f| {
            f.current_decision().is_some_and(|d| d.state == FleetState::Closed) && converged(f)
        });
        if liveness.closed.is_none() {
            let detail = format!("a recovered dependency did not close every node within {CLOSE_WITHIN_MS} ms");
            self.violate(Property::ClosesWhenRecovered, detail);
        }
        Ok(liveness)
    }
}

/// Every node is up and applied the store's current decision, which is automatic, and a
/// decider holds the lease.
fn converged(fleet: &Fleet) -> bool {
    let Some(current) = fleet.current_decision() else {
        return false;
    };
    // After a retune, converged also means every node runs the fleet's config version and
    // the current decision was made under it.
    let version = fleet.breaker_config().version;
    fleet.decider().is_some()
        && !current.state.is_manual()
        && current.config_version == version
        && (0..fleet.len())
            .all(|i| fleet.machine(i).is_some_and(|m| m.applied_id() == current.id && m.config().version == version))
}

fn every_node_admits(fleet: &Fleet, ok: impl Fn(Admission) -> bool) -> bool {
    (0..fleet.len()).all(|i| fleet.snapshot(i).is_some_and(|s| ok(s.admission)))
}

/// The outcome of many seeds.
#[derive(Debug, Clone, Default)]
pub struct SimSummary {
    /// Seeds run (each twice).
    pub seeds: u64,
    /// Simulated time over all seeds (one run each).
    pub sim_ms: u64,
    /// Episodes injected, by kind.
    pub episodes: BTreeMap<FaultKind, u64>,
    /// Packet-level faults over all seeds.
    pub packets: FleetStats,
    /// Decisions written over all seeds.
    pub decisions: u64,
    /// The longest time to converge, open and close after the heal.
    pub worst_converge_ms: u64,
    /// See `worst_converge_ms`.
    pub worst_open_ms: u64,
    /// See `worst_converge_ms`.
    pub worst_close_ms: u64,
    /// Each failing seed's spec and violations.
    pub failures: Vec<(SimSpec, Vec<Violation>)>,
}

impl SimSummary {
    /// Adds one seed's report.
    pub fn add(&mut self, report: &SeedReport) {
        self.seeds += 1;
        self.sim_ms += report.sim_ms;
        for (kind, n) in &report.episodes {
            *self.episodes.entry(*kind).or_insert(0) += n;
        }
        let s = &report.stats;
        let p = &mut self.packets;
        p.packets_cut += s.packets_cut;
        p.packets_dropped += s.packets_dropped;
        p.packets_duplicated += s.packets_duplicated;
        p.packets_delayed += s.packets_delayed;
        p.packets_held += s.packets_held;
        p.write_timeouts += s.write_timeouts;
        p.cas_conflicts += s.cas_conflicts;
        p.leases_acquired += s.leases_acquired;
        p.commands_delivered += s.commands_delivered;
        p.pump_overflows += s.pump_overflows;
        p.probes_returned += s.probes_returned;
        self.decisions += report.decisions as u64;
        self.worst_converge_ms = self.worst_converge_ms.max(report.converged_after_ms.unwrap_or(0));
        self.worst_open_ms = self.worst_open_ms.max(report.opened_after_ms.unwrap_or(0));
        self.worst_close_ms = self.worst_close_ms.max(report.closed_after_ms.unwrap_or(0));
        if !report.violations.is_empty() {
            self.failures.push((report.spec.clone(), report.violations.clone()));
        }
    }
}

impl fmt::Display for SimSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seeds run:        {} (each twice: trace hashes compared)", self.seeds)?;
        writeln!(f, "simulated time:   {}.{:03} s", self.sim_ms / 1000, self.sim_ms % 1000)?;
        writeln!(f, "decisions:        {}", self.decisions)?;
        let episodes: Vec<String> =
            FaultKind::ALL.iter().map(|k| format!("{k} {}", self.episodes.get(k).copied().unwrap_or(0))).collect();
        writeln!(f, "fault episodes:   {}", episodes.join(", "))?;
        let p = &self.packets;
        writeln!(
            f,
            "packet faults:    cut {}, dropped {}, duplicated {}, delayed {}, held by pauses {}, write timeouts {}",
            p.packets_cut, p.packets_dropped, p.packets_duplicated, p.packets_delayed, p.packets_held, p.write_timeouts
        )?;
        writeln!(
            f,
            "server:           leases acquired {}, CAS conflicts {}, commands {}, pump overflows {}",
            p.leases_acquired, p.cas_conflicts, p.commands_delivered, p.pump_overflows
        )?;
        writeln!(
            f,
            "after the heal:   converged within {} ms, opened within {} ms, closed within {} ms (worst seed)",
            self.worst_converge_ms, self.worst_open_ms, self.worst_close_ms
        )?;
        writeln!(f, "violations:       {}", self.failures.iter().map(|(_, v)| v.len()).sum::<usize>())?;
        for (spec, violations) in &self.failures {
            writeln!(f, "  seed {}:", spec.seed)?;
            for v in violations {
                writeln!(f, "    {v}")?;
            }
            writeln!(f, "    replay: {}", spec.replay_command())?;
        }
        Ok(())
    }
}
