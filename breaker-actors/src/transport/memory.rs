//! The in-process transport: one simulated broker ([`MemoryBroker`]) shared by any number
//! of nodes in one process, each connected through its own [`MemoryTransport`], with the
//! semantics the NATS transport has:
//! - a per-breaker report log with limits retention (`max_age`, `max_count`), consumed from
//!   the oldest retained report (the replay of a new decider);
//! - a decision bucket with bucket-wide revisions, CAS writes, a bounded history and
//!   watchers that see the current value then changes;
//! - lease keys with create / CAS update / delete-with-expected-revision and TTL expiry on
//!   tokio time (so `tokio::time::pause()` drives it); terms from
//!   [`next_term`] of the bucket revision, a per-shard term
//!   record and the acquirer's known term; a value that stood still for a TTL may be
//!   replaced ([`LeaseRequest::over`]); expiry is noticed lazily and announced to no one
//!   (like a bucket `max_age`), a delete is announced to lease watchers;
//! - store faults: [`MemoryBroker::wipe_leases`] (the lease bucket rebuilt) and
//!   [`MemoryBroker::put_garbage_lease`] (a value that is no node's, without a TTL);
//! - a config bucket holding one config per breaker;
//! - a per-breaker control stream of operator commands with a shared durable work-queue
//!   consumer: a command waits (at most `command_max_count` per breaker, the oldest dropped
//!   first, each for at most `command_max_age`) until a decider consumes it, and is removed
//!   once it is in that decider's inbox, so it reaches one decider once (a consumer stopped
//!   before its delivery completes puts the command back, like an unacknowledged message);
//! - faults: [`MemoryBroker::disconnect`] makes every operation of a node fail and its
//!   subscriptions go quiet until [`MemoryBroker::reconnect`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{
    BoxFuture, ConfigWrite, ConnState, DecisionRead, Describer, Description, FleetConfig, Inbox, LeaseAcquire,
    LeaseRequest, LeaseShard, Revision, Subscription, Transport, TransportError, WriteOutcome,
};
use crate::machine::{
    Arrival, BreakerConfig, BreakerName, Command, ConfigRecord, Decision, Input, NodeId, Report, Term, next_term,
};

/// Limits of the simulated broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    /// How long a report is kept (the stream's `max_age`).
    pub report_max_age: Duration,
    /// The most reports kept per breaker (`max_msgs_per_subject`).
    pub report_max_count: usize,
    /// Decisions kept per breaker in the bucket's history.
    pub history: usize,
    /// Reports handed to a consumer per pull.
    pub pull_batch: usize,
    /// How long an unconsumed command is kept (the control stream's `max_age`).
    pub command_max_age: Duration,
    /// The most unconsumed commands kept per breaker (the oldest are dropped first).
    pub command_max_count: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            report_max_age: Duration::from_secs(3),
            report_max_count: 16_384,
            history: 64,
            pull_batch: 64,
            command_max_age: Duration::from_secs(60),
            command_max_count: 64,
        }
    }
}

#[derive(Debug)]
struct ReportLog {
    entries: VecDeque<(u64, Instant, Report)>,
    next_seq: u64,
    /// The last sequence published: consumers wait on its changes.
    published: watch::Sender<u64>,
    pruned: u64,
}

impl ReportLog {
    fn new() -> Self {
        Self { entries: VecDeque::new(), next_seq: 1, published: watch::Sender::new(0), pruned: 0 }
    }

    fn prune(&mut self, settings: &MemorySettings, now: Instant) {
        while let Some((_, at, _)) = self.entries.front() {
            let too_old = now.saturating_duration_since(*at) >= settings.report_max_age;
            if !too_old && self.entries.len() <= settings.report_max_count {
                break;
            }
            self.entries.pop_front();
            self.pruned += 1;
        }
    }
}

/// A breaker's control stream: the commands no decider has consumed yet.
#[derive(Debug)]
struct ControlLog {
    pending: VecDeque<(Instant, Command)>,
    /// Bumped on every publish (or put-back): consumers wait on its changes.
    published: watch::Sender<u64>,
    dropped: u64,
}

impl ControlLog {
    fn new() -> Self {
        Self { pending: VecDeque::new(), published: watch::Sender::new(0), dropped: 0 }
    }

    fn prune(&mut self, settings: &MemorySettings, now: Instant) {
        while let Some((at, _)) = self.pending.front() {
            let too_old = now.saturating_duration_since(*at) >= settings.command_max_age;
            if !too_old && self.pending.len() <= settings.command_max_count {
                break;
            }
            self.pending.pop_front();
            self.dropped += 1;
        }
    }
}

/// A command taken off a control stream and not yet in the consumer's inbox: dropped
/// before it is acknowledged (the consumer stopped), it goes back to the head of the stream.
struct Claimed {
    broker: MemoryBroker,
    breaker: BreakerName,
    entry: Option<(Instant, Command)>,
}

impl Claimed {
    fn ack(mut self) {
        self.entry = None;
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let mut state = self.broker.state();
            let log = state.control(&self.breaker);
            log.pending.push_front(entry);
            log.published.send_modify(|n| *n += 1);
        }
    }
}

#[derive(Debug)]
struct KvKey {
    history: VecDeque<(Revision, Decision)>,
    watch: watch::Sender<DecisionRead>,
}

impl KvKey {
    fn new() -> Self {
        Self { history: VecDeque::new(), watch: watch::Sender::new(DecisionRead { decision: None, revision: 0 }) }
    }

    fn current(&self) -> DecisionRead {
        match self.history.back() {
            Some((revision, d)) => DecisionRead { decision: Some(d.clone()), revision: *revision },
            None => DecisionRead { decision: None, revision: 0 },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseEntry {
    /// `None`: a value that is no node's (see [`MemoryBroker::put_garbage_lease`]).
    holder: Option<NodeId>,
    term: Term,
    revision: Revision,
    /// `None`: the value never expires.
    expires_at: Option<Instant>,
    ttl: Option<Duration>,
}

#[derive(Debug, Default)]
struct BrokerState {
    logs: HashMap<BreakerName, ReportLog>,
    control: HashMap<BreakerName, ControlLog>,
    kv: HashMap<BreakerName, KvKey>,
    kv_rev: Revision,
    leases: BTreeMap<LeaseShard, LeaseEntry>,
    /// The term record of each shard: the last term granted.
    lease_terms: BTreeMap<LeaseShard, Term>,
    lease_rev: Revision,
    lease_watchers: Vec<Arc<Notify>>,
    configs: BTreeMap<BreakerName, FleetConfig>,
    /// The config bucket's revision counter.
    config_rev: Revision,
    nodes: HashMap<NodeId, watch::Sender<ConnState>>,
    /// Each node's answerer of describe requests, with the serial of its registration.
    describers: BTreeMap<NodeId, (u64, DescriberSlot)>,
    describer_serial: u64,
}

/// A node's [`Describer`] (a closure, so the state's `Debug` shows only that it is there).
#[derive(Clone)]
struct DescriberSlot(Describer);

impl std::fmt::Debug for DescriberSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Describer")
    }
}

impl BrokerState {
    fn log(&mut self, breaker: &BreakerName) -> &mut ReportLog {
        self.logs.entry(breaker.clone()).or_insert_with(ReportLog::new)
    }

    fn control(&mut self, breaker: &BreakerName) -> &mut ControlLog {
        self.control.entry(breaker.clone()).or_insert_with(ControlLog::new)
    }

    fn key(&mut self, breaker: &BreakerName) -> &mut KvKey {
        self.kv.entry(breaker.clone()).or_insert_with(KvKey::new)
    }

    fn expire_leases(&mut self, now: Instant) {
        self.leases.retain(|_, l| l.expires_at.is_none_or(|at| at > now));
    }
}

#[derive(Debug, Default)]
struct BrokerInner {
    settings: MemorySettings,
    state: Mutex<BrokerState>,
}

/// The simulated broker: clone it to share it between nodes.
#[derive(Debug, Clone, Default)]
pub struct MemoryBroker(Arc<BrokerInner>);

/// A lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Who holds it.
    pub holder: NodeId,
    /// Its current revision.
    pub revision: Revision,
    /// Its term.
    pub term: Term,
}

impl MemoryBroker {
    /// A broker with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker with these limits.
    pub fn with_settings(settings: MemorySettings) -> Self {
        Self(Arc::new(BrokerInner { settings, state: Mutex::default() }))
    }

    fn state(&self) -> MutexGuard<'_, BrokerState> {
        // Every critical section leaves the state consistent before anything can panic.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects `node` (connected at once); a node that connected before gets its old
    /// connection state back (it stays cut off if it was).
    pub fn transport(&self, node: NodeId) -> Arc<MemoryTransport> {
        let conn = self
            .state()
            .nodes
            .entry(node.clone())
            .or_insert_with(|| watch::Sender::new(ConnState { connected: true, losses: 0 }))
            .subscribe();
        Arc::new(MemoryTransport { broker: self.clone(), node, conn })
    }

    /// Cuts `node` off: its operations fail, its subscriptions go quiet, its actors hear
    /// `ConnectionLost`.
    pub fn disconnect(&self, node: &NodeId) {
        if let Some(c) = self.state().nodes.get(node) {
            c.send_modify(|s| {
                if s.connected {
                    s.connected = false;
                    s.losses += 1;
                }
            });
        }
    }

    /// Lets `node` back in.
    pub fn reconnect(&self, node: &NodeId) {
        if let Some(c) = self.state().nodes.get(node) {
            c.send_modify(|s| s.connected = true);
        }
    }

    /// The decision `breaker` has now.
    pub fn decision(&self, breaker: &BreakerName) -> Option<Decision> {
        self.state().kv.get(breaker).and_then(|k| k.current().decision)
    }

    /// The last decisions of `breaker` (at most `MemorySettings::history`), oldest first.
    pub fn history(&self, breaker: &BreakerName) -> Vec<(Revision, Decision)> {
        self.state().kv.get(breaker).map(|k| k.history.iter().cloned().collect()).unwrap_or_default()
    }

    /// The unexpired lease of `shard`.
    pub fn lease(&self, shard: LeaseShard) -> Option<LeaseView> {
        let mut state = self.state();
        state.expire_leases(Instant::now());
        let lease = state.leases.get(&shard)?;
        Some(LeaseView { holder: lease.holder.clone()?, revision: lease.revision, term: lease.term })
    }

    /// Deletes and recreates the lease bucket (an operator's mistake, a restore from
    /// backup): no leases, no term records, revisions from 1 again. Decisions stay.
    pub fn wipe_leases(&self) {
        let mut state = self.state();
        state.leases.clear();
        state.lease_terms.clear();
        state.lease_rev = 0;
    }

    /// Puts a value that is no node's lease into `shard`'s key, without a TTL (what a hand
    /// edit of the bucket can leave): it never expires by itself.
    pub fn put_garbage_lease(&self, shard: LeaseShard) {
        let mut state = self.state();
        state.lease_rev += 1;
        let revision = state.lease_rev;
        let entry = LeaseEntry { holder: None, term: Term(0), revision, expires_at: None, ttl: None };
        state.leases.insert(shard, entry);
    }

    /// Asks every connected node that serves describe requests about `breaker`, as an
    /// operator's request does: the answers of the nodes that decide it (one, normally).
    pub async fn describe(&self, breaker: &BreakerName) -> Vec<Description> {
        let asked: Vec<Describer> = {
            let state = self.state();
            state
                .describers
                .iter()
                .filter(|(node, _)| state.nodes.get(*node).is_some_and(|c| c.borrow().connected))
                .map(|(_, (_, slot))| slot.0.clone())
                .collect()
        };
        let mut answers = Vec::new();
        for describer in asked {
            answers.extend(describer(breaker.clone()).await);
        }
        answers
    }

    /// Commands for `breaker` that no decider has consumed yet.
    pub fn pending_commands(&self, breaker: &BreakerName) -> usize {
        let settings = self.0.settings;
        let mut state = self.state();
        let log = state.control(breaker);
        log.prune(&settings, Instant::now());
        log.pending.len()
    }

    /// Commands for `breaker` dropped unconsumed (too old, or over the count).
    pub fn dropped_commands(&self, breaker: &BreakerName) -> u64 {
        let settings = self.0.settings;
        let mut state = self.state();
        let log = state.control(breaker);
        log.prune(&settings, Instant::now());
        log.dropped
    }

    /// Reports of `breaker` retained now.
    pub fn retained_reports(&self, breaker: &BreakerName) -> usize {
        let settings = self.0.settings;
        let mut state = self.state();
        let log = state.log(breaker);
        log.prune(&settings, Instant::now());
        log.entries.len()
    }
}

/// One node's connection to a [`MemoryBroker`].
#[derive(Debug)]
pub struct MemoryTransport {
    broker: MemoryBroker,
    node: NodeId,
    conn: watch::Receiver<ConnState>,
}

impl MemoryTransport {
    /// The broker it is connected to.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    fn check(&self) -> Result<(), TransportError> {
        if self.conn.borrow().connected { Ok(()) } else { Err(TransportError::Disconnected) }
    }
}

/// Waits until `conn` says connected. `false` if the broker is gone.
async fn until_connected(conn: &mut watch::Receiver<ConnState>) -> bool {
    conn.wait_for(|c| c.connected).await.is_ok()
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

impl Transport for MemoryTransport {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn connection(&self) -> watch::Receiver<ConnState> {
        self.conn.clone()
    }

    fn publish_report(&self, report: Report) -> BoxFuture<Result<(), TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let settings = self.broker.0.settings;
        let mut state = self.broker.state();
        let log = state.log(&report.breaker);
        let now = Instant::now();
        let seq = log.next_seq;
        log.next_seq += 1;
        log.entries.push_back((seq, now, report));
        log.prune(&settings, now);
        log.published.send_replace(seq);
        ready(Ok(()))
    }

    fn consume_reports(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let broker = self.broker.clone();
        let breaker = breaker.clone();
        let mut conn = self.conn.clone();
        let mut published = broker.state().log(&breaker).published.subscribe();
        let task = tokio::spawn(async move {
            let settings = broker.0.settings;
            // Start at the oldest report retained: the replay of the recent window.
            let mut next = 0;
            loop {
                if !until_connected(&mut conn).await {
                    return;
                }
                published.borrow_and_update();
                let (batch, newest): (Vec<(u64, Instant, Report)>, u64) = {
                    let mut state = broker.state();
                    let log = state.log(&breaker);
                    log.prune(&settings, Instant::now());
                    let newest = log.entries.back().map_or(0, |(seq, _, _)| *seq);
                    let batch = log
                        .entries
                        .iter()
                        .filter(|(seq, _, _)| *seq >= next)
                        .take(settings.pull_batch)
                        .map(|(seq, at, r)| (*seq, *at, r.clone()))
                        .collect();
                    (batch, newest)
                };
                if batch.is_empty() {
                    tokio::select! {
                        changed = published.changed() => if changed.is_err() { return },
                        changed = conn.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                for (seq, at, report) in batch {
                    if !conn.borrow().connected {
                        break;
                    }
                    let age = Instant::now().saturating_duration_since(at);
                    let arrival =
                        Arrival { age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX), backlog: seq < newest };
                    if inbox.push(Input::Report { report, arrival }, None).await.is_err() {
                        return;
                    }
                    next = seq + 1;
                }
            }
        });
        Subscription::from_task(task)
    }

    fn publish_command(&self, command: Command) -> BoxFuture<Result<(), TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let settings = self.broker.0.settings;
        let mut state = self.broker.state();
        let log = state.control(&command.breaker);
        let now = Instant::now();
        log.pending.push_back((now, command));
        log.prune(&settings, now);
        log.published.send_modify(|n| *n += 1);
        ready(Ok(()))
    }

    fn consume_commands(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let broker = self.broker.clone();
        let breaker = breaker.clone();
        let mut conn = self.conn.clone();
        let mut published = broker.state().control(&breaker).published.subscribe();
        let task = tokio::spawn(async move {
            let settings = broker.0.settings;
            loop {
                if !until_connected(&mut conn).await {
                    return;
                }
                published.borrow_and_update();
                let next = {
                    let mut state = broker.state();
                    let log = state.control(&breaker);
                    log.prune(&settings, Instant::now());
                    log.pending.pop_front()
                };
                let Some((at, command)) = next else {
                    tokio::select! {
                        changed = published.changed() => if changed.is_err() { return },
                        changed = conn.changed() => if changed.is_err() { return },
                    }
                    continue;
                };
                let claimed =
                    Claimed { broker: broker.clone(), breaker: breaker.clone(), entry: Some((at, command.clone())) };
                if inbox.push(Input::Command(command), None).await.is_err() {
                    // The inbox is closed: the claim goes back to the stream.
                    return;
                }
                claimed.ack();
            }
        });
        Subscription::from_task(task)
    }

    fn watch_decision(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let mut rx = self.broker.state().key(breaker).watch.subscribe();
        let mut conn = self.conn.clone();
        let task = tokio::spawn(async move {
            loop {
                if !until_connected(&mut conn).await {
                    return;
                }
                let read = rx.borrow_and_update().clone();
                inbox.offer_decision(read);
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    changed = conn.changed() => if changed.is_err() { return },
                }
            }
        });
        Subscription::from_task(task)
    }

    fn write_decision(&self, decision: Decision, expected: Revision) -> BoxFuture<WriteOutcome> {
        if let Err(e) = self.check() {
            return ready(WriteOutcome::Failed(e));
        }
        let history = self.broker.0.settings.history.max(1);
        let mut state = self.broker.state();
        let revision = state.kv_rev + 1;
        let key = state.key(&decision.breaker);
        let current = key.current();
        if current.revision != expected {
            return ready(WriteOutcome::Rejected { current: current.decision, revision: current.revision });
        }
        if key.history.len() >= history {
            key.history.pop_front();
        }
        key.history.push_back((revision, decision.clone()));
        key.watch.send_replace(DecisionRead { decision: Some(decision), revision });
        state.kv_rev = revision;
        ready(WriteOutcome::Written { revision })
    }

    fn read_decision(&self, breaker: &BreakerName) -> BoxFuture<Result<DecisionRead, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        ready(Ok(self.broker.state().key(breaker).current()))
    }

    fn read_config(&self, breaker: &BreakerName) -> BoxFuture<Result<Option<FleetConfig>, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        ready(Ok(self.broker.state().configs.get(breaker).cloned()))
    }

    fn write_config(
        &self,
        breaker: &BreakerName,
        record: ConfigRecord,
        expected: Revision,
    ) -> BoxFuture<Result<ConfigWrite, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let mut state = self.broker.state();
        let current = state.configs.get(breaker).map_or(0, |c| c.revision);
        if current != expected {
            return ready(Ok(ConfigWrite::Conflict));
        }
        state.config_rev += 1;
        let revision = state.config_rev;
        state.configs.insert(breaker.clone(), FleetConfig { record, revision });
        ready(Ok(ConfigWrite::Written(revision)))
    }

    fn configs(&self) -> BoxFuture<Result<Vec<(BreakerName, BreakerConfig)>, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let state = self.broker.state();
        ready(Ok(state.configs.iter().map(|(k, v)| (k.clone(), v.record.config.clone())).collect()))
    }

    fn acquire_lease(
        &self,
        shard: LeaseShard,
        request: LeaseRequest,
    ) -> BoxFuture<Result<LeaseAcquire, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let now = Instant::now();
        let mut state = self.broker.state();
        state.expire_leases(now);
        if let Some(held) = state.leases.get(&shard) {
            if request.over != Some(held.revision) {
                return ready(Ok(LeaseAcquire::Held { revision: held.revision, ttl: held.ttl }));
            }
        }
        state.lease_rev += 1;
        let revision = state.lease_rev;
        let last = state.lease_terms.get(&shard).copied().unwrap_or_default();
        let term = next_term(revision, last, request.known);
        state.lease_terms.insert(shard, term);
        let entry = LeaseEntry {
            holder: Some(self.node.clone()),
            term,
            revision,
            expires_at: Some(now + request.ttl),
            ttl: Some(request.ttl),
        };
        state.leases.insert(shard, entry);
        ready(Ok(LeaseAcquire::Granted { revision, term }))
    }

    fn renew_lease(
        &self,
        shard: LeaseShard,
        revision: Revision,
        _term: Term,
        ttl: Duration,
    ) -> BoxFuture<Result<Option<Revision>, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let now = Instant::now();
        let mut state = self.broker.state();
        state.expire_leases(now);
        let next = state.lease_rev + 1;
        let Some(lease) =
            state.leases.get_mut(&shard).filter(|l| l.revision == revision && l.holder.as_ref() == Some(&self.node))
        else {
            return ready(Ok(None));
        };
        lease.revision = next;
        lease.expires_at = Some(now + ttl);
        state.lease_rev = next;
        ready(Ok(Some(next)))
    }

    fn release_lease(&self, shard: LeaseShard, revision: Revision) -> BoxFuture<Result<bool, TransportError>> {
        if let Err(e) = self.check() {
            return ready(Err(e));
        }
        let mut state = self.broker.state();
        state.expire_leases(Instant::now());
        if state.leases.get(&shard).is_none_or(|l| l.revision != revision) {
            return ready(Ok(false));
        }
        state.leases.remove(&shard);
        state.lease_rev += 1;
        state.lease_watchers.retain(|n| Arc::strong_count(n) > 1);
        for n in &state.lease_watchers {
            n.notify_one();
        }
        ready(Ok(true))
    }

    fn watch_leases(&self, notify: Arc<Notify>) -> Subscription {
        self.broker.state().lease_watchers.push(notify);
        Subscription::none()
    }

    fn serve_describe(&self, describer: Describer) -> Subscription {
        let serial = {
            let mut state = self.broker.state();
            state.describer_serial += 1;
            let serial = state.describer_serial;
            state.describers.insert(self.node.clone(), (serial, DescriberSlot(describer)));
            serial
        };
        let (broker, node) = (std::sync::Arc::downgrade(&self.broker.0), self.node.clone());
        Subscription::from_cleanup(move || {
            if let Some(inner) = broker.upgrade() {
                let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
                // Only its own registration: a later one of the same node stays.
                if state.describers.get(&node).is_some_and(|(s, _)| *s == serial) {
                    state.describers.remove(&node);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::machine::{DecisionId, FleetState, Reason, VectorClock, WIRE_VERSION};

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn decision(term: u64, seq: u64) -> Decision {
        Decision {
            version: WIRE_VERSION,
            breaker: BreakerName::new("b").unwrap(),
            id: DecisionId::new(term, seq),
            phase: DecisionId::new(term, seq),
            state: FleetState::Closed,
            backoff_level: 0,
            reason: Reason::Initial,
            decider: node("n1"),
            clock: VectorClock::new(Term(term)),
            config_version: 1,
            expires_after_ms: None,
        }
    }

    fn request(ttl: Duration, known: u64) -> LeaseRequest {
        LeaseRequest { ttl, known: Term(known), over: None }
    }

    fn granted(outcome: LeaseAcquire) -> (Revision, Term) {
        match outcome {
            LeaseAcquire::Granted { revision, term } => (revision, term),
            held @ LeaseAcquire::Held { .. } => panic!("not granted: {held:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leases_create_renew_expire_release() {
        let broker = MemoryBroker::new();
        let (a, b) = (broker.transport(node("a")), broker.transport(node("b")));
        let ttl = Duration::from_millis(100);
        let shard = LeaseShard(0);
        let (rev, term) = granted(a.acquire_lease(shard, request(ttl, 0)).await.unwrap());
        assert_eq!(term, Term(rev), "an intact bucket: the term is the revision");
        assert_eq!(
            b.acquire_lease(shard, request(ttl, 0)).await.unwrap(),
            LeaseAcquire::Held { revision: rev, ttl: Some(ttl) }
        );
        assert_eq!(b.renew_lease(shard, rev, term, ttl).await.unwrap(), None, "only the holder renews");
        let renewed = a.renew_lease(shard, rev, term, ttl).await.unwrap().unwrap();
        assert!(renewed > rev);
        assert_eq!(a.renew_lease(shard, rev, term, ttl).await.unwrap(), None, "CAS on the latest revision");
        tokio::time::advance(Duration::from_millis(101)).await;
        let (b_rev, b_term) = granted(b.acquire_lease(shard, request(ttl, 0)).await.unwrap());
        assert!(b_term > term, "terms only grow");
        assert!(!a.release_lease(shard, renewed).await.unwrap());
        assert!(b.release_lease(shard, b_rev).await.unwrap());
        assert_eq!(broker.lease(shard), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rebuilt_lease_bucket_grants_terms_above_the_known_and_recorded_ones() {
        let broker = MemoryBroker::new();
        let (a, b) = (broker.transport(node("a")), broker.transport(node("b")));
        let ttl = Duration::from_millis(100);
        let shard = LeaseShard(0);
        broker.wipe_leases();
        let (rev, term) = granted(a.acquire_lease(shard, request(ttl, 20_012)).await.unwrap());
        assert_eq!((rev, term), (1, Term(20_013)));
        assert_eq!(broker.lease(shard).unwrap().term, Term(20_013), "recorded in the value");
        tokio::time::advance(Duration::from_millis(101)).await;
        // b knows no decision at all: the term record still puts it above a's.
        let (_, b_term) = granted(b.acquire_lease(shard, request(ttl, 0)).await.unwrap());
        assert_eq!(b_term, Term(20_014));
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_that_never_expires_is_replaced_only_over_its_revision() {
        let broker = MemoryBroker::new();
        let a = broker.transport(node("a"));
        let ttl = Duration::from_millis(100);
        let shard = LeaseShard(0);
        broker.put_garbage_lease(shard);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let LeaseAcquire::Held { revision, ttl: None } = a.acquire_lease(shard, request(ttl, 0)).await.unwrap() else {
            panic!("garbage expired by itself")
        };
        let stale = LeaseRequest { over: Some(revision + 1), ..request(ttl, 0) };
        assert!(matches!(a.acquire_lease(shard, stale).await.unwrap(), LeaseAcquire::Held { .. }), "CAS");
        let over = LeaseRequest { over: Some(revision), ..request(ttl, 0) };
        let (_, term) = granted(a.acquire_lease(shard, over).await.unwrap());
        assert!(term.0 > revision);
        assert_eq!(broker.lease(shard).unwrap().holder, node("a"));
    }

    #[tokio::test]
    async fn decisions_are_cas_fenced() {
        let broker = MemoryBroker::new();
        let a = broker.transport(node("a"));
        assert_eq!(a.write_decision(decision(1, 1), 0).await, WriteOutcome::Written { revision: 1 });
        assert_eq!(
            a.write_decision(decision(1, 2), 0).await,
            WriteOutcome::Rejected { current: Some(decision(1, 1)), revision: 1 }
        );
        assert_eq!(a.write_decision(decision(1, 2), 1).await, WriteOutcome::Written { revision: 2 });
        assert_eq!(broker.history(&decision(1, 1).breaker).len(), 2);
        broker.disconnect(&node("a"));
        assert_eq!(a.write_decision(decision(1, 3), 2).await, WriteOutcome::Failed(TransportError::Disconnected));
        broker.reconnect(&node("a"));
        assert_eq!(a.read_decision(&decision(1, 1).breaker).await.unwrap().revision, 2);
    }

    fn command(reason: &str) -> Command {
        Command {
            version: WIRE_VERSION,
            breaker: BreakerName::new("b").unwrap(),
            kind: crate::machine::CommandKind::ForceOpen,
            actor: "ops".to_owned(),
            reason: reason.to_owned(),
            duration_ms: None,
        }
    }

    /// Polls `inbox` (paused time) until it holds `n` deliveries or `within` passes.
    async fn queued(inbox: &Inbox, n: usize, within: Duration) -> Vec<Input> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(inbox.pop_batch(64).0.into_iter().map(|d| d.input));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn commands_wait_for_a_decider_and_reach_one_once() {
        let settings = MemorySettings { command_max_count: 2, ..MemorySettings::default() };
        let broker = MemoryBroker::with_settings(settings);
        let (a, b) = (broker.transport(node("a")), broker.transport(node("b")));
        let breaker = BreakerName::new("b").unwrap();
        for reason in ["1", "2", "3"] {
            a.publish_command(command(reason)).await.unwrap();
        }
        assert_eq!((broker.pending_commands(&breaker), broker.dropped_commands(&breaker)), (2, 1), "the oldest goes");

        let first = Inbox::new(8);
        let sub = b.consume_commands(&breaker, first.clone());
        let got = queued(&first, 2, Duration::from_millis(50)).await;
        assert_eq!(got, [Input::Command(command("2")), Input::Command(command("3"))]);
        assert_eq!(broker.pending_commands(&breaker), 0, "acknowledged on delivery");

        // A second consumer (the next decider) gets only what comes after.
        drop(sub);
        let second = Inbox::new(8);
        let sub2 = a.consume_commands(&breaker, second.clone());
        b.publish_command(command("4")).await.unwrap();
        assert_eq!(queued(&second, 1, Duration::from_millis(50)).await, [Input::Command(command("4"))]);
        assert!(queued(&first, 1, Duration::from_millis(20)).await.is_empty());

        broker.disconnect(&node("b"));
        assert_eq!(b.publish_command(command("5")).await, Err(TransportError::Disconnected));
        drop(sub2);
        a.publish_command(command("6")).await.unwrap();
        tokio::time::advance(settings.command_max_age).await;
        assert_eq!(broker.pending_commands(&breaker), 0, "too old");
    }

    #[tokio::test(start_paused = true)]
    async fn a_consumer_stopped_mid_delivery_puts_the_command_back() {
        let broker = MemoryBroker::new();
        let a = broker.transport(node("a"));
        let breaker = BreakerName::new("b").unwrap();
        let full = Inbox::new(1);
        full.push(Input::Tick, None).await.unwrap();
        let sub = a.consume_commands(&breaker, full.clone());
        a.publish_command(command("x")).await.unwrap();
        // The consumer claims the command and waits for room in the full inbox.
        let deadline = Instant::now() + Duration::from_millis(50);
        while broker.pending_commands(&breaker) > 0 {
            assert!(Instant::now() < deadline, "never claimed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(sub);
        let deadline = Instant::now() + Duration::from_millis(50);
        while broker.pending_commands(&breaker) == 0 {
            assert!(Instant::now() < deadline, "never put back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let next = Inbox::new(4);
        let _sub = a.consume_commands(&breaker, next.clone());
        assert_eq!(queued(&next, 1, Duration::from_millis(50)).await, [Input::Command(command("x"))]);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_are_retained_by_age_and_count() {
        let broker = MemoryBroker::with_settings(MemorySettings { report_max_count: 3, ..MemorySettings::default() });
        let a = broker.transport(node("a"));
        let breaker = BreakerName::new("b").unwrap();
        let report = Report {
            version: WIRE_VERSION,
            breaker: breaker.clone(),
            node: node("a"),
            incarnation: 1,
            seq: 1,
            applied: DecisionId::NONE,
            clock: VectorClock::new(Term(0)),
            counts: crate::machine::OutcomeCounts::default(),
            longest_failure_streak: 0,
            local_open: false,
        };
        for _ in 0..5 {
            a.publish_report(report.clone()).await.unwrap();
        }
        assert_eq!(broker.retained_reports(&breaker), 3);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(broker.retained_reports(&breaker), 0);
    }
}
