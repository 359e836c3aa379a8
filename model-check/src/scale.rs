//! The scale preset: `nodes` x `breakers` over a simulated NATS without network faults,
//! every node running the real node shell — one [`LeaseKeeper`] over the lease shards, one
//! [`ReportBatcher`] for all its breakers, one watch of the state bucket demultiplexed to
//! its breakers with one resync request per period ([`DecisionDemux`]), the node-wide report feed and command pulls by the shell's [`Tenants`]
//! rule — and every (node, breaker) the real [`Machine`], breakers spread over the shards by
//! the registry's own [`lease_shard`], subscribing as the runtime's actor does (a decision
//! watch from the start, reports and commands from `LeaseGained` to the term's step-down).
//! (The fault simulation, [`crate::sim`], covers faults with one breaker; this covers
//! numbers.)
//!
//! Its properties are the fleet-scale bounds, checked at every step:
//! - **batched**: a node sends at most one report message per flush interval, whatever the
//!   number of its breakers and their outcomes;
//! - **lease-ops**: a node has at most one lease operation per shard in flight, so at most
//!   `shards` per step;
//! - **consumers**: the `JetStream` consumers a node holds (its decision watch, its lease
//!   watch, its report feed and its pulls on the fleet's command durable, each running while
//!   any breaker is registered with it) are at most 3 plus one per lease shard it holds, and
//!   on any one stream at most the number of nodes;
//! - **resync**: a node sends at most one resync request per period, never one per breaker;
//! - **one-decider**: at most one node decides a breaker at any time (no faults here);
//! - **decided**: after the warm-up (three lease TTLs) every breaker has a deciding node;
//! - **opened**: a breaker whose dependency fails opens on every node within
//!   [`OPEN_WITHIN_MS`] of the failure's start.
//!
//! Outcomes reach the decider through the node batches; a report that arrives while its
//! shard has no holder is dropped (the fault simulation covers the stream's replay).
//! [`ScaleBug`] plants the shapes before fleet scale (a message per report, a consumer per
//! breaker) so a test can show the properties catch them. The consumers on a real server are
//! counted by the fleet bench's smoke (`fleet-bench/tests/smoke.rs`).

use std::collections::VecDeque;
use std::time::Duration;

use breaker_actors::machine::{
    Arrival, BreakerName, Decision, Effect, Event, FleetState, Input, LocalOutcomes, Machine, Millis, NodeId,
    NodeParams, OutcomeCounts, Report, StateLabel, Term, ValidConfig,
};
use breaker_actors::registry::lease_shard;
use breaker_actors::shell::{
    BatchLimits, DecisionDemux, LeaseEffect, LeaseInput, LeaseKeeper, ReportBatcher, Source, Tenants, Urgency,
    merge_lease_news,
};
use breaker_actors::transport::LeaseShard;

use crate::admission::Admitter;
use crate::lease_store::LeaseStore;
use crate::sim::{LEASE_MARGIN_MS, LEASE_TTL_MS, OPEN_WITHIN_MS, sim_config};

/// The preset's default size: 50 nodes x 100 breakers over 16 shards.
pub const DEFAULT_NODES: usize = 50;
/// See [`DEFAULT_NODES`].
pub const DEFAULT_BREAKERS: usize = 100;
/// See [`DEFAULT_NODES`].
pub const DEFAULT_SHARDS: u32 = 16;
/// The flush interval of every node (and the simulation's step), ms.
pub const FLUSH_MS: u64 = 20;
/// Each node's resync period, ms (the transport's `decision_resync`).
pub const RESYNC_MS: u64 = 1_000;
/// After this long every breaker must have a decider: three lease TTLs.
pub const WARM_UP_MS: u64 = 3 * LEASE_TTL_MS;
/// The most nodes and breakers a preset may ask for.
pub const MAX_NODES: usize = 128;
/// See [`MAX_NODES`].
pub const MAX_BREAKERS: usize = 10_000;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSpec {
    /// Nodes, each running every breaker.
    pub nodes: usize,
    /// Breakers.
    pub breakers: usize,
    /// Lease shards.
    pub shards: u32,
    /// Simulated time, ms.
    pub duration_ms: u64,
    /// Calls per flush per (node, breaker).
    pub calls_per_flush: u32,
    /// Every `failing_every`-th breaker's dependency fails every call from `fail_from_ms`
    /// on (0: none fails).
    pub failing_every: usize,
    /// When the failing dependencies start failing, ms.
    pub fail_from_ms: u64,
    /// A planted bug, if any.
    pub planted: Option<ScaleBug>,
}

/// A bug planted on purpose in the preset's shell (no release code has the switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleBug {
    /// Every report leaves in a message of its own (no batcher).
    Unbatched,
    /// Every registration holds a consumer of its own (no node-wide consumers).
    PerBreakerConsumers,
    /// Every breaker re-reads its own decision every period (no node-wide resync).
    PerBreakerResync,
}

impl ScaleSpec {
    /// The preset: [`DEFAULT_NODES`] x [`DEFAULT_BREAKERS`], 10 s, every tenth breaker failing
    /// from 6 s.
    pub fn preset() -> Self {
        Self {
            nodes: DEFAULT_NODES,
            breakers: DEFAULT_BREAKERS,
            shards: DEFAULT_SHARDS,
            duration_ms: 10_000,
            calls_per_flush: 2,
            failing_every: 10,
            fail_from_ms: 6_000,
            planted: None,
        }
    }

    fn check(&self) -> Result<(), ScaleError> {
        let bad = |field, problem: &str| Err(ScaleError { field, problem: problem.to_owned() });
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return bad("nodes", "must be 1..=128");
        }
        if !(1..=MAX_BREAKERS).contains(&self.breakers) {
            return bad("breakers", "must be 1..=10000");
        }
        if self.shards == 0 {
            return bad("shards", "must be at least 1");
        }
        if self.duration_ms <= WARM_UP_MS || self.duration_ms > 600_000 {
            return bad("duration_ms", "must be above the warm-up (4.5 s) and at most 600 s");
        }
        if self.failing_every > 0 && self.fail_from_ms + OPEN_WITHIN_MS > self.duration_ms {
            return bad("fail_from_ms", "the failure must start at least OPEN_WITHIN_MS before the end");
        }
        Ok(())
    }
}

/// A spec the preset cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for ScaleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scale spec `{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for ScaleError {}

/// What a run measured, and every property violation (none expected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleReport {
    /// Report messages sent, all nodes.
    pub messages: u64,
    /// Reports carried in them.
    pub reports: u64,
    /// The most report messages one node sent within one flush interval.
    pub max_messages_per_flush: u64,
    /// The most lease operations one node had in flight at once.
    pub max_lease_ops_in_flight: usize,
    /// The most consumers one node's shell held.
    pub max_consumers_per_node: usize,
    /// The most consumers on one stream.
    pub max_consumers_per_stream: usize,
    /// Resync requests, all nodes.
    pub resyncs: u64,
    /// Lease operations sent, all nodes.
    pub lease_ops: u64,
    /// Decisions the bucket accepted.
    pub decisions: u64,
    /// Reports dropped because their shard had no holder.
    pub undelivered: u64,
    /// Breakers with a deciding node at the end.
    pub decided_at_end: usize,
    /// Breakers whose dependency failed and that opened on every node.
    pub opened: usize,
    /// Breakers whose dependency failed.
    pub failing: usize,
    /// Property violations: `(at ms, property, detail)`.
    pub violations: Vec<(u64, &'static str, String)>,
}

struct Cell {
    machine: Machine,
    admitter: Admitter,
    /// The revision of the last bucket value fed to this machine.
    observed: u64,
    /// Lease news not fed yet (merged).
    untold: Option<Input>,
    /// The first time this node enforced an open state for a failing breaker.
    opened_at: Option<u64>,
}

struct ScaleNode {
    keeper: LeaseKeeper,
    batcher: ReportBatcher,
    cells: Vec<Cell>,
    last_message_at: Option<u64>,
    messages_this_flush: u64,
    /// Some cell holds lease news.
    untold: bool,
    /// The node's one decision watch (registrations: breaker indexes) and resync.
    watch: DecisionDemux<usize>,
    /// When its last resync request went out.
    last_resync: Option<u64>,
    /// Its report feed and its command pulls.
    reports: Tenants<Term>,
    commands: Tenants<Term>,
}

/// A delivery waiting in the simulated server.
enum Delivery {
    /// `input` for (node, breaker), with the bucket revision it carries.
    Input { node: usize, breaker: usize, input: Input, revision: Option<u64> },
    /// A write by (node, breaker) on the revision it observed.
    Write { node: usize, breaker: usize, expected: u64, decision: Decision },
}

/// The running preset.
struct Scale {
    spec: ScaleSpec,
    now: u64,
    names: Vec<BreakerName>,
    index: std::collections::HashMap<BreakerName, usize>,
    shard_of: Vec<LeaseShard>,
    nodes: Vec<ScaleNode>,
    leases: LeaseStore,
    /// Per breaker: the bucket's revision and value.
    bucket: Vec<(u64, Option<Decision>)>,
    bucket_rev: u64,
    queue: VecDeque<Delivery>,
    report: ScaleReport,
}

/// Runs `spec`; see the module documentation.
pub fn run(spec: &ScaleSpec) -> Result<ScaleReport, ScaleError> {
    spec.check()?;
    let mut scale = Scale::new(spec)?;
    while scale.now < spec.duration_ms {
        scale.step();
    }
    scale.finish();
    Ok(scale.report)
}

impl Scale {
    fn new(spec: &ScaleSpec) -> Result<Self, ScaleError> {
        let config: ValidConfig =
            sim_config().validate().map_err(|e| ScaleError { field: "config", problem: e.to_string() })?;
        let names: Vec<BreakerName> = (0..spec.breakers)
            .map(|b| BreakerName::new(&format!("dep-{b}")))
            .collect::<Result<_, _>>()
            .map_err(|e| ScaleError { field: "breakers", problem: e.to_string() })?;
        let shard_of: Vec<LeaseShard> = names.iter().map(|n| lease_shard(n, spec.shards)).collect();
        let limits = BatchLimits { interval_ms: FLUSH_MS, ..BatchLimits::default() };
        let mut nodes = Vec::with_capacity(spec.nodes);
        for i in 0..spec.nodes {
            let node = NodeId::new(&format!("n{}", i + 1))
                .map_err(|e| ScaleError { field: "nodes", problem: e.to_string() })?;
            let mut keeper = LeaseKeeper::new(Duration::from_millis(LEASE_TTL_MS));
            let cells = names
                .iter()
                .map(|name| {
                    let params = NodeParams {
                        breaker: name.clone(),
                        node: node.clone(),
                        incarnation: 1,
                        lease_margin_ms: LEASE_MARGIN_MS,
                    };
                    let machine = Machine::with_valid(params, config.clone());
                    let admitter = Admitter::new(machine.snapshot());
                    Cell { machine, admitter, observed: 0, untold: None, opened_at: None }
                })
                .collect();
            for shard in &shard_of {
                keeper.handle(Millis(0), LeaseInput::Join { shard: *shard, restarted: false });
            }
            nodes.push(ScaleNode {
                keeper,
                batcher: ReportBatcher::new(limits),
                cells,
                last_message_at: None,
                messages_this_flush: 0,
                untold: false,
                watch: DecisionDemux::new(RESYNC_MS, MAX_BREAKERS),
                last_resync: None,
                reports: Tenants::default(),
                commands: Tenants::default(),
            });
        }
        let mut scale = Self {
            spec: spec.clone(),
            now: 0,
            bucket: vec![(0, None); names.len()],
            index: names.iter().cloned().enumerate().map(|(b, n)| (n, b)).collect(),
            names,
            shard_of,
            nodes,
            leases: LeaseStore::new(LEASE_TTL_MS),
            bucket_rev: 0,
            queue: VecDeque::new(),
            report: ScaleReport::default(),
        };
        for i in 0..scale.nodes.len() {
            for b in 0..scale.names.len() {
                let name = scale.names[b].clone();
                let node = &mut scale.nodes[i];
                if b == 0 {
                    node.watch.handle_watch_started();
                    // The watch's first pass: nothing stored yet (and nobody registered).
                    let offers = node.watch.mark_complete();
                    debug_assert!(offers.is_empty());
                }
                let known = node.watch.register(&name, b);
                let input = known.and_then(|r| r.decision).map_or(Input::NoDecisionYet, Input::DecisionObserved);
                scale.feed(i, b, input);
            }
        }
        scale.pump();
        Ok(scale)
    }

    fn violate(&mut self, property: &'static str, detail: String) {
        if self.report.violations.len() < 64 {
            self.report.violations.push((self.now, property, detail));
        }
    }

    fn failing(&self, b: usize) -> bool {
        self.spec.failing_every > 0 && b % self.spec.failing_every == 0
    }

    fn step(&mut self) {
        self.now += FLUSH_MS;
        for node in &mut self.nodes {
            node.messages_this_flush = 0;
        }
        self.run_leases();
        for i in 0..self.nodes.len() {
            for b in 0..self.names.len() {
                self.feed(i, b, Input::Tick);
            }
        }
        self.pump();
        for i in 0..self.nodes.len() {
            for b in 0..self.names.len() {
                self.calls(i, b);
            }
        }
        self.pump();
        for i in 0..self.nodes.len() {
            self.transmit(i);
        }
        self.pump();
        self.resyncs();
        self.check();
    }

    // ----- leases ----------------------------------------------------------------------

    fn run_leases(&mut self) {
        if self.leases.expire(self.now) {
            for i in 0..self.nodes.len() {
                self.lease_input(i, LeaseInput::Released);
            }
        }
        for i in 0..self.nodes.len() {
            self.lease_input(i, LeaseInput::Tick);
        }
    }

    fn lease_input(&mut self, i: usize, input: LeaseInput) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            self.nodes[i].keeper.handle(Millis(self.now), input);
            let in_flight = self.nodes[i].keeper.in_flight();
            self.report.max_lease_ops_in_flight = self.report.max_lease_ops_in_flight.max(in_flight);
            if in_flight > self.spec.shards as usize {
                self.violate("lease-ops", format!("node {i} has {in_flight} lease operations in flight"));
            }
            while let Some(effect) = self.nodes[i].keeper.poll_effect() {
                if let Some(answer) = self.lease_effect(i, effect) {
                    inputs.push_back(answer);
                }
            }
        }
        self.tell(i);
    }

    fn lease_effect(&mut self, i: usize, effect: LeaseEffect) -> Option<LeaseInput> {
        match effect {
            // Every breaker joins at the start, before any lease is held, so a greeting (news
            // for a breaker joining a held shard) never happens here; it would reach the
            // shard's breakers that already know, harmlessly.
            LeaseEffect::Tell { shard, news } | LeaseEffect::Greet { shard, news } => {
                for b in 0..self.names.len() {
                    if self.shard_of[b] == shard {
                        let cell = &mut self.nodes[i].cells[b];
                        cell.untold = Some(merge_lease_news(cell.untold.take(), news.clone()));
                        self.nodes[i].untold = true;
                    }
                }
                None
            }
            LeaseEffect::Adopt { .. } => None,
            LeaseEffect::Release { shard, revision } => {
                self.report.lease_ops += 1;
                if self.leases.release(shard, revision) {
                    for j in 0..self.nodes.len() {
                        self.nodes[j].keeper.handle(Millis(self.now), LeaseInput::Released);
                    }
                }
                None
            }
            LeaseEffect::Renew { shard, revision, .. } => {
                self.report.lease_ops += 1;
                Some(LeaseInput::Renewed { shard, answer: self.leases.renew(shard, revision, self.now) })
            }
            LeaseEffect::Acquire { shard, floor, over, .. } => {
                self.report.lease_ops += 1;
                // The newest term among the decisions of the shard's breakers this node saw.
                let seen = (0..self.names.len())
                    .filter(|&b| self.shard_of[b] == shard)
                    .map(|b| self.nodes[i].cells[b].machine.applied_id().term)
                    .fold(floor, std::cmp::Ord::max);
                let answer = self.leases.acquire(shard, i, 1, seen, over, self.now);
                Some(LeaseInput::Acquired { shard, answer: Some(answer) })
            }
        }
    }

    /// Feeds every bootstrapped machine of node `i` the lease news its shell holds.
    fn tell(&mut self, i: usize) {
        if !std::mem::take(&mut self.nodes[i].untold) {
            return;
        }
        for b in 0..self.names.len() {
            let cell = &mut self.nodes[i].cells[b];
            if cell.machine.is_bootstrapped() {
                if let Some(news) = cell.untold.take() {
                    self.feed(i, b, news);
                }
            } else if cell.untold.is_some() {
                self.nodes[i].untold = true;
            }
        }
    }

    // ----- machines --------------------------------------------------------------------

    fn feed(&mut self, i: usize, b: usize, input: Input) {
        let effects = self.nodes[i].cells[b].machine.step(Millis(self.now), input);
        for effect in effects {
            match effect {
                Effect::Snapshot(snapshot) => self.nodes[i].cells[b].admitter.install(snapshot),
                Effect::PublishReport(report) => self.publish(i, b, report),
                Effect::WriteDecision(decision) => {
                    let expected = self.nodes[i].cells[b].observed;
                    self.queue.push_back(Delivery::Write { node: i, breaker: b, expected, decision });
                }
                Effect::StepDown { term, reason } => {
                    let name = &self.names[b];
                    let node = &mut self.nodes[i];
                    if node.reports.get(name) == Some(&term) {
                        node.reports.leave(name);
                        node.commands.leave(name);
                    }
                    let shard = self.shard_of[b];
                    self.lease_input(i, LeaseInput::SteppedDown { shard, term, reason });
                }
                Effect::Resync => {
                    // Answered from the node's watch (complete: no faults here).
                    if let Some(read) = self.nodes[i].watch.known(&self.names[b]) {
                        let input = read.decision.map_or(Input::NoDecisionYet, Input::DecisionObserved);
                        self.queue.push_back(Delivery::Input {
                            node: i,
                            breaker: b,
                            input,
                            revision: Some(read.revision),
                        });
                    }
                }
                Effect::RunHealthCheck { attempt } => {
                    let healthy = !(self.failing(b) && self.now >= self.spec.fail_from_ms);
                    let input = Input::HealthCheckResult { attempt, healthy };
                    self.queue.push_back(Delivery::Input { node: i, breaker: b, input, revision: None });
                }
                Effect::Event(Event::LeaseGained { term }) => {
                    // As the actor: the old term's registrations give way to the new ones.
                    let name = &self.names[b];
                    let node = &mut self.nodes[i];
                    node.reports.join(name, term);
                    node.commands.join(name, term);
                }
                // Configs never change in the scale preset.
                Effect::WakeAt(_) | Effect::Event(_) | Effect::ReloadConfig { .. } => {}
            }
        }
    }

    fn publish(&mut self, i: usize, b: usize, report: Report) {
        if self.spec.planted == Some(ScaleBug::Unbatched) {
            self.note_message(i);
            self.deliver_report(b, report);
            return;
        }
        let closed = self.nodes[i].cells[b].machine.applied().is_none_or(|d| matches!(d.state, FleetState::Closed));
        let urgency = Urgency::of(&report, closed);
        self.nodes[i].batcher.handle_report(Millis(self.now), report, urgency);
    }

    fn calls(&mut self, i: usize, b: usize) {
        let fails = self.failing(b) && self.now >= self.spec.fail_from_ms;
        let cell = &mut self.nodes[i].cells[b];
        let generation = cell.admitter.snapshot.generation;
        let record = cell.admitter.snapshot.record;
        let mut counts = OutcomeCounts::default();
        let mut streak = 0;
        for _ in 0..self.spec.calls_per_flush {
            match cell.admitter.admit() {
                None => counts.rejected += 1,
                Some(_) if fails => {
                    counts.failure += 1;
                    streak += 1;
                }
                Some(_) => {
                    counts.success += 1;
                    streak = 0;
                }
            }
        }
        if fails && cell.opened_at.is_none() && cell.admitter.snapshot.state == StateLabel::Open {
            cell.opened_at = Some(self.now);
        }
        if !record {
            counts.rejected = 0;
        }
        if !counts.is_empty() {
            let longest_failure_streak = if counts.failure > 0 { streak.max(1) } else { 0 };
            self.feed(i, b, Input::LocalOutcomes(LocalOutcomes { generation, counts, longest_failure_streak }));
        }
    }

    // ----- the server ------------------------------------------------------------------

    fn note_message(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.messages_this_flush += 1;
        let messages = node.messages_this_flush;
        let last = node.last_message_at.replace(self.now);
        self.report.messages += 1;
        self.report.max_messages_per_flush = self.report.max_messages_per_flush.max(messages);
        if messages > 1 || last.is_some_and(|at| self.now - at < FLUSH_MS) {
            self.violate("batched", format!("node {i} sent {messages} report messages within one flush interval"));
        }
    }

    /// Node `i`'s batcher sends what it may now; the server acknowledges at once.
    fn transmit(&mut self, i: usize) {
        while let Some(batch) = self.nodes[i].batcher.poll_transmit(Millis(self.now)) {
            self.note_message(i);
            self.nodes[i].batcher.handle_acked(batch.seq);
            for report in batch.reports {
                if let Some(&b) = self.index.get(&report.breaker) {
                    self.deliver_report(b, report);
                }
            }
        }
    }

    /// The outcome stream's consumer belongs to the shard's lease holder.
    fn deliver_report(&mut self, b: usize, report: Report) {
        self.report.reports += 1;
        match self.leases.get(self.shard_of[b], self.now) {
            Some(lease) => {
                let input = Input::Report { report, arrival: Arrival { age_ms: 0, backlog: false } };
                self.queue.push_back(Delivery::Input { node: lease.holder, breaker: b, input, revision: None });
            }
            None => self.report.undelivered += 1,
        }
    }

    fn pump(&mut self) {
        while let Some(delivery) = self.queue.pop_front() {
            match delivery {
                Delivery::Input { node, breaker, input, revision } => {
                    if let Some(rev) = revision {
                        let cell = &mut self.nodes[node].cells[breaker];
                        cell.observed = cell.observed.max(rev);
                    }
                    self.feed(node, breaker, input);
                }
                Delivery::Write { node, breaker, expected, decision } => self.write(node, breaker, expected, decision),
            }
            self.tell_all();
        }
    }

    fn tell_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].untold {
                self.tell(i);
            }
        }
    }

    fn write(&mut self, node: usize, b: usize, expected: u64, decision: Decision) {
        let (current_rev, current) = self.bucket[b].clone();
        if expected != current_rev {
            let input = Input::DecisionRejected { id: decision.id, current };
            self.queue.push_back(Delivery::Input { node, breaker: b, input, revision: Some(current_rev) });
            return;
        }
        self.bucket_rev += 1;
        let rev = self.bucket_rev;
        self.report.decisions += 1;
        let input = Input::DecisionWritten { id: decision.id };
        self.queue.push_back(Delivery::Input { node, breaker: b, input, revision: Some(rev) });
        // Every node's one watch delivers it to its breaker there.
        for to in 0..self.nodes.len() {
            let offer = self.nodes[to].watch.handle_entry(Source::Watch, &self.names[b], rev, Some(decision.clone()));
            if let Some((breaker, read)) = offer {
                let input = read.decision.map_or(Input::NoDecisionYet, Input::DecisionObserved);
                self.queue.push_back(Delivery::Input { node: to, breaker, input, revision: Some(read.revision) });
            }
        }
        self.bucket[b] = (rev, Some(decision));
    }

    /// Every node's resync requests: the demux's, one per period (here the watch always
    /// delivered everything, so nothing is new). With [`ScaleBug::PerBreakerResync`], one
    /// per breaker.
    fn resyncs(&mut self) {
        for i in 0..self.nodes.len() {
            let now = Millis(self.now);
            let requests = if self.spec.planted == Some(ScaleBug::PerBreakerResync) {
                if self.now % RESYNC_MS == 0 { self.names.len() } else { 0 }
            } else {
                let node = &mut self.nodes[i];
                let sent = node.watch.poll_resync(now).is_some();
                if sent {
                    // Every breaker registered once the cache was complete: none is pending.
                    let offers = node.watch.handle_resync_done(now, true);
                    debug_assert!(offers.is_empty());
                }
                usize::from(sent)
            };
            if requests == 0 {
                continue;
            }
            self.report.resyncs += requests as u64;
            let last = self.nodes[i].last_resync.replace(self.now);
            if requests > 1 || last.is_some_and(|at| self.now - at < RESYNC_MS) {
                self.violate("resync", format!("node {i} sent {requests} resync requests within one period"));
            }
        }
    }

    // ----- properties ------------------------------------------------------------------

    /// The consumers node `i` holds, by stream: `[state bucket, lease bucket, outcomes,
    /// control]` — one per node-wide consumer running (with [`ScaleBug::PerBreakerConsumers`],
    /// one per registration); the lease watch always.
    fn consumers(&self, i: usize) -> [usize; 4] {
        let node = &self.nodes[i];
        let per_breaker = self.spec.planted == Some(ScaleBug::PerBreakerConsumers);
        let count = |len: usize, running: bool| if per_breaker { len } else { usize::from(running) };
        [
            count(node.watch.registered(), true),
            1,
            count(node.reports.len(), node.reports.is_running()),
            count(node.commands.len(), node.commands.is_running()),
        ]
    }

    fn check(&mut self) {
        let mut streams = [0usize; 4];
        for i in 0..self.nodes.len() {
            let held = self.nodes[i].keeper.held().count();
            let consumers = self.consumers(i);
            let total: usize = consumers.iter().sum();
            for (stream, n) in streams.iter_mut().zip(consumers) {
                *stream += n;
            }
            self.report.max_consumers_per_node = self.report.max_consumers_per_node.max(total);
            if total > 3 + held {
                self.violate("consumers", format!("node {i} holds {total} consumers with {held} shards"));
            }
        }
        // The fleet's command durable is one consumer whoever pulls from it (before: one
        // durable per breaker).
        if self.spec.planted != Some(ScaleBug::PerBreakerConsumers) {
            streams[3] = streams[3].min(1);
        }
        let busiest = streams.iter().copied().max().unwrap_or(0);
        self.report.max_consumers_per_stream = self.report.max_consumers_per_stream.max(busiest);
        if busiest > self.nodes.len() {
            self.violate("consumers", format!("{busiest} consumers on one stream with {} nodes", self.nodes.len()));
        }
        for b in 0..self.names.len() {
            let now = Millis(self.now);
            let deciding =
                (0..self.nodes.len()).filter(|&i| self.nodes[i].cells[b].machine.is_deciding_at(now)).count();
            if deciding > 1 {
                self.violate("one-decider", format!("{} has {deciding} deciding nodes", self.names[b]));
            }
            if deciding == 0 && self.now >= WARM_UP_MS {
                self.violate("decided", format!("{} has no deciding node", self.names[b]));
            }
            if self.failing(b) && self.now == self.spec.fail_from_ms + OPEN_WITHIN_MS {
                let late = (0..self.nodes.len()).filter(|&i| self.nodes[i].cells[b].opened_at.is_none()).count();
                if late > 0 {
                    self.violate(
                        "opened",
                        format!("{} not open on {late} nodes {OPEN_WITHIN_MS} ms after failing", self.names[b]),
                    );
                }
            }
        }
    }

    fn finish(&mut self) {
        let now = Millis(self.now);
        self.report.decided_at_end = (0..self.names.len())
            .filter(|&b| self.nodes.iter().any(|n| n.cells[b].machine.is_deciding_at(now)))
            .count();
        self.report.failing = (0..self.names.len()).filter(|&b| self.failing(b)).count();
        self.report.opened = (0..self.names.len())
            .filter(|&b| self.failing(b) && self.nodes.iter().all(|n| n.cells[b].opened_at.is_some()))
            .count();
    }
}
