//! The exhaustive model: every interleaving of the real [`Machine::step`] on two or three
//! nodes, one lease and a small bounded world, explored breadth-first with the safety
//! properties checked on every transition and the "sometimes" properties on every state.
//!
//! # What the model is
//!
//! A state holds each node's real [`Machine`] (or nothing while it is down) with the
//! things its process keeps beside it (incarnation, the state-bucket revision its
//! transport last observed, the lease term its transport renews, its hot path's probe
//! count and failure streak), the state bucket (revision and value), the lease store
//! (holder, incarnation, term, and a revision counter that makes every term new), and an
//! unordered multiset of messages in flight. Every [`Effect`] is carried out exactly as
//! [`crate::fleet`] carries it out, and every [`Input`] arises as it does there:
//!
//! - `PublishReport` puts a report on the outcome stream; it reaches the machine of the
//!   lease holder *at delivery time* as [`Input::Report`] (the stream's consumer follows
//!   the lease). While no live node's transport holds the store's lease the report waits.
//! - `WriteDecision` sends a CAS write on the revision the writer's transport last
//!   observed. The server judges it whether or not the writer is still alive: a match
//!   stores it and answers [`Input::DecisionWritten`] to the writer and
//!   [`Input::DecisionObserved`] to every live incarnation (the watch); a mismatch answers
//!   [`Input::DecisionRejected`] with the current value. Each answer carries the revision,
//!   which the receiving transport remembers (the highest seen) for its next CAS.
//! - `StepDown` ends the transport's renewals and its outcome consumer; `Resync` reads
//!   the bucket; `RunHealthCheck` answers healthy; `WakeAt` is not needed (see time).
//! - Operator commands wait on the control stream and reach the lease holder like reports.
//!
//! # Actions
//!
//! In a fixed order, so that exploration is deterministic: deliver any message in flight
//! (optionally keeping a copy: duplication), drop one (loss, or a stream's `max_age`),
//! a node runs and drains one batch of `calls_per_batch` calls that all fail or all
//! succeed (admitted through its snapshot exactly like the fleet's hot path; calls and
//! drain are one action, so stale generations are left to the proptest suites), time
//! advances by one quantum, the lowest live node without a lease acquires the free lease,
//! the lease expires under a live holder (a pause or a cut from the lease store: the
//! zombie decider case that CAS fencing must survive), a node crashes, a crashed node
//! restarts (a new incarnation that bootstraps from the bucket before anything else), and
//! an operator issues the next scripted command.
//!
//! # Time
//!
//! One global clock (nodes' clocks are not skewed here: the deterministic simulator does
//! that), advanced by [`QUANTUM_MS`] at a time, at most `time_steps` times. An advance is
//! one lease period: the store drops a lease its holder no longer renews (crashed or
//! stepped down), every transport holding a lease renews it or learns it is lost, and
//! every live machine is ticked, so every machine's `now` is the global clock. The lease
//! TTL is one quantum, so a decider that misses one renewal stops deciding by its own
//! clock; the open period is one quantum, so open -> half-open takes one advance.
//!
//! # Bounds, and why they are enough
//!
//! Batches per node, time advances, crashes, lease expiries under a live holder,
//! duplications, drops and commands are each budgeted, so the space is finite; the
//! messages in flight are capped (a state over the cap is counted and not expanded).
//! With a one-call window, a probe budget of 1 and a success threshold of 1, three
//! batches in all reach trip -> open -> (demand) -> half-open -> probe -> closed; one
//! advance of time passes the open period; one crash gives a takeover with the dead
//! decider's writes still in flight. The presets cap the messages in flight at 3 (a write
//! fans out to a reply and one watch update per node, so the cap bites harder on three
//! nodes); duplications, drops, lease expiries under a live holder and commands are
//! available but off in the presets, which must run in the test profile.
//!
//! # Dedup
//!
//! A state's fingerprint is 128 bits (`SipHash` and a multiply-rotate hash over the same bytes) of
//! everything that decides its future, including the property monitors' memory; a
//! machine contributes [`Machine::hash_behaviour`], which leaves out its statistics.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant};

use crate::admission::Admitter;
use crate::properties::{Property, PropertyKind};

use breaker_actors::machine::{
    Admission, Arrival, BreakerConfig, BreakerName, Command, CommandKind, ConfigError, Decision, DecisionId, Effect,
    Event, FleetState, HalfOpenPolicy, Input, LocalOutcomes, Machine, Millis, NameError, NodeId, NodeParams,
    OpenPolicy, OutcomeCounts, Reason, Report, Snapshot, StateLabel, StepDownReason, Term, TripPolicy, ValidConfig,
    WIRE_VERSION, WindowConfig,
};

/// One advance of the model's clock, in ms: one lease TTL, one open period.
pub const QUANTUM_MS: u64 = 1_000;
/// The lease's time-to-live.
pub const LEASE_TTL_MS: u64 = QUANTUM_MS;
/// Each node's lease margin (see [`NodeParams::lease_margin_ms`]).
pub const LEASE_MARGIN_MS: u64 = QUANTUM_MS / 4;
/// The most nodes a model may have (fingerprints and actions index nodes by `u8`).
pub const MAX_MODEL_NODES: usize = 4;

const BREAKER: &str = "model";

pub use crate::fleet::PlantedBug;

/// What to explore.
#[derive(Debug, Clone, PartialEq)]
pub struct ExploreSpec {
    /// Number of nodes, named `n1..nN`.
    pub nodes: usize,
    /// The breaker's configuration, shared by every node.
    pub config: BreakerConfig,
    /// Batches of calls the nodes run in total.
    pub batches: u32,
    /// Of those, batches whose calls all end in an excluded error (neutral: a probe gives
    /// its slot back, as `Permit::ignore` does). 0 in the presets.
    pub ignored_batches: u32,
    /// Calls in one batch.
    pub calls_per_batch: u32,
    /// Advances of the clock by [`QUANTUM_MS`].
    pub time_steps: u32,
    /// Node crashes in total.
    pub crashes: u32,
    /// Lease expiries while the holder is alive and renewing.
    pub lease_expiries: u32,
    /// Messages delivered while keeping a copy in flight.
    pub duplications: u32,
    /// Messages dropped.
    pub drops: u32,
    /// Operator commands, issued in this order, each at most once.
    pub commands: Vec<CommandKind>,
    /// A state with more messages in flight is counted and not expanded.
    pub max_in_flight: usize,
    /// Exploration stops, incomplete, after this many unique states.
    pub max_states: usize,
    /// A bug to plant in the model's world.
    pub planted_bug: Option<PlantedBug>,
}

impl ExploreSpec {
    /// The breaker configuration the presets use: a one-call window that trips on one
    /// failure, an open period of one quantum, one probe per round that closes on success,
    /// no overlay, no health checks, no half-open timeout within the horizon.
    pub fn model_config() -> BreakerConfig {
        BreakerConfig {
            trip: TripPolicy {
                window: WindowConfig::Count { calls: 1 },
                minimum_calls: 1,
                failure_rate: Some(0.5),
                ..TripPolicy::default()
            },
            max_nodes: 8,
            open: OpenPolicy::Fixed { duration_ms: QUANTUM_MS },
            half_open: HalfOpenPolicy {
                probe_budget: 1,
                success_threshold: 1,
                max_wait_ms: 100 * QUANTUM_MS,
                ramp: None,
            },
            health_check: None,
            local: None,
            ..BreakerConfig::default()
        }
    }

    /// The two-node model the test suite runs exhaustively.
    pub fn two_nodes() -> Self {
        Self {
            nodes: 2,
            config: Self::model_config(),
            batches: 3,
            ignored_batches: 0,
            calls_per_batch: 1,
            time_steps: 1,
            crashes: 1,
            lease_expiries: 0,
            duplications: 0,
            drops: 0,
            commands: Vec::new(),
            max_in_flight: 3,
            max_states: 20_000_000,
            planted_bug: None,
        }
    }

    /// The three-node model (larger: run it in release).
    pub fn three_nodes() -> Self {
        Self { nodes: 3, max_states: 3_000_000, ..Self::two_nodes() }
    }

    /// Two nodes over an unreliable network: one message may be delivered twice and one
    /// lost, besides a crash; one batch of calls (a trip) to keep the space small.
    pub fn faulty_network() -> Self {
        Self { batches: 1, duplications: 1, drops: 1, ..Self::two_nodes() }
    }

    /// Two nodes where the lease may expire under a live decider that keeps running (a
    /// paused or cut-off old leader), over a network that may duplicate and lose a message.
    pub fn zombie_decider() -> Self {
        Self { batches: 1, crashes: 0, lease_expiries: 1, duplications: 1, drops: 1, ..Self::two_nodes() }
    }

    /// One node whose calls may also end in excluded errors: four batches, one of them
    /// ignored, so a half-open round's one probe can end ignored and its slot must be used
    /// again in the same round (one node and no crash, to keep the space small enough for
    /// the test profile).
    pub fn ignored_probes() -> Self {
        Self { nodes: 1, batches: 4, ignored_batches: 1, crashes: 0, ..Self::two_nodes() }
    }
}

/// A spec the explorer cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExploreError {
    /// A field of [`ExploreSpec`] is out of range.
    Spec {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The breaker config is not valid.
    Config(ConfigError),
    /// A name is not valid.
    Name(NameError),
}

impl fmt::Display for ExploreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spec { field, problem } => write!(f, "invalid explore spec: {field}: {problem}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::Name(e) => write!(f, "invalid name: {e}"),
        }
    }
}

impl std::error::Error for ExploreError {}

/// The properties the exploration judges, in the order it reports them.
const CHECKED: [Property; 12] = [
    Property::OneDecisionPerId,
    Property::MonotonicApply,
    Property::FencedStore,
    Property::ProbeBudget,
    Property::AttributedOutcomes,
    Property::ForcedStates,
    Property::NoRollback,
    Property::CanOpen,
    Property::CanCloseAfterOpen,
    Property::CanTakeOver,
    Property::CanForceOpen,
    Property::CanReuseIgnoredProbe,
];

/// What the exploration concluded about one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A safety property held on every transition of the whole space.
    Holds,
    /// A safety property held on every transition explored, but the space was not
    /// exhausted.
    NotViolatedSoFar,
    /// A safety property was violated: the shortest path found, and what went wrong.
    Violated {
        /// The actions from the initial state, one line each.
        trace: Vec<String>,
        /// What the check saw.
        detail: String,
    },
    /// A reachability property was reached: the shortest path found.
    Found {
        /// The actions from the initial state, one line each.
        trace: Vec<String>,
    },
    /// A reachability property was never reached.
    NotFound,
}

impl Verdict {
    /// Whether this verdict is a success (holds, or found).
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Holds | Self::Found { .. })
    }

    fn short(&self) -> String {
        match self {
            Self::Holds => "holds".into(),
            Self::NotViolatedSoFar => "not violated (search incomplete)".into(),
            Self::Violated { trace, .. } => format!("VIOLATED (trace of {} actions)", trace.len()),
            Self::Found { trace } => format!("found (in {} actions)", trace.len()),
            Self::NotFound => "NOT FOUND".into(),
        }
    }
}

/// One property's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyReport {
    /// Which.
    pub property: Property,
    /// What was concluded.
    pub verdict: Verdict,
}

/// What one exploration did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreReport {
    /// Nodes in the model.
    pub nodes: usize,
    /// Unique states reached (the initial one included).
    pub states: usize,
    /// Transitions taken (actions applied, duplicates of known states included).
    pub transitions: u64,
    /// The longest shortest path to a state, in actions.
    pub max_depth: u32,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether every reachable state was explored (`false`: `max_states` stopped it).
    pub complete: bool,
    /// States not expanded because they held more than `max_in_flight` messages.
    pub over_in_flight: u64,
    /// Each property's verdict, in [`Property`] order.
    pub properties: Vec<PropertyReport>,
}

impl ExploreReport {
    /// The verdict on `property` (`None` if it was not checked in this model).
    pub fn verdict(&self, property: Property) -> Option<&Verdict> {
        self.properties.iter().find(|p| p.property == property).map(|p| &p.verdict)
    }

    /// Whether every property is a success and the space was exhausted.
    pub fn all_pass(&self) -> bool {
        self.complete && self.properties.iter().all(|p| p.verdict.is_success())
    }

    /// The safety properties violated.
    pub fn violations(&self) -> Vec<Property> {
        self.properties.iter().filter(|p| matches!(p.verdict, Verdict::Violated { .. })).map(|p| p.property).collect()
    }
}

impl fmt::Display for ExploreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "explored {} nodes: {} states, {} transitions, max depth {}, {:.2} s{}",
            self.nodes,
            self.states,
            self.transitions,
            self.max_depth,
            self.elapsed.as_secs_f64(),
            if self.complete { "" } else { " (INCOMPLETE: max_states reached)" },
        )?;
        if self.over_in_flight > 0 {
            writeln!(f, "{} states not expanded: over max_in_flight", self.over_in_flight)?;
        }
        writeln!(f, "{:<42} {:<10} verdict", "property", "kind")?;
        for p in &self.properties {
            writeln!(f, "{:<42} {:<10} {}", p.property.name(), p.property.kind().name(), p.verdict.short())?;
        }
        for p in &self.properties {
            if let Verdict::Violated { trace, detail } = &p.verdict {
                writeln!(f, "\ncounterexample to \"{}\": {detail}", p.property.name())?;
                for (i, line) in trace.iter().enumerate() {
                    writeln!(f, "  {:>3}. {line}", i + 1)?;
                }
            }
        }
        Ok(())
    }
}

// ----- hashing ------------------------------------------------------------------------

/// Collects the bytes of a fingerprint, then hashes them twice: `SipHash` (the standard
/// library's, fixed keys) and a word-at-a-time multiply-rotate hash. Two unrelated 64-bit
/// hashes make a 128-bit fingerprint; hashing the buffer at the end is much cheaper than
/// hashing each of the many small writes that `Debug` output arrives in.
struct WideHasher {
    bytes: Vec<u8>,
}

impl WideHasher {
    fn new() -> Self {
        Self { bytes: Vec::with_capacity(4096) }
    }

    fn finish_wide(&self) -> u128 {
        let mut sip = DefaultHasher::new();
        sip.write(&self.bytes);
        let mut words: u64 = 0x243f_6a88_85a3_08d3;
        let mut chunks = self.bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            words = (words ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        for b in chunks.remainder() {
            words = (words ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        words ^= self.bytes.len() as u64;
        words = (words ^ (words >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (u128::from(words ^ (words >> 29)) << 64) | u128::from(sip.finish())
    }
}

impl Hasher for WideHasher {
    #[allow(clippy::cast_possible_truncation)] // Folding 128 bits into 64 truncates on purpose.
    fn finish(&self) -> u64 {
        // Only the wide form is used; this keeps `Hasher` honest.
        let wide = self.finish_wide();
        (wide >> 64) as u64 ^ wide as u64
    }

    fn write(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

impl fmt::Write for WideHasher {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn debug_fingerprint(value: &impl fmt::Debug) -> u128 {
    let mut h = WideHasher::new();
    // Writing into a hasher cannot fail.
    let _ = fmt::Write::write_fmt(&mut h, format_args!("{value:?}"));
    h.finish_wide()
}

fn machine_fingerprint(machine: &Machine) -> u128 {
    let mut h = WideHasher::new();
    machine.hash_behaviour(&mut h);
    h.finish_wide()
}

// ----- the model's state ----------------------------------------------------------------

/// A message between a simulated process and the simulated server.
#[derive(Debug, Clone)]
enum Packet {
    /// A report on the outcome stream, with the phase of the decision its node had applied
    /// when the calls were admitted (ghost data for [`Property::AttributedOutcomes`]).
    Publish { report: Report, admitted_phase: DecisionId },
    /// An operator command on the control stream.
    Control { command: Command },
    /// A CAS write to the state bucket.
    Write { from: usize, incarnation: u64, expected: u64, decision: Decision },
    /// An input for one incarnation of a node, with the bucket revision it carries.
    Deliver { to: usize, incarnation: u64, input: Input, revision: Option<u64> },
}

#[derive(Debug, Clone)]
struct Flight {
    fingerprint: u128,
    packet: Packet,
}

/// The hot path's memory beside the machine's snapshot (which it mirrors).
#[derive(Debug, Clone)]
struct Hot {
    admitter: Admitter,
    /// The run of failures in progress, `(generation, run)`: like the real hot path's, a
    /// run belongs to one generation and never crosses a phase.
    streak: (u64, u64),
}

impl Hot {
    fn new(snapshot: Snapshot) -> Self {
        Self { admitter: Admitter::new(snapshot), streak: (0, 0) }
    }
}

#[derive(Debug, Clone)]
struct NodeState {
    machine: Option<Machine>,
    machine_fingerprint: u128,
    incarnation: u64,
    observed_rev: u64,
    /// The lease term this process's transport holds and renews (and consumes for).
    lease_term: Option<Term>,
    hot: Hot,
    /// The newest decision this node applied, over all its incarnations, and the
    /// incarnation that applied it (a restarted node re-applies the bucket's value).
    max_applied: DecisionId,
    max_applied_by: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreLease {
    holder: usize,
    incarnation: u64,
    term: Term,
}

#[derive(Debug, Clone)]
struct State {
    now: u64,
    time_steps: u32,
    nodes: Vec<NodeState>,
    bucket_rev: u64,
    bucket: Option<Decision>,
    lease: Option<StoreLease>,
    lease_rev: u64,
    batches: u32,
    /// Sorted by fingerprint: the multiset's canonical form.
    flight: Vec<Flight>,
    crashes: u32,
    expiries: u32,
    duplications: u32,
    drops: u32,
    commands: u32,
    ignored_batches: u32,
    // Monitors.
    /// Half-open phases in which a probe ended ignored.
    ignored_rounds: BTreeSet<DecisionId>,
    made: BTreeMap<DecisionId, u128>,
    max_landed_term: Term,
    landed_late: BTreeSet<DecisionId>,
    probes: BTreeMap<DecisionId, u32>,
}

/// One transition's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Deliver { index: u16, keep_copy: bool },
    Drop { index: u16 },
    Batch { node: u8, failing: bool },
    IgnoredBatch { node: u8 },
    AdvanceTime,
    ExpireLease,
    Crash { node: u8 },
    Restart { node: u8 },
    Command,
}

/// What one transition showed the monitors.
#[derive(Default)]
struct Observations {
    violations: Vec<(Property, String)>,
    reached: Vec<Property>,
}

impl Observations {
    fn violate(&mut self, property: Property, detail: String) {
        self.violations.push((property, detail));
    }
}

/// The immutable context of one exploration.
struct World {
    spec: ExploreSpec,
    breaker: BreakerName,
    config: ValidConfig,
    ids: Vec<NodeId>,
    budget: u32,
}

impl World {
    fn new(spec: &ExploreSpec) -> Result<Self, ExploreError> {
        let config = spec.config.validate().map_err(ExploreError::Config)?;
        let spec_error = |field, problem: &str| Err(ExploreError::Spec { field, problem: problem.into() });
        if spec.nodes == 0 || spec.nodes > MAX_MODEL_NODES {
            return spec_error("nodes", &format!("{} is not in 1..={MAX_MODEL_NODES}", spec.nodes));
        }
        if u64::try_from(spec.nodes).unwrap_or(u64::MAX) > u64::from(config.max_nodes) {
            return spec_error("nodes", "more than config.max_nodes");
        }
        if spec.calls_per_batch == 0 || spec.calls_per_batch > 16 {
            return spec_error("calls_per_batch", "must be in 1..=16");
        }
        if spec.max_in_flight == 0 || spec.max_in_flight > usize::from(u16::MAX) {
            return spec_error("max_in_flight", "must be in 1..=65535");
        }
        if spec.max_states == 0 || spec.max_states > u32::MAX as usize {
            return spec_error("max_states", "must be in 1..=u32::MAX");
        }
        if spec.commands.len() > 8 {
            return spec_error("commands", "at most 8");
        }
        let breaker = BreakerName::new(BREAKER).map_err(ExploreError::Name)?;
        let ids = (1..=spec.nodes)
            .map(|i| NodeId::new(&format!("n{i}")).map_err(ExploreError::Name))
            .collect::<Result<Vec<_>, _>>()?;
        let budget = config.fleet.probing.budget;
        Ok(Self { spec: spec.clone(), breaker, config, ids, budget })
    }

    fn fresh_machine(&self, i: usize, incarnation: u64) -> Machine {
        let params = NodeParams {
            breaker: self.breaker.clone(),
            node: self.ids[i].clone(),
            incarnation,
            lease_margin_ms: LEASE_MARGIN_MS,
        };
        Machine::with_valid(params, self.config.clone())
    }

    fn initial(&self) -> State {
        let nodes = (0..self.spec.nodes)
            .map(|i| {
                let machine = self.fresh_machine(i, 1);
                NodeState {
                    hot: Hot::new(machine.snapshot()),
                    machine_fingerprint: 0,
                    machine: Some(machine),
                    incarnation: 1,
                    observed_rev: 0,
                    lease_term: None,
                    max_applied: DecisionId::NONE,
                    max_applied_by: 1,
                }
            })
            .collect();
        let mut state = State {
            now: 0,
            time_steps: 0,
            nodes,
            bucket_rev: 0,
            bucket: None,
            lease: None,
            lease_rev: 0,
            batches: 0,
            flight: Vec::new(),
            crashes: 0,
            expiries: 0,
            duplications: 0,
            drops: 0,
            commands: 0,
            ignored_batches: 0,
            ignored_rounds: BTreeSet::new(),
            made: BTreeMap::new(),
            max_landed_term: Term(0),
            landed_late: BTreeSet::new(),
            probes: BTreeMap::new(),
        };
        let mut ignored = Observations::default();
        for i in 0..self.spec.nodes {
            self.feed(&mut state, i, Input::NoDecisionYet, &mut ignored);
        }
        self.acquire(&mut state, &mut ignored);
        state
    }

    // ----- actions ----------------------------------------------------------------------

    fn consumer(state: &State) -> Option<usize> {
        let lease = state.lease?;
        let node = &state.nodes[lease.holder];
        (node.machine.is_some() && node.incarnation == lease.incarnation && node.lease_term == Some(lease.term))
            .then_some(lease.holder)
    }

    fn actions(&self, state: &State) -> Vec<Action> {
        let spec = &self.spec;
        let mut out = Vec::new();
        let consumer = Self::consumer(state).is_some();
        for (index, flight) in state.flight.iter().enumerate() {
            if index > 0 && state.flight[index - 1].fingerprint == flight.fingerprint {
                continue;
            }
            let Ok(index) = u16::try_from(index) else {
                break;
            };
            let needs_consumer = matches!(flight.packet, Packet::Publish { .. } | Packet::Control { .. });
            if !needs_consumer || consumer {
                out.push(Action::Deliver { index, keep_copy: false });
                if state.duplications < spec.duplications {
                    out.push(Action::Deliver { index, keep_copy: true });
                }
            }
            if state.drops < spec.drops {
                out.push(Action::Drop { index });
            }
        }
        for (i, node) in state.nodes.iter().enumerate() {
            let Ok(node_index) = u8::try_from(i) else {
                break;
            };
            if node.machine.is_some() && state.batches < spec.batches {
                out.push(Action::Batch { node: node_index, failing: true });
                out.push(Action::Batch { node: node_index, failing: false });
                if state.ignored_batches < spec.ignored_batches {
                    out.push(Action::IgnoredBatch { node: node_index });
                }
            }
        }
        if state.time_steps < spec.time_steps {
            out.push(Action::AdvanceTime);
        }
        if state.lease.is_some() && state.expiries < spec.lease_expiries {
            out.push(Action::ExpireLease);
        }
        for (i, node) in state.nodes.iter().enumerate() {
            let Ok(node_index) = u8::try_from(i) else {
                break;
            };
            if node.machine.is_some() && state.crashes < spec.crashes {
                out.push(Action::Crash { node: node_index });
            }
            if node.machine.is_none() {
                out.push(Action::Restart { node: node_index });
            }
        }
        if (state.commands as usize) < spec.commands.len() {
            out.push(Action::Command);
        }
        out
    }

    fn lease_candidate(state: &State) -> Option<usize> {
        state.nodes.iter().position(|n| n.machine.is_some() && n.lease_term.is_none())
    }

    /// The state after `action`, with what the monitors saw on the way.
    fn apply(&self, state: &State, action: Action, obs: &mut Observations) -> State {
        let mut next = state.clone();
        match action {
            Action::Deliver { index, keep_copy } => {
                let index = usize::from(index);
                let flight = if keep_copy {
                    next.duplications += 1;
                    next.flight[index].clone()
                } else {
                    next.flight.remove(index)
                };
                self.deliver(&mut next, flight.packet, obs);
            }
            Action::Drop { index } => {
                next.drops += 1;
                next.flight.remove(usize::from(index));
            }
            Action::Batch { node, failing } => self.batch(&mut next, usize::from(node), failing, obs),
            Action::IgnoredBatch { node } => {
                next.ignored_batches += 1;
                self.ignored_batch(&mut next, usize::from(node), obs);
            }
            Action::AdvanceTime => self.advance_time(&mut next, obs),
            Action::ExpireLease => {
                next.expiries += 1;
                next.lease = None;
            }
            Action::Crash { node } => {
                next.crashes += 1;
                Self::crash(&mut next, usize::from(node));
            }
            Action::Restart { node } => self.restart(&mut next, usize::from(node), obs),
            Action::Command => {
                let kind = self.spec.commands.get(next.commands as usize).copied().unwrap_or(CommandKind::Reset);
                next.commands += 1;
                let command = Command {
                    version: WIRE_VERSION,
                    breaker: self.breaker.clone(),
                    kind,
                    actor: "operator".into(),
                    reason: "model".into(),
                    // Time-boxed commands are the simulator's (sim.rs): a box here would
                    // multiply the explored states by its timer for little gain.
                    duration_ms: None,
                };
                Self::send(&mut next, Packet::Control { command });
            }
        }
        // The lowest free live node acquires a free lease at once, as the fleet's lease
        // store does in the step it frees it.
        if next.lease.is_none() {
            self.acquire(&mut next, obs);
        }
        Self::purge_stale_watch(&mut next);
        Self::check_state(&next, obs);
        next
    }

    /// Removes watch updates that can no longer change anything: their node has applied
    /// this decision or a newer one and observed this revision or a newer one. Both only
    /// grow, and a machine stepped with such an update at the current time changes nothing
    /// but its statistics (it has already been ticked at this time), so delivering one is
    /// the same as dropping it; removing them at once spares the interleavings of no-ops.
    fn purge_stale_watch(state: &mut State) {
        let nodes = &state.nodes;
        state.flight.retain(|f| {
            let Packet::Deliver { to, incarnation, input: Input::DecisionObserved(d), revision } = &f.packet else {
                return true;
            };
            let node = &nodes[*to];
            let Some(machine) = &node.machine else {
                return true;
            };
            let superseded = node.incarnation == *incarnation
                && machine.applied_id() >= d.id
                && revision.is_none_or(|r| node.observed_rev >= r);
            !superseded
        });
    }

    fn batch(&self, state: &mut State, i: usize, failing: bool, obs: &mut Observations) {
        let calls = self.spec.calls_per_batch;
        state.batches += 1;
        let node = &mut state.nodes[i];
        let Some(machine) = &node.machine else {
            return;
        };
        let (applied_phase, half_open_phase) = batch_phases(machine);
        let snapshot = node.hot.admitter.snapshot;
        let mut counts = OutcomeCounts::default();
        // A run of an older generation is no part of this one's.
        let mut run = if node.hot.streak.0 == snapshot.generation { node.hot.streak.1 } else { 0 };
        let mut longest = run;
        let mut probes = 0;
        for _ in 0..calls {
            match node.hot.admitter.admit() {
                None => counts.rejected += 1,
                Some(probe) => {
                    if probe {
                        probes += 1;
                    }
                    if failing {
                        counts.failure += 1;
                        run += 1;
                        longest = longest.max(run);
                    } else {
                        counts.success += 1;
                        run = 0;
                    }
                }
            }
        }
        if snapshot.record {
            // A run of 0 belongs to no generation: one canonical form, one state.
            node.hot.streak = if run == 0 { (0, 0) } else { (snapshot.generation, run) };
        }
        if let (Some(phase), true) = (half_open_phase, probes > 0) {
            if state.ignored_rounds.contains(&phase) {
                // A slot an ignored probe gave back was used again in its round.
                obs.reached.push(Property::CanReuseIgnoredProbe);
            }
        }
        if let (Some(phase), true) = (half_open_phase, probes > 0) {
            let total = state.probes.entry(phase).or_default();
            *total += probes;
            if *total > self.budget {
                obs.violate(
                    Property::ProbeBudget,
                    format!("{total} probes admitted in the half-open phase {phase}, budget {}", self.budget),
                );
            }
        }
        if !snapshot.record || counts.is_empty() {
            return;
        }
        let input = Input::LocalOutcomes(LocalOutcomes {
            generation: snapshot.generation,
            counts,
            longest_failure_streak: longest,
        });
        self.feed_with(state, i, input, applied_phase, obs);
    }

    /// A batch whose admitted calls all end in an excluded error: counted as ignored, no
    /// part of any failure run (nor the end of one), and each probe gives its slot back at
    /// once, so it never counts against the budget (probes in flight plus probes that ended
    /// decisively).
    fn ignored_batch(&self, state: &mut State, i: usize, obs: &mut Observations) {
        state.batches += 1;
        let node = &mut state.nodes[i];
        let Some(machine) = &node.machine else {
            return;
        };
        let (applied_phase, half_open_phase) = batch_phases(machine);
        let snapshot = node.hot.admitter.snapshot;
        let mut counts = OutcomeCounts::default();
        let mut probes = 0;
        for _ in 0..self.spec.calls_per_batch {
            match node.hot.admitter.admit() {
                None => counts.rejected += 1,
                Some(probe) => {
                    counts.ignored += 1;
                    if probe {
                        probes += 1;
                        node.hot.admitter.give_back();
                    }
                }
            }
        }
        if let (Some(phase), true) = (half_open_phase, probes > 0) {
            state.ignored_rounds.insert(phase);
        }
        if !snapshot.record || counts.is_empty() {
            return;
        }
        let longest_failure_streak = if node.hot.streak.0 == snapshot.generation { node.hot.streak.1 } else { 0 };
        let input =
            Input::LocalOutcomes(LocalOutcomes { generation: snapshot.generation, counts, longest_failure_streak });
        self.feed_with(state, i, input, applied_phase, obs);
    }

    fn advance_time(&self, state: &mut State, obs: &mut Observations) {
        state.time_steps += 1;
        state.now += QUANTUM_MS;
        // A lease its holder no longer renews has run out its TTL by now.
        if let Some(lease) = state.lease {
            let node = &state.nodes[lease.holder];
            let renewing =
                node.machine.is_some() && node.incarnation == lease.incarnation && node.lease_term == Some(lease.term);
            if !renewing {
                state.lease = None;
            }
        }
        let now = Millis(state.now);
        for i in 0..state.nodes.len() {
            let Some(term) = state.nodes[i].lease_term else {
                continue;
            };
            let ours = state
                .lease
                .is_some_and(|l| l.holder == i && l.incarnation == state.nodes[i].incarnation && l.term == term);
            if ours {
                self.feed(state, i, Input::LeaseRenewed { term, sent_at: now, ttl_ms: LEASE_TTL_MS }, obs);
            } else {
                state.nodes[i].lease_term = None;
                self.feed(state, i, Input::LeaseLost { term }, obs);
            }
        }
        for i in 0..state.nodes.len() {
            self.feed(state, i, Input::Tick, obs);
        }
    }

    fn acquire(&self, state: &mut State, obs: &mut Observations) {
        let Some(i) = Self::lease_candidate(state) else {
            return;
        };
        state.lease_rev += 1;
        let term = Term(state.lease_rev);
        let incarnation = state.nodes[i].incarnation;
        state.lease = Some(StoreLease { holder: i, incarnation, term });
        state.nodes[i].lease_term = Some(term);
        let input = Input::LeaseGained { term, sent_at: Millis(state.now), ttl_ms: LEASE_TTL_MS };
        self.feed(state, i, input, obs);
    }

    fn crash(state: &mut State, i: usize) {
        let node = &mut state.nodes[i];
        node.machine = None;
        node.machine_fingerprint = 0;
        node.lease_term = None;
        // Replies and watch updates for a gone incarnation are dropped on delivery anyway.
        state.flight.retain(|f| !matches!(f.packet, Packet::Deliver { to, .. } if to == i));
    }

    fn restart(&self, state: &mut State, i: usize, obs: &mut Observations) {
        let incarnation = state.nodes[i].incarnation + 1;
        let machine = self.fresh_machine(i, incarnation);
        let node = &mut state.nodes[i];
        node.incarnation = incarnation;
        node.hot = Hot::new(machine.snapshot());
        node.machine = Some(machine);
        node.observed_rev = state.bucket_rev;
        node.lease_term = None;
        // A node knows the fleet state before it admits any call: a synchronous read.
        let input = match &state.bucket {
            Some(d) => Input::DecisionObserved(d.clone()),
            None => Input::NoDecisionYet,
        };
        self.feed(state, i, input, obs);
    }

    fn deliver(&self, state: &mut State, packet: Packet, obs: &mut Observations) {
        match packet {
            Packet::Publish { report, admitted_phase } => {
                let Some(holder) = Self::consumer(state) else {
                    return;
                };
                let Some(machine) = &state.nodes[holder].machine else {
                    return;
                };
                let counted_before = machine.stats().reports_counted;
                let phase = machine.decider_phase();
                let applied = report.applied;
                let from = report.node.clone();
                self.feed(state, holder, Input::Report { report, arrival: Arrival::LIVE }, obs);
                let counted_after = state.nodes[holder].machine.as_ref().map_or(0, |m| m.stats().reports_counted);
                if let (Some(phase), true) = (phase, counted_after > counted_before) {
                    if admitted_phase < phase {
                        obs.violate(
                            Property::AttributedOutcomes,
                            format!(
                                "report of {from} (applied {applied}, admitted under phase {admitted_phase}) counted \
                                 towards phase {phase}"
                            ),
                        );
                    }
                }
            }
            Packet::Control { command } => {
                if let Some(holder) = Self::consumer(state) {
                    self.feed(state, holder, Input::Command(command), obs);
                }
            }
            Packet::Write { from, incarnation, expected, decision } => {
                self.write(state, from, incarnation, expected, decision, obs);
            }
            Packet::Deliver { to, incarnation, input, revision } => {
                let node = &mut state.nodes[to];
                if node.machine.is_none() || node.incarnation != incarnation {
                    return;
                }
                if let Some(rev) = revision {
                    node.observed_rev = node.observed_rev.max(rev);
                }
                self.feed(state, to, input, obs);
            }
        }
    }

    fn write(
        &self,
        state: &mut State,
        from: usize,
        incarnation: u64,
        expected: u64,
        decision: Decision,
        obs: &mut Observations,
    ) {
        let fenced = self.spec.planted_bug != Some(PlantedBug::StoreWithoutCas);
        if fenced && expected != state.bucket_rev {
            let input = Input::DecisionRejected { id: decision.id, current: state.bucket.clone() };
            Self::send(state, Packet::Deliver { to: from, incarnation, input, revision: Some(state.bucket_rev) });
            return;
        }
        if let Some(current) = &state.bucket {
            let manual = current.state.is_manual();
            let by_command = matches!(decision.reason, Reason::Manual { .. });
            if manual && !by_command && decision.state != current.state {
                obs.violate(
                    Property::ForcedStates,
                    format!(
                        "decision {} ({}) replaced the manual {} ({}) without a command",
                        decision.id,
                        decision.state.label().as_str(),
                        current.id,
                        current.state.label().as_str()
                    ),
                );
            }
        }
        let rolled_back = match (&decision.reason, &state.bucket) {
            // Landing on itself (a retried write, or a decider restoring a bucket that went
            // back) changes nothing.
            (_, Some(current)) if *current == decision => None,
            (Reason::Initial, Some(current)) => Some(current.id),
            (Reason::TermStarted { previous }, Some(current)) if *previous != current.id => Some(current.id),
            (Reason::TermStarted { previous }, None) if *previous != DecisionId::NONE => Some(DecisionId::NONE),
            _ => None,
        };
        if let Some(current) = rolled_back {
            obs.violate(
                Property::NoRollback,
                format!("{} ({:?}) replaced {current}, which it had not read", decision.id, decision.reason),
            );
        }
        if decision.id.term < state.max_landed_term {
            state.landed_late.insert(decision.id);
        }
        state.max_landed_term = state.max_landed_term.max(decision.id.term);
        if matches!(decision.reason, Reason::TermStarted { previous } if previous != DecisionId::NONE) {
            obs.reached.push(Property::CanTakeOver);
        }
        state.bucket_rev += 1;
        let rev = state.bucket_rev;
        let input = Input::DecisionWritten { id: decision.id };
        Self::send(state, Packet::Deliver { to: from, incarnation, input, revision: Some(rev) });
        for to in 0..state.nodes.len() {
            if state.nodes[to].machine.is_some() {
                let incarnation = state.nodes[to].incarnation;
                let input = Input::DecisionObserved(decision.clone());
                Self::send(state, Packet::Deliver { to, incarnation, input, revision: Some(rev) });
            }
        }
        state.bucket = Some(decision);
    }

    fn send(state: &mut State, packet: Packet) {
        let fingerprint = debug_fingerprint(&packet);
        let at = state.flight.partition_point(|f| f.fingerprint < fingerprint);
        state.flight.insert(at, Flight { fingerprint, packet });
    }

    // ----- machines and their effects ---------------------------------------------------

    fn feed(&self, state: &mut State, i: usize, input: Input, obs: &mut Observations) {
        let phase = state.nodes[i].machine.as_ref().and_then(Machine::applied).map_or(DecisionId::NONE, |d| d.phase);
        self.feed_with(state, i, input, phase, obs);
    }

    fn feed_with(&self, state: &mut State, i: usize, input: Input, admitted_phase: DecisionId, obs: &mut Observations) {
        let now = Millis(state.now);
        let node = &mut state.nodes[i];
        let Some(machine) = node.machine.as_mut() else {
            return;
        };
        let effects = machine.step(now, input);
        node.machine_fingerprint = machine_fingerprint(machine);
        for effect in effects {
            self.carry_out(state, i, effect, admitted_phase, obs);
        }
    }

    fn carry_out(
        &self,
        state: &mut State,
        i: usize,
        effect: Effect,
        admitted_phase: DecisionId,
        obs: &mut Observations,
    ) {
        let incarnation = state.nodes[i].incarnation;
        match effect {
            Effect::Snapshot(snapshot) => state.nodes[i].hot.admitter.install(snapshot),
            Effect::PublishReport(report) => Self::send(state, Packet::Publish { report, admitted_phase }),
            Effect::WriteDecision(decision) => {
                let fingerprint = debug_fingerprint(&decision);
                match state.made.get(&decision.id) {
                    Some(known) if *known != fingerprint => obs.violate(
                        Property::OneDecisionPerId,
                        format!("two different decisions {} (the second: {decision:?})", decision.id),
                    ),
                    Some(_) => {}
                    None => {
                        state.made.insert(decision.id, fingerprint);
                    }
                }
                let expected = state.nodes[i].observed_rev;
                Self::send(state, Packet::Write { from: i, incarnation, expected, decision });
            }
            Effect::StepDown { term, reason } => {
                let node = &mut state.nodes[i];
                if node.lease_term == Some(term) {
                    node.lease_term = None;
                }
                let held = state.lease.is_some_and(|l| l.holder == i && l.incarnation == incarnation && l.term == term);
                if reason == StepDownReason::Shutdown && held {
                    state.lease_rev += 1;
                    state.lease = None;
                }
            }
            Effect::Resync => {
                let input = match &state.bucket {
                    Some(d) => Input::DecisionObserved(d.clone()),
                    None => Input::NoDecisionYet,
                };
                let revision = Some(state.bucket_rev);
                Self::send(state, Packet::Deliver { to: i, incarnation, input, revision });
            }
            Effect::RunHealthCheck { attempt } => {
                let input = Input::HealthCheckResult { attempt, healthy: true };
                Self::send(state, Packet::Deliver { to: i, incarnation, input, revision: None });
            }
            Effect::Event(Event::Applied { id, from, to, .. }) => {
                let node = &mut state.nodes[i];
                if id < node.max_applied || (id == node.max_applied && node.max_applied_by == incarnation) {
                    obs.violate(
                        Property::MonotonicApply,
                        format!("{} applied {id} after {}", self.ids[i], node.max_applied),
                    );
                }
                if id > node.max_applied {
                    node.max_applied = id;
                }
                node.max_applied_by = incarnation;
                if state.landed_late.contains(&id) {
                    obs.violate(
                        Property::FencedStore,
                        format!(
                            "{} applied {id}, which reached the bucket after a decision of a newer term",
                            self.ids[i]
                        ),
                    );
                }
                if to == StateLabel::Open {
                    obs.reached.push(Property::CanOpen);
                }
                if to == StateLabel::ForcedOpen {
                    obs.reached.push(Property::CanForceOpen);
                }
                if from == StateLabel::HalfOpen && to == StateLabel::Closed {
                    obs.reached.push(Property::CanCloseAfterOpen);
                }
            }
            // Every machine is ticked at every advance of the clock; other events are
            // observability only.
            // Configs never change in the explored models (the simulator retunes).
            Effect::WakeAt(_) | Effect::Event(_) | Effect::ReloadConfig { .. } => {}
        }
    }

    fn check_state(state: &State, obs: &mut Observations) {
        for node in &state.nodes {
            let Some(machine) = &node.machine else {
                continue;
            };
            let Some(applied) = machine.applied() else {
                continue;
            };
            let expected = match applied.state {
                FleetState::ForcedOpen => Admission::Reject,
                FleetState::ForcedClosed | FleetState::Disabled | FleetState::MetricsOnly => Admission::Allow,
                _ => continue,
            };
            if node.hot.admitter.snapshot.admission != expected {
                obs.violate(
                    Property::ForcedStates,
                    format!(
                        "{} applied {} ({}) but admits {:?}",
                        machine.params().node,
                        applied.id,
                        applied.state.label().as_str(),
                        node.hot.admitter.snapshot.admission
                    ),
                );
            }
        }
    }

    // ----- fingerprints and traces ------------------------------------------------------

    fn fingerprint(state: &State) -> u128 {
        let mut h = WideHasher::new();
        h.write_u64(state.now);
        h.write_u32(state.time_steps);
        for n in &state.nodes {
            h.write_u8(u8::from(n.machine.is_some()));
            h.write_u128(n.machine_fingerprint);
            h.write_u64(n.incarnation);
            h.write_u64(n.observed_rev);
            h.write_u64(n.lease_term.map_or(u64::MAX, |t| t.0));
            h.write_u64(n.hot.admitter.probe_round().map_or(u64::MAX, |r| r));
            h.write_u32(n.hot.admitter.probes_issued);
            h.write_u32(n.hot.admitter.fraction_acc);
            // A run of an older generation than the snapshot's is dead for good (generations
            // only grow): the same future as no run.
            let live = n.hot.streak.0 == n.hot.admitter.snapshot.generation;
            let streak = if live { n.hot.streak } else { (0, 0) };
            h.write_u64(streak.0);
            h.write_u64(streak.1);
            h.write_u64(n.max_applied.term.0);
            h.write_u64(n.max_applied.seq);
            h.write_u64(n.max_applied_by);
        }
        h.write_u64(state.bucket_rev);
        h.write_u128(state.bucket.as_ref().map_or(0, debug_fingerprint));
        match state.lease {
            Some(l) => {
                h.write_u8(1);
                h.write_usize(l.holder);
                h.write_u64(l.incarnation);
                h.write_u64(l.term.0);
            }
            None => h.write_u8(0),
        }
        h.write_u64(state.lease_rev);
        h.write_usize(state.flight.len());
        for f in &state.flight {
            h.write_u128(f.fingerprint);
        }
        for budget in [
            state.batches,
            state.crashes,
            state.expiries,
            state.duplications,
            state.drops,
            state.commands,
            state.ignored_batches,
        ] {
            h.write_u32(budget);
        }
        h.write_usize(state.ignored_rounds.len());
        for id in &state.ignored_rounds {
            h.write_u64(id.term.0);
            h.write_u64(id.seq);
        }
        h.write_usize(state.made.len());
        for (id, fp) in &state.made {
            h.write_u64(id.term.0);
            h.write_u64(id.seq);
            h.write_u128(*fp);
        }
        h.write_u64(state.max_landed_term.0);
        h.write_usize(state.landed_late.len());
        for id in &state.landed_late {
            h.write_u64(id.term.0);
            h.write_u64(id.seq);
        }
        h.write_usize(state.probes.len());
        for (id, n) in &state.probes {
            h.write_u64(id.term.0);
            h.write_u64(id.seq);
            h.write_u32(*n);
        }
        h.finish_wide()
    }

    fn describe(&self, state: &State, action: Action) -> String {
        let name = |i: usize| format!("{}#{}", self.ids[i], state.nodes[i].incarnation);
        let what = match action {
            Action::Deliver { index, keep_copy } => {
                let packet = state.flight.get(usize::from(index)).map_or_else(String::new, |f| self.packet(&f.packet));
                format!("deliver {packet}{}", if keep_copy { " (a copy stays in flight)" } else { "" })
            }
            Action::Drop { index } => {
                let packet = state.flight.get(usize::from(index)).map_or_else(String::new, |f| self.packet(&f.packet));
                format!("drop {packet}")
            }
            Action::Batch { node, failing } => {
                let node = usize::from(node);
                let admission = state.nodes[node].hot.admitter.snapshot.admission;
                format!(
                    "{} runs {} {} call(s) under {admission:?}",
                    name(node),
                    self.spec.calls_per_batch,
                    if failing { "failing" } else { "succeeding" }
                )
            }
            Action::IgnoredBatch { node } => {
                let node = usize::from(node);
                let admission = state.nodes[node].hot.admitter.snapshot.admission;
                format!("{} runs {} call(s) ending ignored under {admission:?}", name(node), self.spec.calls_per_batch)
            }
            Action::AdvanceTime => format!("time advances to {} ms (renewals, ticks)", state.now + QUANTUM_MS),
            Action::ExpireLease => match (state.lease, Self::lease_candidate(state)) {
                (Some(l), Some(c)) => format!(
                    "the lease of term {} expires under {}; {} acquires term {}",
                    l.term.0,
                    name(l.holder),
                    name(c),
                    state.lease_rev + 1
                ),
                (Some(l), None) => format!("the lease of term {} expires under {}", l.term.0, name(l.holder)),
                (None, _) => "no lease expires".into(),
            },
            Action::Crash { node } => format!("{} crashes", name(usize::from(node))),
            Action::Restart { node } => {
                let i = usize::from(node);
                format!(
                    "{}#{} restarts and bootstraps at rev {}",
                    self.ids[i],
                    state.nodes[i].incarnation + 1,
                    state.bucket_rev
                )
            }
            Action::Command => {
                let kind = self.spec.commands.get(state.commands as usize);
                format!("the operator issues {kind:?}")
            }
        };
        format!("t={} {what}", state.now)
    }

    fn packet(&self, packet: &Packet) -> String {
        let decision = |d: &Decision| format!("{} {} ({:?})", d.id, d.state.label().as_str(), d.reason);
        match packet {
            Packet::Publish { report, .. } => format!(
                "report {}#{} seq {} applied {} (success {}, failure {}, rejected {})",
                report.node,
                report.incarnation,
                report.seq,
                report.applied,
                report.counts.success,
                report.counts.failure,
                report.counts.rejected
            ),
            Packet::Control { command } => format!("command {:?}", command.kind),
            Packet::Write { from, incarnation, expected, decision: d } => {
                format!("write of {} by {}#{incarnation} expecting rev {expected}", decision(d), self.ids[*from])
            }
            Packet::Deliver { to, incarnation, input, revision } => {
                let input = match input {
                    Input::DecisionObserved(d) => format!("watch update {}", decision(d)),
                    Input::DecisionWritten { id } => format!("written {id}"),
                    Input::DecisionRejected { id, current } => format!(
                        "rejected {id}, current {}",
                        current.as_ref().map_or_else(|| "none".to_owned(), decision)
                    ),
                    other => format!("{other:?}"),
                };
                format!("to {}#{incarnation}: {input} (rev {revision:?})", self.ids[*to])
            }
        }
    }

    fn trace(&self, parents: &[(u32, Option<Action>)], last: u32, extra: Option<Action>) -> Vec<String> {
        let mut actions: Vec<Action> = extra.into_iter().collect();
        let mut at = last;
        while let Some((parent, Some(action))) = parents.get(at as usize) {
            actions.push(*action);
            at = *parent;
        }
        actions.reverse();
        let mut state = self.initial();
        let mut lines = Vec::with_capacity(actions.len());
        for action in actions {
            lines.push(self.describe(&state, action));
            state = self.apply(&state, action, &mut Observations::default());
        }
        lines
    }
}

enum Found {
    Violation { state: u32, action: Action, detail: String },
    Reached { state: u32, action: Action },
}

/// Explores every state of `spec`'s model breadth-first (the order of actions is fixed, so
/// the run is deterministic) and judges every property.
pub fn explore(spec: &ExploreSpec) -> Result<ExploreReport, ExploreError> {
    let started = Instant::now();
    let world = World::new(spec)?;
    let checked: Vec<Property> = CHECKED
        .into_iter()
        .filter(|p| *p != Property::CanForceOpen || spec.commands.contains(&CommandKind::ForceOpen))
        .filter(|p| *p != Property::CanReuseIgnoredProbe || spec.ignored_batches > 0)
        .collect();
    let mut found: BTreeMap<Property, Found> = BTreeMap::new();
    let initial = world.initial();
    let mut visited: HashSet<u128> = HashSet::new();
    visited.insert(World::fingerprint(&initial));
    let mut parents: Vec<(u32, Option<Action>)> = vec![(0, None)];
    let mut queue: VecDeque<(u32, u32, State)> = VecDeque::from([(0, 0, initial)]);
    let (mut transitions, mut max_depth, mut over_in_flight, mut complete) = (0u64, 0u32, 0u64, true);
    while let Some((id, depth, state)) = queue.pop_front() {
        for action in world.actions(&state) {
            let mut obs = Observations::default();
            let next = world.apply(&state, action, &mut obs);
            transitions += 1;
            for property in obs.reached {
                found.entry(property).or_insert(Found::Reached { state: id, action });
            }
            let violated = !obs.violations.is_empty();
            for (property, detail) in obs.violations {
                found.entry(property).or_insert(Found::Violation { state: id, action, detail });
            }
            if !visited.insert(World::fingerprint(&next)) {
                continue;
            }
            if visited.len() > spec.max_states {
                complete = false;
                break;
            }
            let Ok(next_id) = u32::try_from(parents.len()) else {
                complete = false;
                break;
            };
            parents.push((id, Some(action)));
            max_depth = max_depth.max(depth + 1);
            if violated {
                continue;
            }
            if next.flight.len() > spec.max_in_flight {
                over_in_flight += 1;
                continue;
            }
            queue.push_back((next_id, depth + 1, next));
        }
        if !complete {
            break;
        }
    }
    let properties = checked
        .into_iter()
        .map(|property| {
            let verdict = match (found.get(&property), property.kind()) {
                (Some(Found::Violation { state, action, detail }), _) => {
                    Verdict::Violated { trace: world.trace(&parents, *state, Some(*action)), detail: detail.clone() }
                }
                (Some(Found::Reached { state, action }), _) => {
                    Verdict::Found { trace: world.trace(&parents, *state, Some(*action)) }
                }
                // The exploration checks no liveness property: none is in `CHECKED`.
                (None, PropertyKind::Always | PropertyKind::Eventually) if complete => Verdict::Holds,
                (None, PropertyKind::Always | PropertyKind::Eventually) => Verdict::NotViolatedSoFar,
                (None, PropertyKind::Sometimes) => Verdict::NotFound,
            };
            PropertyReport { property, verdict }
        })
        .collect();
    Ok(ExploreReport {
        nodes: spec.nodes,
        states: visited.len().min(spec.max_states),
        transitions,
        max_depth,
        elapsed: started.elapsed(),
        complete,
        over_in_flight,
        properties,
    })
}

/// The phase a node's batch of calls is recorded under, and the half-open phase its probes
/// count against (if the applied decision is half-open).
fn batch_phases(machine: &Machine) -> (DecisionId, Option<DecisionId>) {
    let applied = machine.applied();
    let half_open = applied.filter(|d| matches!(d.state, FleetState::HalfOpen { .. })).map(|d| d.phase);
    (applied.map_or(DecisionId::NONE, |d| d.phase), half_open)
}
