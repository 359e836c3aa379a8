//! [`NatsTransport`]: the `breaker_actors::transport::Transport` of a node over NATS
//! `JetStream` (layout in `docs/nats.md`). It owns the connection and its state, provisioning at
//! connect, the ordered per-breaker report publisher, the consumers and watches that feed
//! breaker inboxes, and the CAS writes to the lease and state buckets. Everything decoded
//! from the wire goes through [`crate::codec`]; what it rejects is counted in
//! [`TransportStats`] and skipped, never fatal.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, kv, message::PublishMessage};
use async_nats::{ConnectOptions, Event, HeaderMap};
use breaker_actors::machine::{
    Arrival, BreakerConfig, BreakerName, Command, Decision, DecisionId, Input, NodeId, Report, Term, next_term,
};
use breaker_actors::transport::{
    BoxFuture, ConfigOutcome, ConnState, DecisionRead, Inbox, LeaseAcquire, LeaseRequest, LeaseShard, Revision,
    Subscription, Transport, TransportError, WriteOutcome,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{self, DecodeError, LeaseHolder, LeaseValue, Limits, Outcome, TermRecord};
use crate::layout::{self, Layout};
use crate::provision::{self, LeaseExpiry, ProvisionError, Provisioned, StoreSettings};

/// How a node connects to NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs (several for a cluster).
    pub servers: Vec<String>,
    /// This node.
    pub node: NodeId,
    /// Stream, bucket and subject names.
    pub layout: Layout,
    /// Sizes and ages used when creating streams and buckets.
    pub store: StoreSettings,
    /// Decoder limits.
    pub limits: Limits,
    /// User and password, if the server requires them.
    pub credentials: Option<(String, String)>,
    /// How long one attempt to connect to one server may take, at the first connection and
    /// at every reconnection: a server that accepts TCP but never answers (stopped, or its
    /// host overloaded) costs this much before the next server is tried.
    pub connect_timeout: Duration,
    /// How long a `JetStream` request or publish ack may take.
    pub request_timeout: Duration,
    /// The longest pause between reconnection attempts (the first comes after 40 ms; the
    /// pauses double up to this).
    pub max_reconnect_delay: Duration,
    /// How often the client pings an otherwise silent server: after three unanswered pings
    /// the server counts as dead and the client moves to another. A killed server closes
    /// its sockets and is noticed at once; this bounds how long a hung or cut-off one goes
    /// unnoticed (three periods).
    pub ping_interval: Duration,
    /// How often a node also reads each of its breakers' decisions directly, besides
    /// watching them: the watch is a push consumer that notices a lost server only by missed
    /// heartbeats (seconds), and a follower must not miss a decision for that long. Costs one
    /// read per breaker per node per period. The reads do not wait for the watch: after a
    /// reconnection the first is immediate, and while the watch is not running (it cannot be
    /// created until `JetStream` has a leader again) they come four times as often.
    pub decision_resync: Duration,
}

impl NatsConfig {
    /// Defaults for `node` connecting to `servers`.
    pub fn new(servers: Vec<String>, node: NodeId) -> Self {
        Self {
            servers,
            node,
            layout: Layout::default(),
            store: StoreSettings::default(),
            limits: Limits::default(),
            credentials: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_millis(500),
            ping_interval: Duration::from_millis(300),
            decision_resync: Duration::from_secs(1),
        }
    }
}

/// Why [`NatsTransport::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// No server URL was given.
    NoServers,
    /// The client could not connect.
    Connect(async_nats::ConnectError),
    /// Streams or buckets could not be created or are incompatible.
    Provision(ProvisionError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoServers => f.write_str("no NATS server URL given"),
            Self::Connect(e) => write!(f, "connecting to NATS: {e}"),
            Self::Provision(e) => write!(f, "provisioning: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// What a node's transport rejected, published and lost so far.
#[derive(Debug, Default)]
pub struct TransportStats {
    rejected_outcomes: AtomicU64,
    rejected_commands: AtomicU64,
    rejected_decisions: AtomicU64,
    rejected_configs: AtomicU64,
    reports_published: AtomicU64,
    reports_coalesced: AtomicU64,
    reports_lost: AtomicU64,
    publish_retries: AtomicU64,
    outcomes_delivered: AtomicU64,
}

/// A copy of [`TransportStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Outcome messages rejected by the decoder (malformed, oversized, unknown version,
    /// wrong breaker or node, bad subject).
    pub rejected_outcomes: u64,
    /// Control messages rejected by the decoder.
    pub rejected_commands: u64,
    /// State-bucket values rejected by the decoder.
    pub rejected_decisions: u64,
    /// Config-bucket values rejected by the decoder.
    pub rejected_configs: u64,
    /// Reports acknowledged by the stream.
    pub reports_published: u64,
    /// Reports merged into a report still waiting to be published.
    pub reports_coalesced: u64,
    /// Reports given up on (buffer full while unreachable, or older than the stream keeps).
    pub reports_lost: u64,
    /// Publish attempts that failed and were retried.
    pub publish_retries: u64,
    /// Reports (own or foreign) handed to a decider's inbox.
    pub outcomes_delivered: u64,
}

impl TransportStats {
    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            rejected_outcomes: get(&self.rejected_outcomes),
            rejected_commands: get(&self.rejected_commands),
            rejected_decisions: get(&self.rejected_decisions),
            rejected_configs: get(&self.rejected_configs),
            reports_published: get(&self.reports_published),
            reports_coalesced: get(&self.reports_coalesced),
            reports_lost: get(&self.reports_lost),
            publish_retries: get(&self.publish_retries),
            outcomes_delivered: get(&self.outcomes_delivered),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn reject(&self, source: &'static str, subject: &str, error: &DecodeError) {
        let counter = match source {
            "outcome" => &self.rejected_outcomes,
            "command" => &self.rejected_commands,
            "decision" => &self.rejected_decisions,
            _ => &self.rejected_configs,
        };
        Self::bump(counter);
        metrics::counter!("fusebox_rejected_messages_total", "source" => source, "kind" => error.kind()).increment(1);
        tracing::warn!(source, subject, %error, "rejected a message");
    }
}

/// Reports waiting per breaker before the oldest is dropped (only while NATS is
/// unreachable: queued reports of one decision are merged, so the queue grows by one entry
/// per decision the node applies, not per flush).
const OUTBOX_CAPACITY: usize = 64;
/// Messages per pull request; the inbox bounds how far a decider runs ahead.
const PULL_BATCH: usize = 64;
/// How long a pull request waits for messages before the next is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Idle heartbeat of a pull request: two missed ones and the consumer is recreated.
const PULL_HEARTBEAT: Duration = Duration::from_millis(500);
/// How long the server keeps a decider's report consumer after the decider went away.
const EPHEMERAL_IDLE: Duration = Duration::from_secs(10);
/// Pauses between retries of a failed operation.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long an operator command may sit unacknowledged with a decider before another
/// decider gets it.
const COMMAND_ACK_WAIT: Duration = Duration::from_secs(10);
/// How long an idle durable command consumer is kept.
const COMMAND_CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// The least a direct decision read is waited for before it is sent again.
const READ_PATIENCE_MIN: Duration = Duration::from_millis(250);
/// The most breaker configs [`Transport::configs`] lists.
const MAX_CONFIGS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain field update: a poisoned lock holds valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn backoff(attempt: u32) -> Duration {
    RETRY_MIN.saturating_mul(1 << attempt.min(6)).min(RETRY_MAX)
}

struct Queued {
    report: Report,
    since: Instant,
}

/// One breaker's reports waiting to be published, in order.
#[derive(Default)]
struct Outbox {
    queue: Mutex<VecDeque<Queued>>,
    ready: Notify,
    /// 1 while the publish loop holds a report taken off the queue.
    in_flight: AtomicUsize,
}

/// The node's transport over NATS: see the module documentation.
pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    layout: Layout,
    limits: Limits,
    decision_resync: Duration,
    request_timeout: Duration,
    client: async_nats::Client,
    js: jetstream::Context,
    stores: Provisioned,
    conn: watch::Receiver<ConnState>,
    stats: TransportStats,
    outboxes: Mutex<HashMap<BreakerName, Arc<Outbox>>>,
    /// The newest decision seen per breaker: what a foreign report that does not say what
    /// it had applied is attributed to.
    latest: Mutex<HashMap<BreakerName, DecisionId>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsTransport")
            .field("node", &self.inner.node)
            .field("layout", &self.inner.layout)
            .field("conn", &*self.inner.conn.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }
}

impl NatsTransport {
    /// Connects, provisions the fleet's streams and buckets (idempotently), and starts
    /// tracking the connection state.
    pub async fn connect(config: NatsConfig) -> Result<Arc<Self>, ConnectError> {
        if config.servers.is_empty() {
            return Err(ConnectError::NoServers);
        }
        let (conn_tx, conn) = watch::channel(ConnState { connected: true, losses: 0 });
        let max_delay = config.max_reconnect_delay;
        let mut options = ConnectOptions::new()
            .name(format!("fusebox-{}", config.node))
            .connection_timeout(config.connect_timeout)
            .ping_interval(config.ping_interval.max(Duration::from_millis(10)))
            .request_timeout(Some(config.request_timeout))
            .reconnect_delay_callback(move |attempts| {
                backoff(u32::try_from(attempts).unwrap_or(u32::MAX)).min(max_delay)
            })
            .event_callback(move |event| {
                let conn_tx = conn_tx.clone();
                async move { on_event(&conn_tx, &event) }
            });
        if let Some((user, password)) = &config.credentials {
            options = options.user_and_password(user.clone(), password.clone());
        }
        // Boxed, like provisioning below: both hold a lot of state across their awaits, which
        // would otherwise make every caller's future large.
        let client = Box::pin(options.connect(config.servers.as_slice())).await.map_err(ConnectError::Connect)?;
        let js = jetstream::ContextBuilder::new().timeout(config.request_timeout).build(client.clone());
        let version = client.server_info().version;
        let stores = Box::pin(provision::provision(&js, &config.layout, &config.store, &version))
            .await
            .map_err(ConnectError::Provision)?;
        Ok(Arc::new(Self {
            inner: Arc::new(Inner {
                node: config.node,
                layout: config.layout,
                limits: config.limits,
                decision_resync: config.decision_resync.max(Duration::from_millis(10)),
                request_timeout: config.request_timeout,
                client,
                js,
                stores,
                conn,
                stats: TransportStats::default(),
                outboxes: Mutex::new(HashMap::new()),
                latest: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        }))
    }

    /// What was rejected, published and lost so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The NATS client (for tools that need more than the transport offers).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// How lease expiry works on this fleet.
    pub fn lease_expiry(&self) -> LeaseExpiry {
        self.inner.stores.lease_expiry
    }

    /// The names this transport uses.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Every decision kept for `breaker` in the state bucket, oldest first: the audit trail.
    pub async fn history(&self, breaker: &BreakerName) -> Result<Vec<(Revision, Decision)>, TransportError> {
        let mut history = self.inner.stores.state.history(breaker.as_str()).await.map_err(backend)?;
        let mut out = Vec::new();
        while let Some(entry) = history.next().await {
            let entry = entry.map_err(backend)?;
            if entry.operation != kv::Operation::Put {
                continue;
            }
            match codec::decode_decision(breaker, &entry.value, &self.inner.limits) {
                Ok(decision) => out.push((entry.revision, decision)),
                Err(e) => self.inner.stats.reject("decision", breaker.as_str(), &e),
            }
        }
        Ok(out)
    }

    /// Who holds `shard`'s lease, and under which term (`None`: nobody, or a value that
    /// does not decode; a value of the format before recorded terms gives its revision).
    /// Read from a replica that may lag: for display and tests, never for deciding.
    pub async fn lease_holder(&self, shard: LeaseShard) -> Result<Option<(NodeId, u64)>, TransportError> {
        let entry = self.inner.stores.leases.entry(shard.to_string()).await.map_err(|e| self.inner.failure(e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put).and_then(|e| {
            let holder = codec::decode_lease(&e.value, &self.inner.limits).ok()?;
            let term = holder.term().map_or(e.revision, |t| t.0);
            Some((holder.node().clone(), term))
        }))
    }

    /// The decision in the state bucket for `breaker`.
    pub async fn decision(&self, breaker: &BreakerName) -> Result<DecisionRead, TransportError> {
        self.inner.read(breaker).await
    }

    fn outbox(&self, breaker: &BreakerName) -> Arc<Outbox> {
        let mut outboxes = lock(&self.inner.outboxes);
        if let Some(outbox) = outboxes.get(breaker) {
            return outbox.clone();
        }
        let outbox = Arc::new(Outbox::default());
        outboxes.insert(breaker.clone(), outbox.clone());
        drop(outboxes);
        let task = tokio::spawn(publish_loop(self.inner.clone(), outbox.clone()));
        lock(&self.inner.tasks).push(task);
        outbox
    }
}

fn on_event(conn: &watch::Sender<ConnState>, event: &Event) {
    match event {
        Event::Connected => conn.send_modify(|s| s.connected = true),
        Event::Disconnected | Event::Closed => conn.send_modify(|s| {
            if s.connected {
                s.connected = false;
                s.losses += 1;
            }
        }),
        _ => {}
    }
    tracing::debug!(%event, "nats connection event");
}

/// Whether a publish was refused because the key had moved on. Besides "wrong last
/// sequence" (10071), a clustered stream answers a CAS that raced another proposal with
/// "wrong last sequence constant" (10164), which async-nats reports as `Other`.
fn is_cas_conflict(e: &jetstream::context::PublishError) -> bool {
    if e.kind() == PublishErrorKind::WrongLastSequence {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

/// The result of a compare-and-set publish to a bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cas {
    /// Written at this revision.
    Written(Revision),
    /// The key had moved on from the expected revision.
    Conflict,
}

impl Cas {
    fn revision(self) -> Option<Revision> {
        match self {
            Self::Written(revision) => Some(revision),
            Self::Conflict => None,
        }
    }
}

fn backend(e: impl fmt::Display) -> TransportError {
    TransportError::Backend(e.to_string())
}

impl Inner {
    fn is_connected(&self) -> bool {
        self.conn.borrow().connected
    }

    /// An error for a failed operation: `Disconnected` when the connection is down.
    fn failure(&self, e: impl fmt::Display) -> TransportError {
        if self.is_connected() { backend(e) } else { TransportError::Disconnected }
    }

    fn note_decision(&self, breaker: &BreakerName, id: DecisionId) {
        let mut latest = lock(&self.latest);
        let slot = latest.entry(breaker.clone()).or_default();
        *slot = (*slot).max(id);
    }

    fn latest_decision(&self, breaker: &BreakerName) -> DecisionId {
        lock(&self.latest).get(breaker).copied().unwrap_or_default()
    }

    fn kv_subject(bucket: &kv::Store, key: &str) -> String {
        format!("$KV.{}.{key}", bucket.name)
    }

    /// Publishes `payload` to `key` of `bucket` if the key's last revision is `expected`.
    async fn cas(
        &self,
        bucket: &kv::Store,
        key: &str,
        payload: Bytes,
        expected: Revision,
        extra: Option<(&'static str, &'static str)>,
        ttl: Option<Duration>,
    ) -> Result<Cas, TransportError> {
        let mut message = PublishMessage::build().payload(payload).expected_last_subject_sequence(expected);
        if let Some((name, value)) = extra {
            message = message.header(name, value);
        }
        if let Some(ttl) = ttl {
            message = message.ttl(ttl);
        }
        let ack = match self.js.send_publish(Self::kv_subject(bucket, key), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => Ok(Cas::Written(ack.sequence)),
            Err(e) if is_cas_conflict(&e) => Ok(Cas::Conflict),
            Err(e) => Err(self.failure(e)),
        }
    }

    async fn read(&self, breaker: &BreakerName) -> Result<DecisionRead, TransportError> {
        let entry = self.stores.state.entry(breaker.as_str()).await.map_err(|e| self.failure(e))?;
        Ok(self.decision_read(breaker, entry))
    }

    fn decision_read(&self, breaker: &BreakerName, entry: Option<kv::Entry>) -> DecisionRead {
        let Some(entry) = entry else { return DecisionRead { decision: None, revision: 0 } };
        if entry.operation != kv::Operation::Put {
            return DecisionRead { decision: None, revision: entry.revision };
        }
        match codec::decode_decision(breaker, &entry.value, &self.limits) {
            Ok(decision) => {
                self.note_decision(breaker, decision.id);
                DecisionRead { decision: Some(decision), revision: entry.revision }
            }
            Err(e) => {
                // Unreadable: offered as no value at its revision, so a decider overwrites it.
                self.stats.reject("decision", breaker.as_str(), &e);
                DecisionRead { decision: None, revision: entry.revision }
            }
        }
    }

    fn lease_ttl(&self, ttl: Duration) -> Result<Option<Duration>, TransportError> {
        match self.stores.lease_expiry {
            // TTLs are whole seconds: rounding up keeps the server's expiry after the
            // holder's own deadline (send time + ttl - margin), so two holders never overlap.
            LeaseExpiry::PerKeyTtl | LeaseExpiry::Auto => {
                let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                Ok(Some(Duration::from_secs(secs.max(1))))
            }
            LeaseExpiry::BucketMaxAge(age) if ttl <= age => Ok(None),
            LeaseExpiry::BucketMaxAge(age) => Err(TransportError::Backend(format!(
                "lease ttl {ttl:?} exceeds the lease bucket's max_age {age:?}: another node could take the lease while \
                 the holder still decides"
            ))),
        }
    }

    /// Creates `key` if it has no value: absent, or its last entry is a delete, purge or
    /// expiry marker. (`kv::Store::create_with_ttl` drops the TTL on its marker path, hence
    /// this one.)
    async fn create(
        &self,
        bucket: &kv::Store,
        key: &str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Cas, TransportError> {
        if let Cas::Written(revision) = self.cas(bucket, key, payload.clone(), 0, None, ttl).await? {
            return Ok(Cas::Written(revision));
        }
        match bucket.entry(key).await.map_err(|e| self.failure(e))? {
            Some(e) if e.operation != kv::Operation::Put => self.cas(bucket, key, payload, e.revision, None, ttl).await,
            _ => Ok(Cas::Conflict),
        }
    }

    fn lease_value(&self, term: Term, ttl: Duration) -> Result<Bytes, TransportError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let value = LeaseValue { version: codec::LEASE_VERSION, node: self.node.clone(), term, ttl_ms };
        Ok(Bytes::from(codec::encode_lease(&value).map_err(backend)?))
    }

    /// Acquires `shard`'s lease (see [`Transport::acquire_lease`]): reads the shard's term
    /// record, takes the key (create, or CAS over `request.over`) with a value recording
    /// the term [`next_term`] grants, then moves the record to that term by CAS on the
    /// revision read. A record moved by someone else meanwhile means that term may be
    /// theirs too: the key is given back and the attempt fails (to be retried), so no two
    /// holders ever share a term.
    async fn acquire(&self, shard: LeaseShard, request: LeaseRequest) -> Result<LeaseAcquire, TransportError> {
        let ttl = self.lease_ttl(request.ttl)?;
        let bucket = &self.stores.leases;
        let (key, record_key) = (shard.to_string(), layout::term_record_key(shard));
        let (record, record_rev) = match bucket.entry(record_key.as_str()).await.map_err(|e| self.failure(e))? {
            None => (None, 0),
            Some(e) if e.operation != kv::Operation::Put => (None, e.revision),
            Some(e) => match codec::decode_term_record(&e.value, &self.limits) {
                Ok(record) => (Some(record), e.revision),
                Err(error) => {
                    // Overwritten below: the new term is above every one the nodes know.
                    self.stats.reject("term_record", &record_key, &error);
                    (None, e.revision)
                }
            },
        };
        let last = record.map_or(Term(0), |r| r.term);
        let term = next_term(record_rev, last, request.known);
        // A decision of a term above every one this record granted: noted for operators
        // (`fusebox status` flags it, `fusebox repair` clears it). Without a record (a
        // rebuilt bucket) stored terms above it are expected.
        let unexplained = record.and_then(|r| r.unexplained.max((request.known > r.term).then_some(request.known)));
        let value = self.lease_value(term, request.ttl)?;
        let taken = match request.over {
            Some(revision) => self.cas(bucket, &key, value, revision, None, ttl).await?,
            None => self.create(bucket, &key, value, ttl).await?,
        };
        let Cas::Written(revision) = taken else {
            return self.lease_held(&key).await;
        };
        let record = TermRecord { version: codec::LEASE_VERSION, term, unexplained };
        let record = Bytes::from(codec::encode_term_record(&record).map_err(backend)?);
        match self.cas(bucket, &record_key, record, record_rev, None, None).await {
            Ok(Cas::Written(_)) => Ok(LeaseAcquire::Granted { revision, term }),
            outcome => {
                let _ = self.cas(bucket, &key, Bytes::new(), revision, Some(("KV-Operation", "DEL")), None).await;
                Err(outcome
                    .err()
                    .unwrap_or_else(|| backend(format!("the term record of {shard} moved while acquiring"))))
            }
        }
    }

    /// What holds `key` now, for a lease manager that could not take it.
    async fn lease_held(&self, key: &str) -> Result<LeaseAcquire, TransportError> {
        match self.stores.leases.entry(key).await.map_err(|e| self.failure(e))? {
            Some(e) if e.operation == kv::Operation::Put => {
                let ttl = match codec::decode_lease(&e.value, &self.limits) {
                    Ok(LeaseHolder::Holder(value)) => Some(Duration::from_millis(value.ttl_ms)),
                    Ok(LeaseHolder::Legacy(_)) => None,
                    Err(error) => {
                        self.stats.reject("lease", key, &error);
                        None
                    }
                };
                Ok(LeaseAcquire::Held { revision: e.revision, ttl })
            }
            _ => Err(backend(format!("the lease key {key} changed while acquiring"))),
        }
    }
}

async fn until_connected(conn: &mut watch::Receiver<ConnState>) -> bool {
    conn.wait_for(|c| c.connected).await.is_ok()
}

/// How one session of a consumer or watch ended.
enum Session {
    /// The stream ended or failed: open another.
    Retry,
    /// Nobody listens any more (the inbox is closed).
    Stop,
}

/// The decision watch of `breaker`, opened again after every reconnection and whenever it
/// ends, until the transport is gone; `watching` says whether a watch runs now.
async fn watch_loop(inner: Arc<Inner>, breaker: BreakerName, inbox: Inbox, watching: Arc<AtomicBool>) {
    let mut conn = inner.conn.clone();
    keep_running(inner.conn.clone(), "decision watch", async move || {
        let losses = conn.borrow_and_update().losses;
        // With history: the current value (or its absence) first, then changes.
        let opened = inner.stores.state.watch_with_history(breaker.as_str()).await.map_err(backend);
        let mut watch = opened?;
        watching.store(true, Ordering::Relaxed);
        let ended = loop {
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => inbox.offer_decision(inner.decision_read(&breaker, Some(entry))),
                    _ => break Session::Retry,
                },
                changed = conn.changed() => {
                    if changed.is_err() {
                        break Session::Stop;
                    }
                    // After a reconnection, start over: the current value again.
                    let now = *conn.borrow();
                    if now.connected && now.losses != losses {
                        break Session::Retry;
                    }
                }
            }
        };
        watching.store(false, Ordering::Relaxed);
        Ok(ended)
    })
    .await;
}

/// Reads `breaker`'s decision directly every `decision_resync` (four times as often while
/// no watch runs), and at once after every reconnection, until the transport is gone. A read, or the pause after it, is cut
/// short by a lost connection, and a read is given up after one period (at most the request
/// timeout): a request that went to a dead server, or to replicas still electing a leader, is
/// never answered, and waiting out the request timeout would leave the node on a stale
/// decision for that long.
async fn resync_loop(inner: Arc<Inner>, breaker: BreakerName, inbox: Inbox, watching: Arc<AtomicBool>) {
    let mut conn = inner.conn.clone();
    loop {
        if !until_connected(&mut conn).await {
            return;
        }
        let losses = conn.borrow_and_update().losses;
        let cycle = async {
            let patience = inner.decision_resync.max(READ_PATIENCE_MIN).min(inner.request_timeout);
            if let Ok(Ok(read)) = tokio::time::timeout(patience, inner.read(&breaker)).await {
                inbox.offer_decision(read);
            }
            let watched = watching.load(Ordering::Relaxed);
            tokio::time::sleep(if watched { inner.decision_resync } else { inner.decision_resync / 4 }).await;
        };
        tokio::select! {
            () = cycle => {}
            lost = conn.wait_for(|c| c.losses != losses) => if lost.is_err() { return },
        }
    }
}

/// Keeps a consumer or watch going for as long as its subscription lives: waits for the
/// connection, runs `session` (open, then read until the stream ends or fails), and backs
/// off between sessions, the longer the more opens fail in a row.
async fn keep_running(
    mut conn: watch::Receiver<ConnState>,
    what: &'static str,
    mut session: impl AsyncFnMut() -> Result<Session, TransportError>,
) {
    let mut failed_opens = 0;
    loop {
        if !until_connected(&mut conn).await {
            return;
        }
        match session().await {
            Ok(Session::Stop) => return,
            Ok(Session::Retry) => failed_opens = 0,
            Err(e) => {
                tracing::debug!(what, error = %e, "could not open; retrying");
                failed_opens += 1;
            }
        }
        tokio::time::sleep(backoff(failed_opens)).await;
    }
}

/// Pull requests of `batch` messages with fast heartbeats: a consumer lost with its server
/// shows up as an error within a second.
async fn pull(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    batch: usize,
) -> Result<consumer::pull::Stream, TransportError> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(backend)
}

/// Publishes one breaker's queued reports in order, one at a time, each until acknowledged
/// or too old to matter: in order because the decider keeps only reports newer than the
/// last it saw from a node.
async fn publish_loop(inner: Arc<Inner>, outbox: Arc<Outbox>) {
    let mut conn = inner.conn.clone();
    loop {
        let next = {
            let mut queue = lock(&outbox.queue);
            let next = queue.pop_front();
            // Under the queue's lock, so that a flush never sees an empty queue and nothing
            // in flight while a report is between the two.
            outbox.in_flight.store(usize::from(next.is_some()), Ordering::SeqCst);
            next
        };
        match next {
            Some(Queued { report, since }) => publish_one(&inner, &mut conn, &report, since).await,
            None => outbox.ready.notified().await,
        }
    }
}

/// Publishes `report` until acknowledged, or gives it up (counted) once it is older than the
/// stream keeps reports.
async fn publish_one(inner: &Inner, conn: &mut watch::Receiver<ConnState>, report: &Report, since: Instant) {
    let max_age = inner.stores.report_max_age;
    let lost = || {
        TransportStats::bump(&inner.stats.reports_lost);
        metrics::counter!("fusebox_reports_lost_total", "breaker" => report.breaker.as_str().to_owned()).increment(1);
    };
    let subject = inner.layout.outcome_subject(&report.breaker, &report.node);
    let id = codec::report_msg_id(report);
    let payload = match codec::encode_report(report) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(error = %e, "report cannot be encoded; dropped");
            return lost();
        }
    };
    let mut attempt = 0;
    loop {
        if since.elapsed() >= max_age {
            return lost();
        }
        if !inner.is_connected() {
            let _ = tokio::time::timeout(max_age.saturating_sub(since.elapsed()), until_connected(conn)).await;
            continue;
        }
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&id)
            .header(codec::CONTENT_TYPE, codec::POSTCARD);
        let acked = match inner.js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        match acked {
            Ok(()) => return TransportStats::bump(&inner.stats.reports_published),
            Err(e) => {
                tracing::debug!(subject, error = %e, attempt, "report publish failed; retrying");
                TransportStats::bump(&inner.stats.publish_retries);
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Merges `later` into `earlier` when the decider would count them the same way (one node,
/// one incarnation, the same applied decision): the counts add up, the later report's
/// sequence, clock and overlay stand.
fn coalesce(earlier: &mut Report, later: &Report) -> bool {
    if earlier.node != later.node || earlier.incarnation != later.incarnation || earlier.applied != later.applied {
        return false;
    }
    earlier.counts.add(&later.counts);
    earlier.longest_failure_streak = earlier.longest_failure_streak.max(later.longest_failure_streak);
    earlier.seq = later.seq;
    earlier.clock = later.clock.clone();
    earlier.local_open = later.local_open;
    true
}

impl Transport for NatsTransport {
    fn node(&self) -> &NodeId {
        &self.inner.node
    }

    fn connection(&self) -> watch::Receiver<ConnState> {
        self.inner.conn.clone()
    }

    fn publish_report(&self, report: Report) -> BoxFuture<Result<(), TransportError>> {
        let outbox = self.outbox(&report.breaker);
        {
            let mut queue = lock(&outbox.queue);
            if queue.back_mut().is_some_and(|q| coalesce(&mut q.report, &report)) {
                TransportStats::bump(&self.inner.stats.reports_coalesced);
            } else {
                if queue.len() >= OUTBOX_CAPACITY {
                    queue.pop_front();
                    TransportStats::bump(&self.inner.stats.reports_lost);
                    metrics::counter!("fusebox_reports_lost_total", "breaker" => report.breaker.as_str().to_owned())
                        .increment(1);
                }
                queue.push_back(Queued { report, since: Instant::now() });
            }
        }
        outbox.ready.notify_one();
        Box::pin(std::future::ready(Ok(())))
    }

    fn consume_reports(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        // The stream sequence after the last message handled: a consumer recreated after an
        // error resumes there instead of replaying again.
        let mut resume = 0u64;
        Subscription::from_task(tokio::spawn(keep_running(
            self.inner.conn.clone(),
            "report consumer",
            async move || {
                let deliver_policy = if resume == 0 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence { start_sequence: resume }
                };
                // A plain ephemeral pull consumer with fast heartbeats rather than the client's
                // ordered consumer: that one notices a lost server only after two missed 15 s
                // heartbeats, and a decider must not go deaf for 30 s.
                let config = consumer::pull::Config {
                    filter_subject: inner.layout.breaker_outcome_subjects(&breaker),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::None,
                    inactive_threshold: EPHEMERAL_IDLE,
                    memory_storage: true,
                    ..Default::default()
                };
                let consumer = inner.stores.outcomes.create_consumer(config).await.map_err(backend)?;
                // A report's age is the server's now less the server's timestamp of it:
                // the server's clock at the consumer's creation, moved on by this node's
                // monotonic clock. No clock of this node is compared with the server's.
                let server_then = consumer.cached_info().created.unix_timestamp_nanos();
                let here_then = std::time::Instant::now();
                let mut messages = pull(&consumer, PULL_BATCH).await?;
                while let Some(Ok(message)) = messages.next().await {
                    let Ok((sequence, published, pending)) =
                        message.info().map(|i| (i.stream_sequence, i.published.unix_timestamp_nanos(), i.pending))
                    else {
                        continue;
                    };
                    resume = sequence + 1;
                    if let Some(report) = inner.decode_report(&breaker, &message, sequence) {
                        let server_now = server_then
                            .saturating_add(i128::try_from(here_then.elapsed().as_nanos()).unwrap_or(i128::MAX));
                        let age_ms =
                            u64::try_from(server_now.saturating_sub(published).max(0) / 1_000_000).unwrap_or(u64::MAX);
                        let arrival = Arrival { age_ms, backlog: pending > 0 };
                        if inbox.push(Input::Report { report, arrival }, None).await.is_err() {
                            return Ok(Session::Stop);
                        }
                        TransportStats::bump(&inner.stats.outcomes_delivered);
                    }
                }
                Ok(Session::Retry)
            },
        )))
    }

    fn publish_command(&self, command: Command) -> BoxFuture<Result<(), TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let subject = inner.layout.control_subject(&command.breaker);
            let message = PublishMessage::build()
                .payload(Bytes::from(codec::encode_command(&command).map_err(backend)?))
                .header(codec::CONTENT_TYPE, codec::JSON);
            let ack = match inner.js.send_publish(subject, message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            ack.map(|_| ()).map_err(|e| inner.failure(e))
        })
    }

    fn consume_commands(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        let name = format!("{}_ctl_{}", inner.layout.prefix(), breaker);
        Subscription::from_task(tokio::spawn(keep_running(
            self.inner.conn.clone(),
            "command consumer",
            async move || {
                let config = consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: inner.layout.control_subject(&breaker),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: COMMAND_ACK_WAIT,
                    max_ack_pending: 16,
                    inactive_threshold: COMMAND_CONSUMER_IDLE,
                    ..Default::default()
                };
                let consumer = inner.stores.control.get_or_create_consumer(&name, config).await.map_err(backend)?;
                let mut messages = pull(&consumer, 16).await?;
                while let Some(Ok(message)) = messages.next().await {
                    match codec::decode_command(&breaker, &message.payload, &inner.limits) {
                        Ok(command) => {
                            if inbox.push(Input::Command(command), None).await.is_err() {
                                // Unacknowledged: redelivered to the next decider after the ack wait.
                                return Ok(Session::Stop);
                            }
                        }
                        Err(e) => inner.stats.reject("command", message.subject.as_str(), &e),
                    }
                    if let Err(e) = message.ack().await {
                        tracing::debug!(breaker = breaker.as_str(), error = %e, "command ack failed");
                    }
                }
                Ok(Session::Retry)
            },
        )))
    }

    fn watch_decision(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        // The watch and the direct reads run side by side, in one task: a watch that cannot
        // be (re)created (no JetStream leader for a while after a server died) must not
        // hold back the reads, which any replica answers.
        let watching = Arc::new(AtomicBool::new(false));
        let watch = watch_loop(inner.clone(), breaker.clone(), inbox.clone(), watching.clone());
        let reads = resync_loop(inner, breaker, inbox, watching);
        Subscription::from_task(tokio::spawn(async move {
            tokio::join!(watch, reads);
        }))
    }

    fn write_decision(&self, decision: Decision, expected: Revision) -> BoxFuture<WriteOutcome> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let breaker = decision.breaker.clone();
            let payload = match codec::encode_decision(&decision) {
                Ok(p) => Bytes::from(p),
                Err(e) => return WriteOutcome::Failed(backend(e)),
            };
            match inner.cas(&inner.stores.state, breaker.as_str(), payload, expected, None, None).await {
                Ok(Cas::Written(revision)) => {
                    inner.note_decision(&breaker, decision.id);
                    WriteOutcome::Written { revision }
                }
                Ok(Cas::Conflict) => match inner.read(&breaker).await {
                    Ok(read) => WriteOutcome::Rejected { current: read.decision, revision: read.revision },
                    Err(e) => WriteOutcome::Failed(e),
                },
                Err(e) => WriteOutcome::Failed(e),
            }
        })
    }

    fn read_decision(&self, breaker: &BreakerName) -> BoxFuture<Result<DecisionRead, TransportError>> {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        Box::pin(async move { inner.read(&breaker).await })
    }

    fn register_config(
        &self,
        breaker: &BreakerName,
        config: &BreakerConfig,
    ) -> BoxFuture<Result<ConfigOutcome, TransportError>> {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        let config = config.clone();
        Box::pin(async move {
            let bucket = &inner.stores.config;
            let payload = Bytes::from(codec::encode_config(&config).map_err(backend)?);
            if let Cas::Written(_) = inner.create(bucket, breaker.as_str(), payload, None).await? {
                return Ok(ConfigOutcome::Registered);
            }
            let entry = bucket.entry(breaker.as_str()).await.map_err(|e| inner.failure(e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(TransportError::Backend(format!("the config of {breaker} was deleted while registering")));
            };
            match codec::decode_config(&entry.value, &inner.limits) {
                Ok(existing) if existing == config => Ok(ConfigOutcome::Same),
                Ok(existing) => Ok(ConfigOutcome::Conflict { existing: Box::new(existing) }),
                Err(e) => {
                    inner.stats.reject("config", breaker.as_str(), &e);
                    Err(TransportError::Backend(format!("the fleet's config of {breaker} is unreadable: {e}")))
                }
            }
        })
    }

    fn configs(&self) -> BoxFuture<Result<Vec<(BreakerName, BreakerConfig)>, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let bucket = &inner.stores.config;
            let mut keys = bucket.keys().await.map_err(|e| inner.failure(e))?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| inner.failure(e))?;
                if out.len() >= MAX_CONFIGS {
                    break;
                }
                let Ok(name) = BreakerName::new(&key) else { continue };
                let Some(value) = bucket.get(key.as_str()).await.map_err(|e| inner.failure(e))? else { continue };
                match codec::decode_config(&value, &inner.limits) {
                    Ok(config) => out.push((name, config)),
                    Err(e) => inner.stats.reject("config", &key, &e),
                }
            }
            Ok(out)
        })
    }

    fn acquire_lease(
        &self,
        shard: LeaseShard,
        request: LeaseRequest,
    ) -> BoxFuture<Result<LeaseAcquire, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.acquire(shard, request).await })
    }

    fn renew_lease(
        &self,
        shard: LeaseShard,
        revision: Revision,
        term: Term,
        ttl: Duration,
    ) -> BoxFuture<Result<Option<Revision>, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let value = inner.lease_value(term, ttl)?;
            let ttl = inner.lease_ttl(ttl)?;
            Ok(inner.cas(&inner.stores.leases, &shard.to_string(), value, revision, None, ttl).await?.revision())
        })
    }

    fn release_lease(&self, shard: LeaseShard, revision: Revision) -> BoxFuture<Result<bool, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let deleted = inner
                .cas(
                    &inner.stores.leases,
                    &shard.to_string(),
                    Bytes::new(),
                    revision,
                    Some(("KV-Operation", "DEL")),
                    None,
                )
                .await?;
            Ok(deleted != Cas::Conflict)
        })
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<bool> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                // An outbox whose report is in flight is empty but not done: count the
                // publish loop's current report through `in_flight`.
                let pending: usize = lock(&inner.outboxes)
                    .values()
                    .map(|o| lock(&o.queue).len() + o.in_flight.load(Ordering::SeqCst))
                    .sum();
                if pending == 0 {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    fn watch_leases(&self, notify: Arc<Notify>) -> Subscription {
        let inner = self.inner.clone();
        Subscription::from_task(tokio::spawn(keep_running(self.inner.conn.clone(), "lease watch", async move || {
            let mut watch = inner.stores.leases.watch_all().await.map_err(backend)?;
            while let Some(Ok(entry)) = watch.next().await {
                // A delete is a step-down, a purge an expiry marker: the key is free.
                if entry.operation != kv::Operation::Put {
                    notify.notify_one();
                }
            }
            Ok(Session::Retry)
        })))
    }
}

impl Inner {
    /// Decodes one outcome message for `breaker`'s decider, counting what it rejects.
    fn decode_report(&self, breaker: &BreakerName, message: &jetstream::Message, sequence: u64) -> Option<Report> {
        let subject = message.subject.as_str();
        let Some((subject_breaker, node)) = self.layout.parse_outcome_subject(subject) else {
            self.stats.reject("outcome", subject, &DecodeError::BadSubject { subject: subject.to_owned() });
            return None;
        };
        if &subject_breaker != breaker {
            let error = DecodeError::WrongBreaker { expected: breaker.clone(), got: subject_breaker };
            self.stats.reject("outcome", subject, &error);
            return None;
        }
        let content_type = message.headers.as_ref().and_then(|h| header(h, codec::CONTENT_TYPE));
        match codec::decode_outcome(breaker, &node, content_type, &message.payload, &self.limits) {
            Ok(Outcome::Report(report)) => Some(report),
            Ok(Outcome::Foreign(foreign)) => {
                Some(foreign.into_report(breaker.clone(), node, sequence, self.latest_decision(breaker)))
            }
            Err(e) => {
                self.stats.reject("outcome", subject, &e);
                None
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(async_nats::HeaderValue::as_str)
}
