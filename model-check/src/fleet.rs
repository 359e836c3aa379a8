//! The deterministic fleet harness: N nodes, each running the real [`Machine`], over a
//! simulated NATS (an outcome stream whose consumer follows the lease holder, a state
//! bucket with CAS and a watch, a lease key with a TTL on the server clock) and a scripted
//! dependency. It owns how every [`Effect`] is carried out, with the semantics the real
//! transport will have, so that behaviour seen here is behaviour of the machine.
//!
//! # One step
//!
//! [`Fleet::step`] advances simulated time by `flush_ms`, then:
//! 1. prunes the outcome stream (`max_age` [`REPORT_MAX_AGE_MS`]);
//! 2. runs leases: a lease past its expiry is gone (every lease watch hears of it); then
//!    each running node's [`LeaseKeeper`] (the runtime's own lease upkeep, `LeaseInput::Tick`)
//!    renews what it holds every `ttl / 3` and competes for the shard when it holds none
//!    (at once when its watch heard the key released, else every `ttl / 3`); the store
//!    answers each request at once (term =
//!    [`next_term`](breaker_actors::machine::next_term) of the store's revision counter, the
//!    store's term record and the newest term the node knows: strictly increasing, and above
//!    the stored decisions even after [`Fleet::wipe_lease_store`]); a node must be running
//!    and reach the store both ways, or its request has no answer;
//! 3. sends each running node's periodic direct read ([`RESYNC_INTERVAL_MS`]) and hands
//!    queued operator commands to the lease holder;
//! 4. ticks every running machine ([`Effect::WakeAt`] is ignored: every node is ticked
//!    every step, so deadlines are observed with a resolution of `flush_ms`);
//! 5. delivers everything due (see below);
//! 6. runs each running node's hot path (`calls_per_flush` calls under its latest
//!    snapshot) and drains it into the machine (one flush);
//! 7. delivers everything due again: without faults, the reports just published reach the
//!    decider and the decisions they cause reach every node within this same step;
//! 8. checks every node's safety properties.
//!
//! # Delivery
//!
//! Every message between a simulated process and the simulated server is a `Packet`
//! that goes through `Fleet::send`, the one place network faults apply: each node has
//! [`LinkFaults`] (cut either way, delay, random loss, duplication), set by the driver
//! ([`crate::sim`]) or a test. With no faults a packet is due at the time it is sent and
//! a pump delivers due packets in send order until nothing is left, so reports reach the
//! decider and decisions reach every node within the step (propagation is 0 ms of sim
//! time). With faults:
//! - a watch update or a publish is delayed but never overtakes an earlier one on the
//!   same subject and node (`JetStream` orders a subject); replies and writes are not
//!   ordered with anything, so subjects overtake each other;
//! - a lost write, or a lost reply to one, reaches the writer as
//!   [`Input::DecisionWriteFailed`] after [`REQUEST_TIMEOUT_MS`] (the write may well
//!   have landed: the ambiguity real requests have);
//! - a lost watch update is made good by the transport's periodic direct read
//!   ([`RESYNC_INTERVAL_MS`]);
//! - cutting both directions tells the machine the connection is lost
//!   ([`Input::ConnectionLost`]) and mending it that it is back; a one-way cut goes
//!   unnoticed; lease requests need both directions;
//! - a paused node runs nothing and deliveries to it wait until the pause ends;
//! - each node reads its own [`NodeClock`] (offset, drift, forward jumps): every `now`
//!   and lease `sent_at` its machine sees is on that clock, while lease expiry is on the
//!   server's (sim time).
//!
//! Every step ends with the [`SafetyMonitor`]'s checks of every node; the monitor also
//! sees every write the store accepts, every decision applied and every report published.
//!
//! # Choices (where the real transport leaves room)
//!
//! - The outcome stream keeps every report for [`REPORT_MAX_AGE_MS`] (at most
//!   [`REPORT_MAX_MSGS`]), whoever consumes it. Its one consumer belongs to the lease
//!   holder's current term: created when the lease is acquired, starting at the oldest
//!   report still kept (the replay of the recent window), dropped when that node steps
//!   down or dies. Reports published while no one holds the lease are therefore replayed
//!   to the next holder if they are recent enough.
//! - On [`Effect::StepDown`] the node's keeper decides, as in production: it releases the
//!   lease (a delete on the revision it holds: harmless if the key moved on), and competes
//!   again after one retry interval, or never again on [`StepDownReason::Shutdown`].
//! - A write is judged by the server whether or not its sender is still alive; replies and
//!   watch updates addressed to an incarnation that is gone are dropped.
//! - Lease operations are synchronous round trips, possible only over a link that is up
//!   both ways: a renewal on a revision the store no longer holds is refused and the keeper
//!   tells the machine [`Input::LeaseLost`]; a request from a node that cannot reach the
//!   store has no answer (the keeper retries) and its machine stops deciding by its own
//!   clock. The simulated breaker is one lease shard.
//! - A node's transport may acquire the lease before its machine has bootstrapped (its
//!   bucket read was lost); like the runtime's inbox, it holds the news back (merged by
//!   [`merge_lease_news`]) and tells the machine once it has bootstrapped, renewing
//!   meanwhile.
//! - Operator commands wait in a queue until the lease holder can take them (the durable
//!   work-queue consumer of the real transport): reachable, and deciding at its last step
//!   ([`Inbox::takes_commands`](breaker_actors::transport::Inbox::takes_commands)).
//! - Store faults: [`Fleet::wipe_lease_store`] (the lease bucket deleted and recreated) and
//!   [`Fleet::roll_back_store`] (the state bucket loses its newest values). A rejection
//!   carries the key's revision and the node's transport expects exactly that one next, so
//!   a rolled-back bucket can be written again; other deliveries only ever raise it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use breaker_actors::machine::{
    Arrival, BreakerConfig, BreakerName, Command, CommandKind, ConfigError, Decision, DecisionId, Effect, Event,
    FleetState, Input, LocalOutcomes, Machine, Millis, NameError, NodeId, NodeParams, OutcomeCounts, Report, SeededRng,
    Snapshot, StateLabel, StepDownReason, Term, ValidConfig, VectorClock, WIRE_VERSION,
};

use breaker_actors::shell::{LeaseEffect, LeaseInput, LeaseKeeper, RenewAnswer, merge_lease_news};
use breaker_actors::transport::{LeaseAcquire, LeaseShard};

use crate::admission::Admitter;
pub use crate::lease_store::Lease;
use crate::lease_store::LeaseStore;
use crate::properties::{SafetyMonitor, Violation};

/// The lease shard of the simulated breaker: one breaker, one shard.
const SHARD: LeaseShard = LeaseShard(0);

/// How long the simulated outcome stream keeps a report (the `JetStream` `max_age`), in sim ms.
pub const REPORT_MAX_AGE_MS: u64 = 3_000;
/// The most reports the simulated outcome stream keeps (the `JetStream` `max_msgs`).
pub const REPORT_MAX_MSGS: usize = 16_384;
/// Deliveries one pump makes at most: a livelock between machines would otherwise hang
/// the harness. Hitting it is counted in [`FleetStats::pump_overflows`].
pub const MAX_DELIVERIES_PER_PUMP: u64 = 1_000_000;
/// A dependency failing at least this many calls per thousand fails health checks.
pub const UNHEALTHY_PER_MILLE: u16 = 500;
/// How long a node's transport waits for the reply to a decision write before it tells
/// its machine the write failed (the request timeout), in sim ms.
pub const REQUEST_TIMEOUT_MS: u64 = 1_000;
/// How often a node's transport re-reads the current decision directly, in sim ms (the
/// real transport's `decision_resync`): a watch update lost in the network is made good
/// within this long.
pub const RESYNC_INTERVAL_MS: u64 = 2_000;
/// Trace lines kept when a trace is recorded ([`Fleet::record_trace`]).
pub const MAX_TRACE_LINES: usize = 1_000_000;

/// Faults on one node's link to the server: what happens to the packets it sends and
/// receives. A two-way cut is a disconnection the node's client notices
/// ([`Input::ConnectionLost`]); a one-way cut goes unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkFaults {
    /// Packets from the node are lost.
    pub cut_out: bool,
    /// Packets to the node are lost.
    pub cut_in: bool,
    /// Each packet is late by up to this long (uniformly), in sim ms. Packets on one
    /// subject keep their order (a watch, a publisher's stream); replies and writes do not.
    pub max_delay_ms: u64,
    /// Packets lost, per thousand.
    pub drop_per_mille: u16,
    /// Publishes and watch updates delivered twice, per thousand.
    pub duplicate_per_mille: u16,
}

impl LinkFaults {
    /// Whether the node can reach the server and hear back (a request can succeed).
    pub fn is_connected(&self) -> bool {
        !self.cut_out && !self.cut_in
    }
}

/// A node's monotonic clock, read as `offset + t + t * drift_ppm / 1e6 + jumps` at sim
/// time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeClock {
    /// Constant offset from sim time, in ms.
    pub offset_ms: u64,
    /// Drift in parts per million (negative: slow), within +-100,000.
    pub drift_ppm: i32,
    /// Forward jumps so far, in ms.
    pub jumped_ms: u64,
}

impl NodeClock {
    /// The clock's reading at sim time `at_ms`.
    pub fn read(&self, at_ms: u64) -> u64 {
        let drift = i128::from(at_ms) * i128::from(self.drift_ppm) / 1_000_000;
        let reading = i128::from(self.offset_ms) + i128::from(at_ms) + drift + i128::from(self.jumped_ms);
        u64::try_from(reading.max(0)).unwrap_or(u64::MAX)
    }
}

/// A bug planted in the simulated server on purpose, so that a test can show the
/// properties catch it. It lives in the harness only: no release code has the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Fencing disabled: the state bucket accepts every write, whatever revision its
    /// writer last observed, so a deposed decider's late write lands after its
    /// successor's.
    StoreWithoutCas,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// Number of nodes, named `n1..nN` (index `i` is `n{i+1}`).
    pub nodes: usize,
    /// The breaker's name.
    pub breaker: String,
    /// The breaker's configuration, shared by every node.
    pub config: BreakerConfig,
    /// Lease time-to-live on the lease store's clock.
    pub lease_ttl_ms: u64,
    /// Each node's safety margin before its lease's expiry (see [`NodeParams`]).
    pub lease_margin_ms: u64,
    /// The flush interval, and the step of simulated time.
    pub flush_ms: u64,
    /// Calls each live node makes per flush.
    pub calls_per_flush: u32,
    /// Seed of the dependency's failures.
    pub seed: u64,
    /// The dependency's health: from each `(from_ms, failure_per_mille)` on, a call fails
    /// with that probability; healthy (0) before the first entry. `from_ms` must not
    /// decrease.
    pub dependency: Vec<(u64, u16)>,
}

/// A spec or a request the harness cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// A field of [`FleetSpec`] is out of range.
    Spec {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The breaker name is not valid.
    Name(NameError),
    /// The breaker config is not valid.
    Config(ConfigError),
    /// A node index beyond the fleet.
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// The fleet's size.
        nodes: usize,
    },
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spec { field, problem } => write!(f, "invalid fleet spec: {field}: {problem}"),
            Self::Name(e) => write!(f, "invalid breaker name: {e}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::NoSuchNode { index, nodes } => write!(f, "no node at index {index} in a fleet of {nodes}"),
        }
    }
}

impl std::error::Error for FleetError {}

/// What one node's hot path saw, over all its incarnations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounters {
    /// Admitted calls that succeeded.
    pub ok: u64,
    /// Admitted calls that failed.
    pub failed: u64,
    /// Admitted calls that were slow (the simulated dependency has no latency yet: 0).
    pub slow: u64,
    /// Calls the breaker rejected.
    pub rejected: u64,
    /// Calls admitted as probes (under [`Admission::Probe`](breaker_actors::machine::Admission::Probe)).
    pub probes_admitted: u64,
    /// Admitted calls that ended in an excluded error (neutral: [`Fleet::set_ignored_per_mille`]).
    pub ignored: u64,
}

impl NodeCounters {
    /// Calls that reached the dependency.
    pub fn admitted(&self) -> u64 {
        self.ok + self.failed + self.slow
    }
}

/// Counters of the harness itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetStats {
    /// Packets delivered.
    pub delivered: u64,
    /// Packets addressed to an incarnation that was gone by delivery.
    pub dropped_dead: u64,
    /// Decision writes that lost their CAS.
    pub cas_conflicts: u64,
    /// Reports removed from the stream by age or count.
    pub reports_pruned: u64,
    /// Reports published by foreign publishers ([`Fleet::publish_foreign`]).
    pub foreign_reports: u64,
    /// Reports the stream dropped before its consumer got them.
    pub reports_missed: u64,
    /// Leases acquired.
    pub leases_acquired: u64,
    /// Pumps stopped by [`MAX_DELIVERIES_PER_PUMP`].
    pub pump_overflows: u64,
    /// Packets lost to a cut link.
    pub packets_cut: u64,
    /// Packets lost at random.
    pub packets_dropped: u64,
    /// Packets delivered twice.
    pub packets_duplicated: u64,
    /// Packets delivered late.
    pub packets_delayed: u64,
    /// Packets held back until their node's pause ended.
    pub packets_held: u64,
    /// Writes whose reply did not come: the writer was told the write failed.
    pub write_timeouts: u64,
    /// Operator commands delivered to a decider.
    pub commands_delivered: u64,
    /// Probes that ended ignored and gave their slot back.
    pub probes_returned: u64,
    /// Times the lease store was wiped.
    pub lease_wipes: u64,
    /// Times the state bucket was rolled back.
    pub rollbacks: u64,
}

/// How a delivery reaches its node, which decides what faults apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    /// A watch update: ordered, may be lost, delayed or duplicated.
    Watch,
    /// A request's reply: may be lost or delayed, not ordered with anything.
    Reply,
    /// Inside the node's process (a timer, the health checker): no network.
    Local,
}

/// A message in flight between a simulated process and the simulated server.
#[derive(Debug, Clone)]
enum Packet {
    /// A report published on the outcome stream.
    Publish {
        /// The publisher's index.
        from: usize,
        /// The report.
        report: Report,
    },
    /// A CAS write to the state bucket: succeeds iff the bucket is at `expected`.
    Write {
        /// The writer's index.
        from: usize,
        /// The writer's incarnation.
        incarnation: u64,
        /// The revision the writer last observed (0: the key must be absent).
        expected: u64,
        /// The decision.
        decision: Decision,
    },
    /// An input for one incarnation of a node's machine.
    Deliver {
        /// The node's index.
        to: usize,
        /// The incarnation it is for.
        incarnation: u64,
        /// The input.
        input: Input,
        /// The state-bucket revision the input carries (a read, a watch update, a write
        /// reply): the transport remembers it for its next CAS.
        revision: Option<u64>,
        /// How it travels.
        route: Route,
    },
}

#[derive(Debug, Clone)]
struct StreamEntry {
    seq: u64,
    at: u64,
    report: Report,
}

#[derive(Debug, Clone, Copy)]
struct Consumer {
    node: usize,
    incarnation: u64,
    term: Term,
    next_seq: u64,
}

/// The simulated hot path of one node: what `Breaker::try_acquire` and the permits do.
/// Like the real one, a run of failures belongs to one snapshot generation (so it never
/// crosses a phase): a call of a newer generation starts a new run.
#[derive(Debug, Clone)]
struct HotPath {
    admitter: Admitter,
    /// The current run of consecutive failures: `(generation, run)`.
    streak: (u64, u64),
    /// Each generation's longest run since the last drain, counting the run carried into it.
    longest: BTreeMap<u64, u64>,
    /// Outcomes not yet drained, by the generation they were admitted under.
    pending: BTreeMap<u64, OutcomeCounts>,
}

impl HotPath {
    fn new(snapshot: Snapshot) -> Self {
        Self { admitter: Admitter::new(snapshot), streak: (0, 0), longest: BTreeMap::new(), pending: BTreeMap::new() }
    }

    /// A recorded failure or success under `generation` (calls here end in the order they
    /// start, so there are no late outcomes of older generations).
    fn streak_outcome(&mut self, generation: u64, failed: bool) {
        let run = if self.streak.0 == generation { self.streak.1 } else { 0 };
        let run = if failed { run + 1 } else { 0 };
        self.streak = (generation, run);
        if failed {
            let longest = self.longest.entry(generation).or_default();
            *longest = (*longest).max(run);
        }
    }
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    incarnation: u64,
    /// `None` while the node is down.
    machine: Option<Machine>,
    hot: HotPath,
    /// The revision of the last state-bucket value this process's transport observed.
    observed_rev: u64,
    /// This process's lease upkeep: the runtime's own rules ([`LeaseKeeper`]).
    keeper: LeaseKeeper,
    /// Lease news its machine has not been fed yet: like the runtime's inbox, the transport
    /// holds it back until the machine has bootstrapped (deciding needs the current state),
    /// merged by [`merge_lease_news`].
    untold: Option<Input>,
    counters: NodeCounters,
    link: LinkFaults,
    clock: NodeClock,
    /// The node does nothing (no tick, call, renewal or delivery) before this sim time.
    paused_until: u64,
    /// When its transport last re-read the current decision.
    last_resync: u64,
}

impl Node {
    fn is_paused(&self, now: u64) -> bool {
        self.paused_until > now
    }

    /// Up, not paused: it runs this step.
    fn is_running(&self, now: u64) -> bool {
        self.machine.is_some() && !self.is_paused(now)
    }
}

/// The outcome consumer holding reports back while its node goes on ticking (the real
/// feed's consumer re-created mid-replay, a pull waiting on a busy server, a loaded node's
/// feed task not scheduled): on reaching a report published at or after `from_published`,
/// it hands over nothing for `for_ms`.
#[derive(Debug, Clone, Copy)]
struct FeedStall {
    from_published: u64,
    for_ms: u64,
    /// When the stall ends, once it has begun.
    until: Option<u64>,
}

/// A fleet of simulated nodes; see the module documentation.
#[derive(Debug)]
pub struct Fleet {
    spec: FleetSpec,
    breaker: BreakerName,
    config: ValidConfig,
    now: u64,
    nodes: Vec<Node>,
    rng: SeededRng,
    /// Packets in flight, by `(due time, send order)`.
    in_flight: BTreeMap<(u64, u64), Packet>,
    sent: u64,
    stream: VecDeque<StreamEntry>,
    stream_next_seq: u64,
    consumer: Option<Consumer>,
    /// A stall of the outcome consumer, set by [`Fleet::stall_feed`].
    feed_stall: Option<FeedStall>,
    history: Vec<(u64, Decision)>,
    /// The lease bucket (one key: the breaker's shard).
    leases: LeaseStore,
    events: Vec<(u64, usize, Event)>,
    admitted_by_fleet_state: BTreeMap<StateLabel, u64>,
    stats: FleetStats,
    trace: u64,
    /// Randomness of the network faults, apart from the dependency's.
    net_rng: SeededRng,
    /// The due time of the last packet on each ordered channel `(node, route, outbound)`.
    fifo_due: BTreeMap<(usize, Route, bool), u64>,
    /// Operator commands waiting for a decider to consume them.
    commands: VecDeque<(CommandKind, Option<u64>)>,
    monitor: SafetyMonitor,
    trace_log: Option<Vec<String>>,
    planted: Option<PlantedBug>,
    /// Admitted calls per thousand that end in an excluded error (neutral).
    ignored_per_mille: u16,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn spec_error<T>(field: &'static str, problem: impl Into<String>) -> Result<T, FleetError> {
    Err(FleetError::Spec { field, problem: problem.into() })
}

impl Fleet {
    /// A fleet at time 0, every node up and bootstrapped (the bucket is empty).
    pub fn new(spec: FleetSpec) -> Result<Self, FleetError> {
        let breaker = BreakerName::new(&spec.breaker).map_err(FleetError::Name)?;
        let config = spec.config.validate().map_err(FleetError::Config)?;
        if spec.nodes == 0 {
            return spec_error("nodes", "a fleet needs at least one node");
        }
        if u64::try_from(spec.nodes).unwrap_or(u64::MAX) > u64::from(config.max_nodes) {
            return spec_error("nodes", format!("{} is more than config.max_nodes ({})", spec.nodes, config.max_nodes));
        }
        if spec.flush_ms == 0 {
            return spec_error("flush_ms", "must be greater than 0: time would not move");
        }
        if spec.lease_margin_ms >= spec.lease_ttl_ms {
            return spec_error("lease_margin_ms", "must be less than lease_ttl_ms: no lease would ever be valid");
        }
        if spec.dependency.iter().any(|&(_, p)| p > 1000) {
            return spec_error("dependency", "a failure rate is more than 1000 per mille");
        }
        if spec.dependency.windows(2).any(|w| w[0].0 > w[1].0) {
            return spec_error("dependency", "entries must be in order of their start time");
        }
        let mut nodes = Vec::with_capacity(spec.nodes);
        for i in 0..spec.nodes {
            let id = NodeId::new(&format!("n{}", i + 1)).map_err(FleetError::Name)?;
            let machine = Self::fresh_machine(&spec, &breaker, &config, id.clone(), 1);
            nodes.push(Node {
                id,
                incarnation: 1,
                hot: HotPath::new(machine.snapshot()),
                machine: Some(machine),
                observed_rev: 0,
                keeper: Self::fresh_keeper(&spec),
                untold: None,
                counters: NodeCounters::default(),
                link: LinkFaults::default(),
                clock: NodeClock::default(),
                paused_until: 0,
                last_resync: 0,
            });
        }
        let leases = LeaseStore::new(spec.lease_ttl_ms);
        let mut fleet = Self {
            rng: SeededRng::new(spec.seed),
            net_rng: SeededRng::new(spec.seed ^ 0x6e65_7477_6f72_6b21),
            fifo_due: BTreeMap::new(),
            commands: VecDeque::new(),
            monitor: SafetyMonitor::new(spec.nodes),
            trace_log: None,
            planted: None,
            ignored_per_mille: 0,
            spec,
            breaker,
            config,
            now: 0,
            nodes,
            in_flight: BTreeMap::new(),
            sent: 0,
            stream: VecDeque::new(),
            stream_next_seq: 1,
            consumer: None,
            feed_stall: None,
            history: Vec::new(),
            leases,
            events: Vec::new(),
            admitted_by_fleet_state: BTreeMap::new(),
            stats: FleetStats::default(),
            trace: FNV_OFFSET,
        };
        for i in 0..fleet.nodes.len() {
            fleet.bootstrap(i);
        }
        Ok(fleet)
    }

    /// A fresh process's lease upkeep, already asking for the one shard: like the runtime,
    /// the transport competes from the moment the breaker starts, before it bootstraps.
    fn fresh_keeper(spec: &FleetSpec) -> LeaseKeeper {
        let mut keeper = LeaseKeeper::new(Duration::from_millis(spec.lease_ttl_ms));
        keeper.handle(Millis(0), LeaseInput::Join { shard: SHARD, restarted: false });
        keeper
    }

    fn fresh_machine(
        spec: &FleetSpec,
        breaker: &BreakerName,
        config: &ValidConfig,
        node: NodeId,
        incarnation: u64,
    ) -> Machine {
        let params = NodeParams { breaker: breaker.clone(), node, incarnation, lease_margin_ms: spec.lease_margin_ms };
        Machine::with_valid(params, config.clone())
    }

    // ----- accessors -------------------------------------------------------------------

    /// The spec this fleet runs.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    /// Simulated time, in ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of nodes, up or down.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the fleet has no nodes (never: a spec needs one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s id (`n{i+1}`).
    pub fn node_id(&self, i: usize) -> Option<&NodeId> {
        self.nodes.get(i).map(|n| &n.id)
    }

    /// Whether node `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.machine.is_some())
    }

    /// Node `i`'s current incarnation.
    pub fn incarnation(&self, i: usize) -> Option<u64> {
        self.nodes.get(i).map(|n| n.incarnation)
    }

    /// The snapshot node `i`'s hot path enforces (`None` while it is down).
    pub fn snapshot(&self, i: usize) -> Option<Snapshot> {
        self.nodes.get(i).filter(|n| n.machine.is_some()).map(|n| n.hot.admitter.snapshot)
    }

    /// Node `i`'s machine (`None` while it is down).
    pub fn machine(&self, i: usize) -> Option<&Machine> {
        self.nodes.get(i).and_then(|n| n.machine.as_ref())
    }

    /// Node `i`'s hot-path counters, over all its incarnations.
    pub fn counters(&self, i: usize) -> Option<NodeCounters> {
        self.nodes.get(i).map(|n| n.counters)
    }

    /// The sum of every node's counters.
    pub fn total_counters(&self) -> NodeCounters {
        self.nodes.iter().fold(NodeCounters::default(), |mut sum, n| {
            sum.ok += n.counters.ok;
            sum.failed += n.counters.failed;
            sum.slow += n.counters.slow;
            sum.rejected += n.counters.rejected;
            sum.probes_admitted += n.counters.probes_admitted;
            sum.ignored += n.counters.ignored;
            sum
        })
    }

    /// The index of the node holding an unexpired lease, per the lease store.
    pub fn decider(&self) -> Option<usize> {
        self.lease().map(|l| l.holder)
    }

    /// The unexpired lease, per the lease store.
    pub fn lease(&self) -> Option<Lease> {
        self.leases.get(SHARD, self.now)
    }

    /// Every value the state bucket held, oldest first, with its revision.
    pub fn history(&self) -> &[(u64, Decision)] {
        &self.history
    }

    /// The bucket's current value.
    pub fn current_decision(&self) -> Option<&Decision> {
        self.history.last().map(|(_, d)| d)
    }

    /// Every [`Effect::Event`] so far: `(time, node index, event)`.
    pub fn events(&self) -> &[(u64, usize, Event)] {
        &self.events
    }

    /// Probes admitted fleet-wide in each fleet half-open phase, keyed by the phase id of
    /// the half-open decision the admitting node had applied.
    pub fn probes_by_phase(&self) -> BTreeMap<DecisionId, u64> {
        self.monitor.probes_by_phase().collect()
    }

    /// The safety violations found so far (none expected).
    pub fn violations(&self) -> &[Violation] {
        self.monitor.violations()
    }

    /// The safety monitor, for checks from outside (the driver's liveness checks).
    pub fn monitor_mut(&mut self) -> &mut SafetyMonitor {
        &mut self.monitor
    }

    /// The recorded trace (see [`Fleet::record_trace`]).
    pub fn trace_lines(&self) -> &[String] {
        self.trace_log.as_deref().unwrap_or_default()
    }

    /// Node `i`'s link faults.
    pub fn link(&self, i: usize) -> Option<LinkFaults> {
        self.nodes.get(i).map(|n| n.link)
    }

    /// Node `i`'s clock reading now.
    pub fn node_now(&self, i: usize) -> Option<Millis> {
        self.nodes.get(i).map(|n| Millis(n.clock.read(self.now)))
    }

    /// Whether node `i` is paused now.
    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.is_paused(self.now))
    }

    /// Calls admitted fleet-wide, by the fleet state the admitting node had applied.
    pub fn admitted_by_fleet_state(&self) -> &BTreeMap<StateLabel, u64> {
        &self.admitted_by_fleet_state
    }

    /// The harness's own counters.
    pub fn stats(&self) -> FleetStats {
        self.stats
    }

    /// The dependency's failure rate at `at_ms`, per mille.
    pub fn failure_per_mille(&self, at_ms: u64) -> u16 {
        self.spec.dependency.iter().take_while(|(from, _)| *from <= at_ms).last().map_or(0, |(_, p)| *p)
    }

    /// A stable hash of everything the nodes did: `(time, node, effect)` for every effect
    /// carried out, and the faults injected. Equal specs and fault schedules give equal
    /// hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    // ----- driving ---------------------------------------------------------------------

    /// One flush interval; see the module documentation for the order of things.
    pub fn step(&mut self) {
        self.now += self.spec.flush_ms;
        self.prune_stream();
        self.run_leases();
        self.run_resyncs();
        self.run_commands();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running(self.now) {
                self.feed(i, Input::Tick);
            }
        }
        self.pump();
        self.tell_leases();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running(self.now) {
                self.run_calls(i);
                self.drain(i);
            }
        }
        self.pump();
        self.check_nodes();
    }

    /// Steps until simulated time reaches `at_ms`.
    pub fn run_until(&mut self, at_ms: u64) {
        while self.now < at_ms {
            self.step();
        }
    }

    /// Node `i` crashes: no more ticks, calls or renewals; its machine is dropped and its
    /// lease expires by TTL. Killing a node that is down does nothing.
    pub fn kill(&mut self, i: usize) -> Result<(), FleetError> {
        self.check_index(i)?;
        if self.nodes[i].machine.is_none() {
            return Ok(());
        }
        self.trace_line(i, "kill");
        let node = &mut self.nodes[i];
        node.machine = None;
        node.keeper = Self::fresh_keeper(&self.spec);
        node.untold = None;
        node.paused_until = 0;
        node.hot.pending.clear();
        if self.consumer.is_some_and(|c| c.node == i) {
            self.consumer = None;
        }
        Ok(())
    }

    /// Node `i` starts afresh (killed first if up): a new incarnation and a new machine,
    /// bootstrapped from the state bucket (directly if its link is up, else by its next
    /// resync) before it admits any call.
    pub fn restart(&mut self, i: usize) -> Result<(), FleetError> {
        self.kill(i)?;
        self.trace_line(i, "restart");
        let incarnation = self.nodes[i].incarnation + 1;
        let machine =
            Self::fresh_machine(&self.spec, &self.breaker, &self.config, self.nodes[i].id.clone(), incarnation);
        let node = &mut self.nodes[i];
        node.incarnation = incarnation;
        node.hot = HotPath::new(machine.snapshot());
        node.machine = Some(machine);
        node.observed_rev = 0;
        node.last_resync = self.now;
        self.monitor.restarted(i);
        self.bootstrap(i);
        Ok(())
    }

    /// Node `i` shuts down gracefully: its machine steps down (a decider releases the
    /// lease), then the node stops.
    pub fn shutdown(&mut self, i: usize) -> Result<(), FleetError> {
        self.check_index(i)?;
        self.trace_line(i, "shutdown");
        self.feed(i, Input::Shutdown);
        self.pump();
        self.kill(i)
    }

    /// Sets node `i`'s link faults. Cutting both directions of a connected link tells its
    /// machine the connection is lost; reconnecting tells it the connection is back.
    pub fn set_link(&mut self, i: usize, link: LinkFaults) -> Result<(), FleetError> {
        self.check_index(i)?;
        let was = self.nodes[i].link;
        self.nodes[i].link = link;
        self.trace_line(i, &format!("link {link:?}"));
        let both_cut = |l: LinkFaults| l.cut_in && l.cut_out;
        if !both_cut(was) && both_cut(link) {
            self.feed(i, Input::ConnectionLost);
        } else if both_cut(was) && !both_cut(link) {
            self.feed(i, Input::ConnectionRestored);
            self.pump();
        }
        Ok(())
    }

    /// Node `i` does nothing until sim time `until_ms`: no tick, call, renewal or delivery
    /// (a stop-the-world pause). Its clock keeps running.
    pub fn pause(&mut self, i: usize, until_ms: u64) -> Result<(), FleetError> {
        self.check_index(i)?;
        self.trace_line(i, &format!("pause until {until_ms}"));
        self.nodes[i].paused_until = until_ms;
        Ok(())
    }

    /// The outcome consumer stalls: when it reaches a report published at or after sim
    /// time `from_published_ms`, it hands over nothing more for `for_ms` (whoever holds
    /// it), while every machine goes on ticking. A stall of a replay's middle is the case
    /// that matters: the decider must not judge the part it has seen as if it were all.
    pub fn stall_feed(&mut self, from_published_ms: u64, for_ms: u64) {
        self.trace_line(usize::MAX, &format!("stall feed from {from_published_ms} for {for_ms}"));
        self.feed_stall = Some(FeedStall { from_published: from_published_ms, for_ms, until: None });
    }

    /// Sets node `i`'s clock (its offset and drift; its jumps are kept).
    pub fn set_clock(&mut self, i: usize, offset_ms: u64, drift_ppm: i32) -> Result<(), FleetError> {
        self.check_index(i)?;
        if !(-100_000..=100_000).contains(&drift_ppm) {
            return spec_error("drift_ppm", format!("{drift_ppm} is beyond +-100,000"));
        }
        self.trace_line(i, &format!("clock {offset_ms} {drift_ppm}"));
        let clock = &mut self.nodes[i].clock;
        clock.offset_ms = offset_ms;
        clock.drift_ppm = drift_ppm;
        Ok(())
    }

    /// Node `i`'s clock jumps forward by `ms` (a monotonic clock never goes back).
    pub fn jump_clock(&mut self, i: usize, ms: u64) -> Result<(), FleetError> {
        self.check_index(i)?;
        self.trace_line(i, &format!("jump {ms}"));
        self.nodes[i].clock.jumped_ms += ms;
        Ok(())
    }

    /// An operator command, consumed by whichever node decides next.
    pub fn command(&mut self, kind: CommandKind) {
        self.command_for(kind, None);
    }

    /// An operator command time-boxed for `duration_ms` if `Some` (the decider returns to
    /// automatic control when it runs out), consumed by whichever node decides next.
    pub fn command_for(&mut self, kind: CommandKind, duration_ms: Option<u64>) {
        self.trace_line(usize::MAX, &format!("command {kind:?} for {duration_ms:?} ms"));
        self.commands.push_back((kind, duration_ms));
    }

    /// Puts `config` in the simulated config bucket (an operator's `fusebox config set`, or
    /// a newer version deployed) and tells the decider, as the registry does: the decider
    /// switches and records it, and every other node switches when it applies a decision
    /// made under the new version (its machine asks, [`Effect::ReloadConfig`], and the
    /// harness answers from the bucket). Nodes restarted later start on it.
    pub fn retune(&mut self, config: &BreakerConfig) -> Result<(), FleetError> {
        let valid = config.validate().map_err(FleetError::Config)?;
        if u64::try_from(self.spec.nodes).unwrap_or(u64::MAX) > u64::from(valid.max_nodes) {
            return spec_error("config", "max_nodes is less than the fleet");
        }
        self.trace_line(usize::MAX, &format!("retune to version {}", valid.version));
        self.config = valid;
        self.spec.config = config.clone();
        self.command(CommandKind::Reconfigure);
        Ok(())
    }

    /// The fleet's config (the simulated config bucket's).
    pub fn breaker_config(&self) -> &BreakerConfig {
        &self.spec.config
    }

    /// The config version node `i`'s machine runs on (`None` while it is down).
    pub fn config_version(&self, i: usize) -> Option<u64> {
        self.nodes.get(i)?.machine.as_ref().map(|m| m.config().version)
    }

    /// From `from_ms` on, the dependency fails `per_mille` of calls (a change appended to
    /// the spec's schedule; `from_ms` must not be before the last change).
    pub fn set_dependency(&mut self, from_ms: u64, per_mille: u16) -> Result<(), FleetError> {
        if per_mille > 1000 {
            return spec_error("dependency", "a failure rate is more than 1000 per mille");
        }
        if self.spec.dependency.last().is_some_and(|(at, _)| *at > from_ms) {
            return spec_error("dependency", "entries must be in order of their start time");
        }
        self.trace_line(usize::MAX, &format!("dependency {from_ms} {per_mille}"));
        self.spec.dependency.push((from_ms, per_mille));
        Ok(())
    }

    /// From now on, `per_mille` of the admitted calls end in an excluded error: counted as
    /// ignored, no part of any failure run, and a probe that ends so gives its slot back
    /// (as `Permit::ignore` does). 0 (the default) draws nothing, so traces stay as they were.
    pub fn set_ignored_per_mille(&mut self, per_mille: u16) {
        self.trace_line(usize::MAX, &format!("ignored {per_mille}"));
        self.ignored_per_mille = per_mille.min(1000);
    }

    /// Plants `bug` in the simulated server (see [`PlantedBug`]).
    pub fn plant(&mut self, bug: PlantedBug) {
        self.trace_line(usize::MAX, &format!("plant {bug:?}"));
        self.planted = Some(bug);
    }

    /// The lease bucket is deleted and recreated (an operator's mistake, a restore from
    /// backup): no lease, no term record, revisions from 1 again. The state bucket keeps
    /// its decisions. Holders find out at their next renewal.
    pub fn wipe_lease_store(&mut self) {
        self.trace_line(usize::MAX, "lease store wiped");
        self.leases.wipe();
        self.stats.lease_wipes += 1;
    }

    /// The state bucket loses its newest `entries` values (acknowledged writes lost, or a
    /// restore from an older backup): its value and revision go back, and later writes
    /// reuse the lost revisions. Nobody is told.
    pub fn roll_back_store(&mut self, entries: usize) {
        let keep = self.history.len().saturating_sub(entries.max(1));
        self.trace_line(usize::MAX, &format!("state bucket rolled back to {keep} entries"));
        let lost: Vec<DecisionId> = self.history[keep..].iter().map(|(_, d)| d.id).collect();
        self.history.truncate(keep);
        self.monitor.rolled_back(self.history.last().map(|(_, d)| d.id), &lost);
        self.stats.rollbacks += 1;
    }

    /// Keeps a readable trace from now on (at most [`MAX_TRACE_LINES`] lines).
    pub fn record_trace(&mut self) {
        self.trace_log.get_or_insert_with(Vec::new);
    }

    /// A foreign publisher (an app in another language, or anyone allowed to publish on
    /// the outcome subjects) publishes `counts` as `node`, claiming to have applied
    /// `applied`, true or not. The report goes straight into the outcome stream as the
    /// transport converts a JSON report: incarnation 0, the stream sequence as `seq`, a
    /// clock of the claimed term with `node` ticked once.
    pub fn publish_foreign(&mut self, node: &NodeId, applied: DecisionId, counts: OutcomeCounts, streak: u64) {
        let seq = self.stream_next_seq;
        let mut clock = VectorClock::new(applied.term);
        clock.tick(node);
        let report = Report {
            version: WIRE_VERSION,
            breaker: self.breaker.clone(),
            node: node.clone(),
            incarnation: 0,
            seq,
            applied,
            clock,
            counts,
            longest_failure_streak: streak,
            local_open: false,
        };
        self.trace_line(usize::MAX, &format!("foreign report from {node} claiming {applied}: {counts:?}"));
        self.stats.foreign_reports += 1;
        self.stream.push_back(StreamEntry { seq, at: self.now, report });
        self.stream_next_seq += 1;
        self.prune_stream();
    }

    fn check_index(&self, i: usize) -> Result<(), FleetError> {
        if i < self.nodes.len() { Ok(()) } else { Err(FleetError::NoSuchNode { index: i, nodes: self.nodes.len() }) }
    }

    // ----- the pieces of a step ---------------------------------------------------------

    /// Reads the bucket's current value straight into the machine: a node admits no call
    /// before it knows the fleet state. A node cut off learns it at its next resync.
    fn bootstrap(&mut self, i: usize) {
        if !self.nodes[i].link.is_connected() {
            return;
        }
        let (rev, input) = self.current_read();
        self.nodes[i].observed_rev = rev;
        self.feed(i, input);
    }

    fn current_read(&self) -> (u64, Input) {
        match self.history.last() {
            Some((rev, d)) => (*rev, Input::DecisionObserved(d.clone())),
            None => (0, Input::NoDecisionYet),
        }
    }

    fn prune_stream(&mut self) {
        while let Some(front) = self.stream.front() {
            if front.at + REPORT_MAX_AGE_MS > self.now && self.stream.len() <= REPORT_MAX_MSGS {
                break;
            }
            self.stream.pop_front();
            self.stats.reports_pruned += 1;
        }
    }

    /// Whether node `i` can make a round trip to the server now.
    fn can_request(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.is_running(self.now) && node.link.is_connected()
    }

    fn run_leases(&mut self) {
        if self.leases.expire(self.now) {
            // The expiry marker reaches every lease watch.
            self.lease_released();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running(self.now) {
                self.lease_input(i, LeaseInput::Tick);
            }
        }
        self.tell_leases();
    }

    /// Feeds node `i`'s lease keeper and carries out what it asks, synchronously: a lease
    /// operation is one round trip to the store, answered at once, or answered "no answer"
    /// when the node cannot reach the store both ways.
    fn lease_input(&mut self, i: usize, input: LeaseInput) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.node_millis(i);
            self.nodes[i].keeper.handle(now, input);
            while let Some(effect) = self.nodes[i].keeper.poll_effect() {
                if let Some(answer) = self.carry_out_lease(i, effect) {
                    inputs.push_back(answer);
                }
            }
        }
    }

    /// The store's side of one lease operation (the simulated lease bucket), or the news
    /// for node `i`'s machine; the answer to feed its keeper back.
    fn carry_out_lease(&mut self, i: usize, effect: LeaseEffect) -> Option<LeaseInput> {
        let reachable = self.can_request(i);
        let incarnation = self.nodes[i].incarnation;
        match effect {
            LeaseEffect::Tell { news, .. } | LeaseEffect::Greet { news, .. } => {
                let node = &mut self.nodes[i];
                node.untold = Some(merge_lease_news(node.untold.take(), news));
                None
            }
            // The simulated fleet has the one breaker every node runs: nothing to adopt.
            LeaseEffect::Adopt { .. } => None,
            LeaseEffect::Release { shard, revision } => {
                if reachable && self.leases.release(shard, revision) {
                    self.trace_line(i, "lease released");
                    self.lease_released();
                }
                None
            }
            LeaseEffect::Renew { shard, revision, .. } => {
                let answer =
                    if reachable { self.leases.renew(shard, revision, self.now) } else { RenewAnswer::NoAnswer };
                Some(LeaseInput::Renewed { shard, answer })
            }
            LeaseEffect::Acquire { shard, floor, over, .. } => {
                if !reachable {
                    return Some(LeaseInput::Acquired { shard, answer: None });
                }
                // The node's transport knows the newest term among the decisions it
                // delivered (its machine applied the newest of them) and the floor its
                // keeper keeps (terms it held, a newer term it was deposed by).
                let known = self.nodes[i].machine.as_ref().map_or(Term(0), |m| m.applied_id().term).max(floor);
                let answer = self.leases.acquire(shard, i, incarnation, known, over, self.now);
                if let LeaseAcquire::Granted { term, .. } = answer {
                    self.stats.leases_acquired += 1;
                    self.monitor.lease_granted(term);
                    // The consumer exists before the machine hears of the lease, so that a
                    // step-down it answers with also removes it.
                    let next_seq = self.stream.front().map_or(self.stream_next_seq, |e| e.seq);
                    self.consumer = Some(Consumer { node: i, incarnation, term, next_seq });
                    self.trace_line(i, &format!("lease {}", term.0));
                }
                Some(LeaseInput::Acquired { shard, answer: Some(answer) })
            }
        }
    }

    /// The lease key was deleted or expired: every lease watch that can hear it tells its
    /// keeper (a node paused or cut off hears nothing and tries on its own schedule).
    fn lease_released(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running(self.now) && !self.nodes[i].link.cut_in {
                let now = self.node_millis(i);
                self.nodes[i].keeper.handle(now, LeaseInput::Released);
            }
        }
    }

    /// Feeds each bootstrapped, running machine the lease news its transport holds.
    fn tell_leases(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if !node.is_running(self.now) || !node.machine.as_ref().is_some_and(Machine::is_bootstrapped) {
                continue;
            }
            if let Some(news) = node.untold.take() {
                self.feed(i, news);
            }
        }
    }

    /// Each running node's transport re-reads the current decision every
    /// [`RESYNC_INTERVAL_MS`]: the request and its reply travel like any other.
    fn run_resyncs(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.is_running(self.now) || self.now < node.last_resync + RESYNC_INTERVAL_MS {
                continue;
            }
            self.nodes[i].last_resync = self.now;
            if self.nodes[i].link.cut_out {
                continue;
            }
            self.send_read(i);
        }
    }

    fn send_read(&mut self, i: usize) {
        let (rev, input) = self.current_read();
        let incarnation = self.nodes[i].incarnation;
        self.send(Packet::Deliver { to: i, incarnation, input, revision: Some(rev), route: Route::Reply });
    }

    /// The command consumer belongs to the lease holder: commands wait until it can take
    /// them.
    fn run_commands(&mut self) {
        let Some(holder) = self.consumer.map(|c| c.node) else {
            return;
        };
        // As the transport: only a machine deciding now takes a command (one whose lease
        // ran out on its clock would drop it); until then the command waits.
        let deciding = self.nodes[holder].machine.as_ref().is_some_and(Machine::is_deciding);
        if !self.can_request(holder) || !deciding {
            return;
        }
        while let Some((kind, duration_ms)) = self.commands.pop_front() {
            self.stats.commands_delivered += 1;
            let command = Command {
                version: WIRE_VERSION,
                breaker: self.breaker.clone(),
                kind,
                actor: "sim".into(),
                reason: "fault plan".into(),
                duration_ms,
            };
            self.feed(holder, Input::Command(command));
        }
    }

    fn run_calls(&mut self, i: usize) {
        let per_mille = self.failure_per_mille(self.now);
        let half_open = self.nodes[i].machine.as_ref().and_then(|m| m.applied()).and_then(|d| match d.state {
            FleetState::HalfOpen { budget, .. } => Some((d.phase, budget)),
            _ => None,
        });
        // The fleet phase the snapshot's generation belongs to (the harness installs every
        // snapshot as the machine emits it).
        let machine_phase =
            self.nodes[i].machine.as_ref().and_then(|m| m.applied()).map_or(DecisionId::NONE, |d| d.phase);
        for _ in 0..self.spec.calls_per_flush {
            let node = &mut self.nodes[i];
            let snapshot = node.hot.admitter.snapshot;
            let record = snapshot.record;
            let Some(probe) = node.hot.admitter.admit() else {
                node.counters.rejected += 1;
                if record {
                    let counts = node.hot.pending.entry(snapshot.generation).or_default();
                    counts.rejected += 1;
                }
                continue;
            };
            // Drawn only when configured, so runs without ignored calls keep their traces.
            let ignored = self.ignored_per_mille > 0 && self.rng.below(1000) < u64::from(self.ignored_per_mille);
            let failed = !ignored && self.rng.below(1000) < u64::from(per_mille);
            let node = &mut self.nodes[i];
            *self.admitted_by_fleet_state.entry(snapshot.fleet).or_default() += 1;
            if probe {
                node.counters.probes_admitted += 1;
                if let Some((phase, budget)) = half_open {
                    self.monitor.probe_admitted(self.now, i, phase, budget);
                }
            }
            let node = &mut self.nodes[i];
            if ignored {
                // Neutral: counted, no part of any run; a probe gives its slot back.
                node.counters.ignored += 1;
                if record {
                    node.hot.pending.entry(snapshot.generation).or_default().ignored += 1;
                }
                if probe {
                    self.stats.probes_returned += 1;
                    node.hot.admitter.give_back();
                    if let Some((phase, _)) = half_open {
                        self.monitor.probe_returned(i, phase);
                    }
                }
                continue;
            }
            if failed {
                node.counters.failed += 1;
            } else {
                node.counters.ok += 1;
            }
            if record {
                node.hot.streak_outcome(snapshot.generation, failed);
                let phase = machine_phase;
                self.monitor.outcome_recorded(i, phase, failed);
                let node = &mut self.nodes[i];
                let counts = node.hot.pending.entry(snapshot.generation).or_default();
                if failed {
                    counts.failure += 1;
                } else {
                    counts.success += 1;
                }
            }
        }
    }

    /// The flush: every generation's outcomes go to the machine with the generation they
    /// were admitted under (a superseded one is the machine's to drop).
    fn drain(&mut self, i: usize) {
        let hot = &mut self.nodes[i].hot;
        let pending = std::mem::take(&mut hot.pending);
        // Each generation's own longest run; the run in progress carries into the next.
        let longest = std::mem::take(&mut hot.longest);
        if hot.streak.1 > 0 {
            hot.longest.insert(hot.streak.0, hot.streak.1);
        }
        for (generation, counts) in pending {
            if !counts.is_empty() {
                self.monitor.drained(i, counts.total());
                let longest_failure_streak = longest.get(&generation).copied().unwrap_or(0);
                self.feed(i, Input::LocalOutcomes(LocalOutcomes { generation, counts, longest_failure_streak }));
            }
        }
    }

    fn check_nodes(&mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(machine) = &node.machine {
                self.monitor.check_node(self.now, i, machine.applied(), &node.hot.admitter.snapshot, &machine.stats());
            }
        }
    }

    // ----- the network and the server ---------------------------------------------------

    /// Puts `packet` in flight, through its node's link faults: a cut or a random loss
    /// drops it (a lost write or write reply becomes a request timeout), a delay makes it
    /// due later (ordered channels never overtake), a duplicate is a second copy.
    fn send(&mut self, packet: Packet) {
        let (node, route, outbound) = match &packet {
            Packet::Publish { from, .. } => (*from, Route::Watch, true),
            Packet::Write { from, .. } => (*from, Route::Reply, true),
            Packet::Deliver { to, route, .. } => (*to, *route, false),
        };
        if route == Route::Local {
            self.enqueue(self.now, packet);
            return;
        }
        let link = self.nodes[node].link;
        if (outbound && link.cut_out) || (!outbound && link.cut_in) {
            self.stats.packets_cut += 1;
            self.lost(packet);
            return;
        }
        if self.roll(link.drop_per_mille) {
            self.stats.packets_dropped += 1;
            self.lost(packet);
            return;
        }
        let ordered = route == Route::Watch;
        let due = self.due_time(node, route, outbound, link.max_delay_ms, ordered);
        let duplicate = ordered && self.roll(link.duplicate_per_mille);
        if duplicate {
            self.stats.packets_duplicated += 1;
            let again = self.due_time(node, route, outbound, link.max_delay_ms, ordered);
            self.enqueue(again, packet.clone());
        }
        self.enqueue(due, packet);
    }

    fn roll(&mut self, per_mille: u16) -> bool {
        per_mille > 0 && self.net_rng.below(1000) < u64::from(per_mille)
    }

    fn due_time(&mut self, node: usize, route: Route, outbound: bool, max_delay_ms: u64, ordered: bool) -> u64 {
        let mut due = self.now;
        if max_delay_ms > 0 {
            due += self.net_rng.below(max_delay_ms + 1);
        }
        if ordered {
            let last = self.fifo_due.entry((node, route, outbound)).or_default();
            due = due.max(*last);
            *last = due;
        }
        if due > self.now {
            self.stats.packets_delayed += 1;
        }
        due
    }

    fn enqueue(&mut self, due: u64, packet: Packet) {
        self.sent += 1;
        self.in_flight.insert((due, self.sent), packet);
    }

    /// A lost write, or a lost reply to one, reaches its writer as a timeout.
    fn lost(&mut self, packet: Packet) {
        let (to, incarnation, id) = match packet {
            Packet::Write { from, incarnation, decision, .. } => (from, incarnation, decision.id),
            Packet::Deliver {
                to,
                incarnation,
                input: Input::DecisionWritten { id } | Input::DecisionRejected { id, .. },
                ..
            } => (to, incarnation, id),
            _ => return,
        };
        self.stats.write_timeouts += 1;
        self.trace_line(to, &format!("write of {id} or its reply lost: times out"));
        let input = Input::DecisionWriteFailed { id };
        let timeout = Packet::Deliver { to, incarnation, input, revision: None, route: Route::Local };
        self.enqueue(self.now + REQUEST_TIMEOUT_MS, timeout);
    }

    fn pump(&mut self) {
        let mut budget = MAX_DELIVERIES_PER_PUMP;
        loop {
            if budget == 0 {
                self.stats.pump_overflows += 1;
                return;
            }
            budget -= 1;
            let due = self.in_flight.first_key_value().is_some_and(|((at, _), _)| *at <= self.now);
            if due {
                if let Some((_, packet)) = self.in_flight.pop_first() {
                    self.deliver(packet);
                }
                continue;
            }
            if !self.feed_consumer() {
                return;
            }
        }
    }

    /// Hands the consumer's next report to the lease holder. False when there is none, or
    /// the holder cannot take it now (it is paused or cut off: the report waits).
    fn feed_consumer(&mut self) -> bool {
        let Some(consumer) = self.consumer else {
            return false;
        };
        let node = &self.nodes[consumer.node];
        if node.machine.is_none() || node.incarnation != consumer.incarnation {
            self.consumer = None;
            return true;
        }
        if node.is_paused(self.now) || node.link.cut_in {
            return false;
        }
        let Some(entry) = self.stream.iter().find(|e| e.seq >= consumer.next_seq) else {
            return false;
        };
        if let Some(stall) = &mut self.feed_stall {
            if entry.at >= stall.from_published {
                let until = *stall.until.get_or_insert(self.now + stall.for_ms);
                if self.now < until {
                    return false;
                }
                self.feed_stall = None;
            }
        }
        if entry.seq > consumer.next_seq {
            self.stats.reports_missed += entry.seq - consumer.next_seq;
        }
        let (seq, at, report) = (entry.seq, entry.at, entry.report.clone());
        self.consumer = Some(Consumer { next_seq: seq + 1, ..consumer });
        self.monitor.report_delivered(consumer.node, consumer.term, &report);
        self.monitor.evidence_delivered(consumer.node, consumer.term, at, &report);
        // Its age by the server's clock, as the transport measures it; more retained
        // reports behind it make it part of a replay.
        let backlog = self.stream.back().is_some_and(|last| last.seq > seq);
        let arrival = Arrival { age_ms: self.now.saturating_sub(at), backlog };
        self.feed(consumer.node, Input::Report { report, arrival });
        true
    }

    fn deliver(&mut self, packet: Packet) {
        match packet {
            Packet::Publish { report, .. } => {
                self.stats.delivered += 1;
                self.stream.push_back(StreamEntry { seq: self.stream_next_seq, at: self.now, report });
                self.stream_next_seq += 1;
                self.prune_stream();
            }
            Packet::Write { from, incarnation, expected, decision } => {
                self.stats.delivered += 1;
                self.write(from, incarnation, expected, decision);
            }
            Packet::Deliver { to, incarnation, input, revision, route } => {
                let node = &mut self.nodes[to];
                if node.machine.is_none() || node.incarnation != incarnation {
                    self.stats.dropped_dead += 1;
                    return;
                }
                if node.is_paused(self.now) {
                    self.stats.packets_held += 1;
                    let until = node.paused_until;
                    self.enqueue(until, Packet::Deliver { to, incarnation, input, revision, route });
                    return;
                }
                self.stats.delivered += 1;
                if let Some(rev) = revision {
                    // A rejection carries the key's revision now, which is lower than one
                    // observed before only if the bucket went back (a rollback): follow it,
                    // or every later write would expect a revision the bucket never reaches.
                    node.observed_rev =
                        if matches!(input, Input::DecisionRejected { .. }) { rev } else { node.observed_rev.max(rev) };
                }
                self.feed(to, input);
            }
        }
    }

    fn write(&mut self, from: usize, incarnation: u64, expected: u64, decision: Decision) {
        let current_rev = self.history.last().map_or(0, |(rev, _)| *rev);
        let fenced = self.planted != Some(PlantedBug::StoreWithoutCas);
        if fenced && expected != current_rev {
            self.stats.cas_conflicts += 1;
            self.trace_line(
                from,
                &format!("store rejects {} (expected rev {expected}, at {current_rev})", decision.id),
            );
            let current = self.history.last().map(|(_, d)| d.clone());
            let input = Input::DecisionRejected { id: decision.id, current };
            let route = Route::Reply;
            self.send(Packet::Deliver { to: from, incarnation, input, revision: Some(current_rev), route });
            return;
        }
        let rev = current_rev + 1;
        self.trace_line(from, &format!("store accepts {} as rev {rev}", decision.id));
        let current = self.history.last().map(|(_, d)| d);
        self.monitor.stored(self.now, current, &decision);
        let input = Input::DecisionWritten { id: decision.id };
        self.send(Packet::Deliver { to: from, incarnation, input, revision: Some(rev), route: Route::Reply });
        for to in 0..self.nodes.len() {
            if self.nodes[to].machine.is_some() {
                let incarnation = self.nodes[to].incarnation;
                let input = Input::DecisionObserved(decision.clone());
                self.send(Packet::Deliver { to, incarnation, input, revision: Some(rev), route: Route::Watch });
            }
        }
        self.history.push((rev, decision));
    }

    // ----- machines and their effects ---------------------------------------------------

    fn node_millis(&self, i: usize) -> Millis {
        Millis(self.nodes[i].clock.read(self.now))
    }

    fn feed(&mut self, i: usize, input: Input) {
        let now = self.node_millis(i);
        let Some(machine) = self.nodes[i].machine.as_mut() else {
            return;
        };
        let effects = machine.step(now, input);
        for effect in effects {
            self.carry_out(i, effect);
        }
    }

    fn carry_out(&mut self, i: usize, effect: Effect) {
        self.trace_line(i, &format!("{effect:?}"));
        let incarnation = self.nodes[i].incarnation;
        match effect {
            Effect::Snapshot(snapshot) => self.nodes[i].hot.admitter.install(snapshot),
            Effect::PublishReport(report) => {
                self.monitor.published(self.now, i, &report);
                self.send(Packet::Publish { from: i, report });
            }
            Effect::WriteDecision(decision) => {
                self.monitor.decided(self.now, i, &decision, self.config.fleet.rules.max_evidence_age_ms);
                let expected = self.nodes[i].observed_rev;
                self.send(Packet::Write { from: i, incarnation, expected, decision });
            }
            Effect::StepDown { term, reason } => self.stepped_down(i, term, reason),
            Effect::Resync => {
                if !self.nodes[i].link.cut_out {
                    self.send_read(i);
                }
            }
            Effect::RunHealthCheck { attempt } => {
                let healthy = self.failure_per_mille(self.now) < UNHEALTHY_PER_MILLE;
                let input = Input::HealthCheckResult { attempt, healthy };
                self.send(Packet::Deliver { to: i, incarnation, input, revision: None, route: Route::Local });
            }
            // Every node is ticked every step.
            Effect::WakeAt(_) => {}
            Effect::ReloadConfig { .. } => {
                // The node reads the bucket: its answer comes back like a health check's.
                let input = Input::Reconfigure(Box::new(self.config.clone()));
                self.send(Packet::Deliver { to: i, incarnation, input, revision: None, route: Route::Local });
            }
            Effect::Event(event) => {
                if let Event::Applied { id, .. } = &event {
                    let applied = self.nodes[i].machine.as_ref().and_then(Machine::applied);
                    self.monitor.applied(self.now, i, applied, *id);
                }
                if let Event::SteppedDown { term, reason } = &event {
                    self.monitor.stepped_down(self.now, i, *term, *reason);
                }
                self.events.push((self.now, i, event));
            }
        }
    }

    fn stepped_down(&mut self, i: usize, term: Term, reason: StepDownReason) {
        if self.consumer.is_some_and(|c| c.node == i && c.term == term) {
            self.consumer = None;
        }
        self.lease_input(i, LeaseInput::SteppedDown { shard: SHARD, term, reason });
    }

    /// Hashes one line of the trace (and keeps it, when recording). `node` is
    /// `usize::MAX` for the fleet itself.
    fn trace_line(&mut self, node: usize, what: &str) {
        let who = if node == usize::MAX { "fleet".to_owned() } else { format!("n{}", node + 1) };
        let line = format!("{} {} {}", self.now, who, what);
        self.trace = fnv1a(self.trace, line.as_bytes());
        self.trace = fnv1a(self.trace, b"\n");
        if let Some(log) = &mut self.trace_log {
            if log.len() < MAX_TRACE_LINES {
                log.push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(super::FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(super::FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(super::FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }
}
