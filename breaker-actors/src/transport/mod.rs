//! The [`Transport`] trait: everything a node's breaker actors need from the outside world
//! (the outcome feed, the control stream of operator commands, the decision bucket, the
//! lease store, the config bucket, the connection state), and the [`Inbox`] through which a transport hands results and
//! deliveries back to one breaker's actor. [`memory`] is the in-process implementation;
//! `transport-nats` provides the NATS one.
//!
//! # Bounded feeds
//!
//! ractor mailboxes are unbounded, so nothing a transport produces is ever cast to an actor
//! directly. A transport writes into the breaker's [`Inbox`]:
//! - reports, operator commands and operation results go into a bounded queue ([`Inbox::push`] waits for room,
//!   which is the backpressure of a pull consumer: the report log keeps what is not pulled);
//! - decisions go into one slot that keeps only the newest ([`Inbox::offer_decision`]):
//!   decisions are whole states and a node applies only newer ones, so a watch may coalesce;
//! - lease news go into one slot with a merge rule that never loses a grant.
//!
//! Then the inbox rings a doorbell: one message is cast to the actor only if none is
//! pending, so each actor's mailbox holds at most one inbox message, one flush tick and one
//! wake-up, whatever the traffic.

pub mod memory;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::machine::{
    BreakerConfig, BreakerName, Command, ConfigRecord, DeciderView, Decision, Input, NodeId, Report, Term,
};

/// A revision of a key in a KV bucket (0: the key has no value).
pub type Revision = u64;

/// A boxed, sendable future: the trait stays object-safe without `async-trait`.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a transport operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The node is cut off from the broker.
    Disconnected,
    /// The transport was closed.
    Closed,
    /// Anything else the backend reported.
    Backend(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("disconnected from the broker"),
            Self::Closed => f.write_str("transport closed"),
            Self::Backend(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// The result of a CAS write to the decision bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
// A decision is made a few times a minute at most; boxing it would allocate for nothing.
#[allow(clippy::large_enum_variant)]
pub enum WriteOutcome {
    /// Written at `revision`.
    Written {
        /// The new revision.
        revision: Revision,
    },
    /// The key was not at the expected revision; it holds `current` at `revision`.
    Rejected {
        /// What the bucket holds (`None`: no value).
        current: Option<Decision>,
        /// Its revision.
        revision: Revision,
    },
    /// The write did not happen (or its fate is unknown).
    Failed(TransportError),
}

/// A read of a breaker's decision: the value (`None`: none exists) and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRead {
    /// The decision.
    pub decision: Option<Decision>,
    /// Its revision (0 when there is none).
    pub revision: Revision,
}

/// A breaker's config as the fleet holds it, with the revision a replacement must CAS on.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// The record.
    pub record: ConfigRecord,
    /// Its revision in the config bucket.
    pub revision: Revision,
}

/// The result of a CAS write of a breaker's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWrite {
    /// Written at this revision.
    Written(Revision),
    /// The key was not at the revision expected (another node or operator wrote first).
    Conflict,
}

/// What the node deciding a breaker says about it when an operator asks (`fusebox
/// describe`): its config and what its decider holds beyond the decisions it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The deciding node.
    pub node: NodeId,
    /// The breaker's config on that node.
    pub config: BreakerConfig,
    /// Its decider's evidence and state.
    pub view: DeciderView,
}

/// How a registry answers describe requests: the breaker's [`Description`] if this node
/// decides it now, `None` otherwise (a node that does not decide a breaker stays silent).
pub type Describer = Arc<dyn Fn(BreakerName) -> BoxFuture<Option<Description>> + Send + Sync>;

/// One lease key: breakers hash to a fixed number of them (see `registry::lease_shard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseShard(pub u32);

impl fmt::Display for LeaseShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// What a lease manager asks of the lease store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The lease's time-to-live.
    pub ttl: Duration,
    /// The newest term this node knows for the shard (from the decisions its breakers were
    /// offered, and from any step-down that named a newer term): the term granted is above
    /// it ([`next_term`](crate::machine::next_term)).
    pub known: Term,
    /// `Some(revision)`: the key holds a value at `revision` that has stood unchanged for a
    /// whole TTL (dead, or garbage that never expires): replace it by CAS on that revision.
    pub over: Option<Revision>,
}

/// What an attempt to acquire a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAcquire {
    /// This node holds the lease: the key's revision (renewals CAS on it) and the term.
    Granted {
        /// The key's revision.
        revision: Revision,
        /// The term granted.
        term: Term,
    },
    /// The key holds a value at `revision` (a holder's, or one that does not decode).
    Held {
        /// The value's revision (0: held, but the value could not be read yet).
        revision: Revision,
        /// The TTL the value records (`None`: it records none, or does not decode).
        ttl: Option<Duration>,
    },
}

/// The node's connection to the broker. `losses` counts every loss, so that a loss and a
/// return seen together are not mistaken for no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnState {
    /// Whether the broker is reachable.
    pub connected: bool,
    /// Connections lost so far.
    pub losses: u64,
}

/// A running subscription (a consumer or a watch): dropping it stops it.
pub struct Subscription {
    task: Option<JoinHandle<()>>,
    cleanup: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("task", &self.task.is_some())
            .field("cleanup", &self.cleanup.is_some())
            .finish()
    }
}

impl Subscription {
    /// A subscription backed by a task: dropping the subscription aborts the task.
    pub fn from_task(task: JoinHandle<()>) -> Self {
        Self { task: Some(task), cleanup: None }
    }

    /// A subscription that is a registration with something shared (a node-wide watch or
    /// consumer): dropping the subscription runs `cleanup`, which takes the registration back.
    pub fn from_cleanup(cleanup: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self { task: None, cleanup: Some(Box::new(cleanup)) }
    }

    /// A subscription with nothing behind it.
    pub fn none() -> Self {
        Self { task: None, cleanup: None }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

/// Everything a node's breaker actors need from the outside world. One value per node; it
/// is shared by every actor of the node.
///
/// Deliveries and results that arrive later go into the breaker's [`Inbox`] (see the
/// module documentation for why this keeps every feed bounded). Operations return boxed
/// futures that the actor spawns, never awaits in its handler.
pub trait Transport: Send + Sync + 'static {
    /// This node.
    fn node(&self) -> &NodeId;

    /// The connection state, current value then changes.
    fn connection(&self) -> watch::Receiver<ConnState>;

    /// Publishes a report on the breaker's outcome feed.
    fn publish_report(&self, report: Report) -> BoxFuture<Result<(), TransportError>>;

    /// Starts consuming `breaker`'s reports as its decider: first every report still
    /// retained (the recent window), then new ones, in order, as [`Input::Report`] into
    /// `inbox` ([`Inbox::push`]: at most the inbox's capacity is ever pulled ahead). Stops
    /// when the subscription is dropped. While disconnected nothing is delivered.
    fn consume_reports(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription;

    /// Publishes an operator's command on the control stream of `command.breaker` (any node
    /// may publish for any breaker). The stream keeps commands nobody has consumed yet,
    /// within its limits (a count per breaker and a maximum age), until a decider takes them.
    fn publish_command(&self, command: Command) -> BoxFuture<Result<(), TransportError>>;

    /// Starts consuming `breaker`'s commands as its decider: every command still kept, then
    /// new ones, in order, as [`Input::Command`] into `inbox` ([`Inbox::push`]). The
    /// consumer is durable and shared: each command is delivered to one decider once, and
    /// acknowledged when it is in the inbox (a command delivered to a decider that stops
    /// deciding before its machine reads it is counted there as not deciding, not
    /// redelivered). Stops when the subscription is dropped. While disconnected nothing is
    /// delivered.
    fn consume_commands(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription;

    /// Watches `breaker`'s decision with history: the current value (or its absence) and
    /// then every change, into `inbox`'s decision slot ([`Inbox::offer_decision`]). After a
    /// reconnection it offers the current value again.
    fn watch_decision(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription;

    /// Writes `decision` if the key is at `expected` (0: the key must have no value).
    ///
    /// The actor passes the revision of the newest value it has fed to its machine, not the
    /// newest the transport has seen: a decider must never overwrite a decision its machine
    /// has not judged (a watch may be ahead of the machine by the inbox).
    fn write_decision(&self, decision: Decision, expected: Revision) -> BoxFuture<WriteOutcome>;

    /// Reads `breaker`'s current decision (resync after an outage).
    fn read_decision(&self, breaker: &BreakerName) -> BoxFuture<Result<DecisionRead, TransportError>>;

    /// The fleet's config of `breaker`, if it has one.
    fn read_config(&self, breaker: &BreakerName) -> BoxFuture<Result<Option<FleetConfig>, TransportError>>;

    /// Writes `breaker`'s config if the key is at `expected` (0: the key must have no
    /// value). The tuning rule ([`resolve_tuning`](crate::machine::resolve_tuning)) says
    /// when.
    fn write_config(
        &self,
        breaker: &BreakerName,
        record: ConfigRecord,
        expected: Revision,
    ) -> BoxFuture<Result<ConfigWrite, TransportError>>;

    /// Every breaker config the fleet has published.
    fn configs(&self) -> BoxFuture<Result<Vec<(BreakerName, BreakerConfig)>, TransportError>>;

    /// Acquires the lease key of `shard` for this node (created if absent or expired,
    /// replaced if `request.over` names its revision): [`LeaseAcquire::Granted`] with a
    /// term from [`next_term`](crate::machine::next_term) of the store's term record for
    /// the shard and `request.known`, recorded in the lease value and in the term record,
    /// or [`LeaseAcquire::Held`] with what the key holds.
    fn acquire_lease(
        &self,
        shard: LeaseShard,
        request: LeaseRequest,
    ) -> BoxFuture<Result<LeaseAcquire, TransportError>>;

    /// Renews the lease of `term` held at `revision` (CAS): `Some(new revision)`, or `None`
    /// if the key has moved on (expired, taken, deleted).
    fn renew_lease(
        &self,
        shard: LeaseShard,
        revision: Revision,
        term: Term,
        ttl: Duration,
    ) -> BoxFuture<Result<Option<Revision>, TransportError>>;

    /// Deletes the lease key if it is still at `revision`: `true` if it was.
    fn release_lease(&self, shard: LeaseShard, revision: Revision) -> BoxFuture<Result<bool, TransportError>>;

    /// Waits, at most `timeout`, until every report this node has handed over is published
    /// or given up (and counted): `true` if nothing is left. A registry shutting down calls
    /// it after its actors made their last reports, so a clean stop loses none. The default
    /// suits transports that publish synchronously.
    fn flush(&self, timeout: Duration) -> BoxFuture<bool> {
        let _ = timeout;
        Box::pin(std::future::ready(true))
    }

    /// The node's flush interval, told by the registry at its start: a transport that
    /// batches the node's reports sends at most one message per interval. The default
    /// suits transports that send every report as it comes.
    fn set_report_interval(&self, interval: Duration) {
        let _ = interval;
    }

    /// Answers operators' describe requests for any breaker with `describer`, until the
    /// subscription is dropped. One subscription per node whatever its breakers (the NATS
    /// transport: one core NATS subscription, no `JetStream` consumer); a request the
    /// describer answers `None` gets no answer from this node, and a malformed one none
    /// either (counted by the transport).
    fn serve_describe(&self, describer: Describer) -> Subscription;

    /// Notifies `notify` whenever a lease key is released, so that standbys compete at once
    /// instead of at their next retry (expiry may go unannounced: standbys retry anyway).
    fn watch_leases(&self, notify: Arc<Notify>) -> Subscription;
}

/// A delivery into an inbox: an input and the decision-bucket revision it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The input for the machine.
    pub input: Input,
    /// The bucket revision the input reflects (a write reply, a rejected write's current
    /// value): the actor's next CAS expects the newest one fed.
    pub revision: Option<Revision>,
}

/// Reports and results queued per breaker before the producers wait.
pub const INBOX_CAPACITY: usize = 256;

type Bell = Arc<dyn Fn() + Send + Sync>;

struct InboxShared {
    queue: Mutex<VecDeque<Delivery>>,
    space: Semaphore,
    decision: Mutex<Option<DecisionRead>>,
    lease: Mutex<Option<Input>>,
    /// The newest term among the decisions offered or delivered: the floor of the next
    /// term this node's lease manager asks for.
    newest_term: std::sync::atomic::AtomicU64,
    /// Whether the breaker's machine decided at its last step: only then does it take
    /// operator commands (one that reached a decider whose lease has run out would be lost).
    deciding: AtomicBool,
    armed: AtomicBool,
    bell: Mutex<Option<Bell>>,
}

/// One breaker's bounded inbox on one node. It outlives actor restarts: a restarted actor
/// takes over what its predecessor left unread.
#[derive(Clone)]
pub struct Inbox(Arc<InboxShared>);

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("queued", &lock(&self.0.queue).len()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain field update: a poisoned lock holds valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inbox {
    /// An empty inbox holding at most `capacity` queued deliveries.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(InboxShared {
            queue: Mutex::new(VecDeque::new()),
            space: Semaphore::new(capacity.max(1)),
            decision: Mutex::new(None),
            lease: Mutex::new(None),
            newest_term: std::sync::atomic::AtomicU64::new(0),
            deciding: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            bell: Mutex::new(None),
        }))
    }

    /// Queues `input`, waiting while the queue is full. `Err` once the inbox is closed.
    pub async fn push(&self, input: Input, revision: Option<Revision>) -> Result<(), TransportError> {
        if let Input::DecisionRejected { current: Some(d), .. } | Input::DecisionObserved(d) = &input {
            self.note_term(d.id.term);
        }
        let permit = self.0.space.acquire().await.map_err(|_| TransportError::Closed)?;
        permit.forget();
        lock(&self.0.queue).push_back(Delivery { input, revision });
        self.ring();
        Ok(())
    }

    fn note_term(&self, term: Term) {
        // A term above the bound is refused by the machine: it raises no floor either.
        if term.0 <= crate::machine::MAX_TERM {
            self.0.newest_term.fetch_max(term.0, Ordering::SeqCst);
        }
    }

    /// The newest term among the decisions offered to or queued in this inbox.
    pub fn newest_term(&self) -> Term {
        Term(self.0.newest_term.load(Ordering::SeqCst))
    }

    /// Whether the breaker's machine decided at its last step: a transport hands it an
    /// operator command only then, and gives the command back otherwise (for this node once
    /// it decides again, or for another decider).
    pub fn takes_commands(&self) -> bool {
        self.0.deciding.load(Ordering::SeqCst)
    }

    /// Set by the actor after every step of its machine.
    pub(crate) fn set_deciding(&self, deciding: bool) {
        self.0.deciding.store(deciding, Ordering::SeqCst);
    }

    /// Offers a read of the decision: kept if newer than the one waiting.
    pub fn offer_decision(&self, read: DecisionRead) {
        if let Some(d) = &read.decision {
            self.note_term(d.id.term);
        }
        {
            let mut slot = lock(&self.0.decision);
            if slot.as_ref().is_some_and(|old| old.revision > read.revision) {
                return;
            }
            *slot = Some(read);
        }
        self.ring();
    }

    /// Offers lease news (`LeaseGained`, `LeaseRenewed` or `LeaseLost`).
    pub(crate) fn offer_lease(&self, news: Input) {
        {
            let mut slot = lock(&self.0.lease);
            let merged = crate::shell::merge_lease_news(slot.take(), news);
            *slot = Some(merged);
        }
        self.ring();
    }

    /// Whether the inbox was closed.
    pub fn is_closed(&self) -> bool {
        self.0.space.is_closed()
    }

    /// Closes the inbox: waiting and later producers get `Err`.
    pub(crate) fn close(&self) {
        self.0.space.close();
        *lock(&self.0.bell) = None;
    }

    /// Sets who is told when something arrives (the actor), and rings once for whatever
    /// is already waiting.
    pub(crate) fn set_bell(&self, bell: Bell) {
        *lock(&self.0.bell) = Some(bell);
        self.0.armed.store(false, Ordering::SeqCst);
        self.ring();
    }

    /// Rings the bell unless a ring is already pending.
    pub(crate) fn ring(&self) {
        if self.0.armed.swap(true, Ordering::SeqCst) {
            return;
        }
        let bell = lock(&self.0.bell).clone();
        if let Some(bell) = bell {
            bell();
        } else {
            // Nobody to tell yet: the next `set_bell` rings.
            self.0.armed.store(false, Ordering::SeqCst);
        }
    }

    /// The actor took the ring: later arrivals ring again. Call before taking anything.
    pub(crate) fn disarm(&self) {
        self.0.armed.store(false, Ordering::SeqCst);
    }

    pub(crate) fn take_decision(&self) -> Option<DecisionRead> {
        lock(&self.0.decision).take()
    }

    /// Takes the lease news if `ready` (a machine not yet bootstrapped leaves it waiting).
    pub(crate) fn take_lease(&self, ready: bool) -> Option<Input> {
        if ready { lock(&self.0.lease).take() } else { None }
    }

    pub(crate) fn has_lease_news(&self) -> bool {
        lock(&self.0.lease).is_some()
    }

    /// Takes at most `max` queued deliveries; `true` if more remain.
    pub(crate) fn pop_batch(&self, max: usize) -> (Vec<Delivery>, bool) {
        let mut queue = lock(&self.0.queue);
        let n = queue.len().min(max);
        let batch: Vec<Delivery> = queue.drain(..n).collect();
        let more = !queue.is_empty();
        drop(queue);
        self.0.space.add_permits(batch.len());
        (batch, more)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn the_bell_rings_once_until_disarmed() {
        let inbox = Inbox::new(4);
        let rings = Arc::new(AtomicUsize::new(0));
        let r = rings.clone();
        inbox.set_bell(Arc::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        for _ in 0..3 {
            inbox.push(Input::Tick, None).await.unwrap();
        }
        assert_eq!(rings.load(Ordering::SeqCst), 1);
        inbox.disarm();
        let (batch, more) = inbox.pop_batch(2);
        assert_eq!((batch.len(), more), (2, true));
        inbox.push(Input::Tick, None).await.unwrap();
        assert_eq!(rings.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_full_queue_makes_producers_wait() {
        let inbox = Inbox::new(2);
        inbox.push(Input::Tick, None).await.unwrap();
        inbox.push(Input::Tick, None).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(10), inbox.push(Input::Tick, None)).await;
        assert!(third.is_err(), "the third push waits for room");
        let _ = inbox.pop_batch(1);
        inbox.push(Input::Tick, None).await.unwrap();
        inbox.close();
        assert_eq!(inbox.push(Input::Tick, None).await, Err(TransportError::Closed));
    }

    #[test]
    fn the_decision_slot_keeps_the_newest() {
        let inbox = Inbox::new(1);
        inbox.offer_decision(DecisionRead { decision: None, revision: 5 });
        inbox.offer_decision(DecisionRead { decision: None, revision: 3 });
        assert_eq!(inbox.take_decision().map(|r| r.revision), Some(5));
        assert_eq!(inbox.take_decision(), None);
    }
}
