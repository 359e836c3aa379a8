//! [`NatsTransport`]: the `breaker_actors::transport::Transport` of a node over NATS
//! `JetStream` (layout in `docs/nats.md`). It owns the connection and its state, provisioning at
//! connect, the ordered per-breaker report publisher, the consumers and watches that feed
//! breaker inboxes, and the CAS writes to the lease and state buckets. Everything decoded
//! from the wire goes through [`crate::codec`]; what it rejects is counted in
//! [`TransportStats`] and skipped, never fatal.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, kv, message::PublishMessage};
use async_nats::{ConnectOptions, Event, HeaderMap};
use breaker_actors::machine::{
    BreakerConfig, BreakerName, Command, ConfigRecord, Decision, Millis, NodeId, Report, Term, next_term,
};
use breaker_actors::observe::names;
use breaker_actors::shell::{Batch, BatchLimits, ReportBatcher, Urgency};
use breaker_actors::transport::{
    BoxFuture, ConfigWrite, ConnState, DecisionRead, Describer, FleetConfig, Inbox, LeaseAcquire, LeaseRequest,
    LeaseShard, Revision, Subscription, Transport, TransportError, WriteOutcome,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{self, DecodeError, LeaseHolder, LeaseValue, Limits, NodeBatch, TermRecord};

pub mod connect;
mod decisions;
mod feed;

pub use connect::{Auth, AuthError, ConnectHook, ConnectRole, ConnectionSettings, NatsContext, Setting, Tls};

use crate::layout::{self, Layout};
use crate::provision::{self, LeaseExpiry, ProvisionError, Provisioned, StoreSettings};
use decisions::DecisionWatch;
use feed::{NodeCommands, ReportFeed};

/// How a node connects to NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs (several for a cluster). Empty: those of `NATS_URL` (comma-separated).
    pub servers: Vec<String>,
    /// This node.
    pub node: NodeId,
    /// Stream, bucket and subject names.
    pub layout: Layout,
    /// Sizes and ages used when creating streams and buckets.
    pub store: StoreSettings,
    /// Decoder limits.
    pub limits: Limits,
    /// Credentials and TLS (see [`connect`]): user/password, token, nkey, `.creds`; a CA,
    /// a client certificate.
    pub connection: ConnectionSettings,
    /// Changes the options of each of the node's connections before it is made, for what
    /// [`NatsConfig::connection`] does not cover (see [`ConnectHook`]).
    pub connect_hook: Option<ConnectHook>,
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
    /// The least time between two report messages of this node (each carries every
    /// breaker's reports): the flush interval. A `Registry` started on this transport sets
    /// it to its own flush interval.
    pub report_interval: Duration,
    /// How long reports that cannot matter to a decision (successes while closed) may wait:
    /// a quiet, healthy node sends one message per this period.
    pub lazy_report_interval: Duration,
}

/// The oldest nats-server this transport works with (`major`, `minor`): direct gets of the
/// next entry on a wildcard subject (the node's resync) and multi-filter consumers need 2.10.
pub const MIN_SERVER: (u64, u64) = (2, 10);

impl NatsConfig {
    /// Defaults for `node` connecting to `servers`.
    pub fn new(servers: Vec<String>, node: NodeId) -> Self {
        Self {
            servers,
            node,
            layout: Layout::default(),
            store: StoreSettings::default(),
            limits: Limits::default(),
            connection: ConnectionSettings::default(),
            connect_hook: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_millis(500),
            ping_interval: Duration::from_millis(300),
            decision_resync: Duration::from_secs(1),
            report_interval: Duration::from_millis(5),
            lazy_report_interval: Duration::from_millis(100),
        }
    }

    /// Defaults for `node` with the servers, credentials and TLS of a nats CLI context
    /// ([`NatsContext`]): `name`, else the selected one (`NATS_CONTEXT`, else the nats CLI's
    /// `context.txt`). `None` when no name is given and none is selected.
    pub fn from_context(name: Option<&str>, node: NodeId) -> Result<Option<Self>, AuthError> {
        let context = match name {
            Some(name) => {
                let dir = NatsContext::config_dir().unwrap_or_else(|| std::path::PathBuf::from(".config/nats"));
                Some(NatsContext::load(&dir, name)?)
            }
            None => NatsContext::load_selected()?,
        };
        Ok(context.map(|context| {
            let mut config = Self::new(context.servers(), node);
            config.connection = context.settings();
            config
        }))
    }
}

/// Why [`NatsTransport::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// No server URL was given, and `NATS_URL` names none.
    NoServers,
    /// A credentials or TLS file could not be read or is not what it should be.
    Auth(AuthError),
    /// The client could not connect.
    Connect(async_nats::ConnectError),
    /// Streams or buckets could not be created or are incompatible.
    Provision(ProvisionError),
    /// The server is older than [`MIN_SERVER`].
    ServerTooOld {
        /// Its version.
        version: String,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoServers => f.write_str("no NATS server URL given (NatsConfig::servers is empty, so is NATS_URL)"),
            Self::Auth(e) => write!(f, "NATS connection settings: {e}"),
            Self::Connect(e) => write!(f, "connecting to NATS: {e}"),
            Self::Provision(e) => write!(f, "provisioning: {e}"),
            Self::ServerTooOld { version } => {
                write!(f, "nats-server {version} is too old: Fusebox needs {}.{} or later", MIN_SERVER.0, MIN_SERVER.1)
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Auth(e) => Some(e),
            Self::Provision(e) => Some(e),
            Self::NoServers | Self::ServerTooOld { .. } => None,
        }
    }
}

/// What a node's transport rejected, published and lost so far.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// The node, the `node` label of the refused-messages counter.
    node: String,
    rejected_outcomes: AtomicU64,
    rejected_commands: AtomicU64,
    rejected_decisions: AtomicU64,
    rejected_configs: AtomicU64,
    reports_published: AtomicU64,
    reports_coalesced: AtomicU64,
    reports_lost: AtomicU64,
    publish_retries: AtomicU64,
    outcomes_delivered: AtomicU64,
    batches_published: AtomicU64,
    rejected_describes: AtomicU64,
    describes_answered: AtomicU64,
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
    /// Reports acknowledged by the stream (inside batches).
    pub reports_published: u64,
    /// Reports merged into a report still waiting to be published.
    pub reports_coalesced: u64,
    /// Reports given up on (buffer full while unreachable, or older than the stream keeps).
    pub reports_lost: u64,
    /// Publish attempts that failed and were retried.
    pub publish_retries: u64,
    /// Reports (own or foreign) handed to a decider's inbox.
    pub outcomes_delivered: u64,
    /// Messages of reports acknowledged by the stream (each a batch of every breaker's).
    pub batches_published: u64,
    /// Describe requests refused (no reply subject, a bad subject, undecodable): not
    /// answered.
    pub rejected_describes: u64,
    /// Describe requests this node answered (as the breaker's decider).
    pub describes_answered: u64,
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
            batches_published: get(&self.batches_published),
            rejected_describes: get(&self.rejected_describes),
            describes_answered: get(&self.describes_answered),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stats of `node`'s transport, its refused-message series registered at 0 (every source
    /// and kind: `rate()` works from the first scrape).
    fn new(node: &NodeId) -> Self {
        let stats = Self { node: node.as_str().to_owned(), ..Self::default() };
        for source in REFUSED_SOURCES {
            for kind in DecodeError::KINDS {
                stats.refused(source, kind).increment(0);
            }
        }
        stats
    }

    fn refused(&self, source: &'static str, kind: &'static str) -> metrics::Counter {
        let labels = [("node", self.node.clone()), ("source", source.to_owned()), ("kind", kind.to_owned())];
        metrics::counter!(names::REFUSED_MESSAGES, &labels)
    }

    fn reject(&self, source: &'static str, subject: &str, error: &DecodeError) {
        let counter = match source {
            "outcome" => &self.rejected_outcomes,
            "command" => &self.rejected_commands,
            "decision" => &self.rejected_decisions,
            "describe" => &self.rejected_describes,
            _ => &self.rejected_configs,
        };
        Self::bump(counter);
        self.refused(source, error.kind()).increment(1);
        tracing::warn!(source, subject, %error, "rejected a message");
    }
}

/// Where a refused message came from: the `source` values of `fusebox_refused_messages_total`.
pub const REFUSED_SOURCES: [&str; 7] = ["outcome", "command", "decision", "describe", "config", "lease", "term_record"];

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
/// Reads of a lease key just lost to another node before its holder counts as unknown.
const LEASE_READ_ATTEMPTS: u32 = 3;
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
    /// The connection of lease upkeep, and the lease bucket bound through it.
    lease_js: jetstream::Context,
    leases: kv::Store,
    /// The node's one watch of the state bucket.
    decisions: Arc<DecisionWatch>,
    /// The decider's one report feed.
    feed: Arc<ReportFeed>,
    /// The node's pulls from the fleet's command consumer.
    commands: Arc<NodeCommands>,
    /// The node's reports waiting for their one message per flush interval.
    outbox: Outbox,
    /// New at every start: batch ids of two runs of a node never collide.
    incarnation: u64,
    origin: Instant,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The batcher and the publisher task's doorbell.
struct Outbox {
    batcher: Mutex<ReportBatcher>,
    ready: Notify,
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
    /// tracking the connection state. Two connections: one for lease upkeep alone (so that
    /// renewals never queue behind reports and decisions), one for everything else.
    pub async fn connect(config: NatsConfig) -> Result<Arc<Self>, ConnectError> {
        let servers = if config.servers.is_empty() { connect::servers_from_env() } else { config.servers.clone() };
        if servers.is_empty() {
            return Err(ConnectError::NoServers);
        }
        let (conn_tx, conn) = watch::channel(ConnState { connected: true, losses: 0 });
        // Boxed, like provisioning below: both hold a lot of state across their awaits, which
        // would otherwise make every caller's future large.
        let options = connect_options(&config, ConnectRole::Main, Some(conn_tx))?;
        let client = Box::pin(options.connect(servers.as_slice())).await.map_err(ConnectError::Connect)?;
        let lease_options = connect_options(&config, ConnectRole::Leases, None)?;
        let lease_client = Box::pin(lease_options.connect(servers.as_slice())).await.map_err(ConnectError::Connect)?;
        Box::pin(Self::start(config, client, lease_client, conn, None)).await
    }

    /// A transport over a client the caller built and configured (auth, TLS, reconnection
    /// policy: everything of [`NatsConfig`] about connecting is ignored). Every role shares
    /// this one connection, lease upkeep too: renewals can queue behind a burst of reports
    /// or a busy application's own traffic on it, so give leases a TTL with room for that
    /// (or keep two connections with [`NatsConfig::connect_hook`]). The connection state
    /// the breakers follow is read from the client every 20 ms (a client built elsewhere
    /// has no event callback of ours): a loss is noticed up to that much later, and a loss
    /// shorter than that is still counted (by the client's count of connections).
    pub async fn with_client(client: async_nats::Client, config: NatsConfig) -> Result<Arc<Self>, ConnectError> {
        let (conn_tx, conn) =
            watch::channel(connection_state(&client, client.statistics().connects.load(Ordering::Relaxed)));
        let follower = tokio::spawn(follow_connection(client.clone(), conn_tx));
        Box::pin(Self::start(config, client.clone(), client, conn, Some(follower))).await
    }

    /// Checks the server, provisions and binds the buckets, and starts the node's tasks over
    /// `client` (everything) and `lease_client` (lease upkeep; may be the same).
    async fn start(
        config: NatsConfig,
        client: async_nats::Client,
        lease_client: async_nats::Client,
        conn: watch::Receiver<ConnState>,
        follower: Option<JoinHandle<()>>,
    ) -> Result<Arc<Self>, ConnectError> {
        // Dropped on an early return: the follower must not outlive a failed start.
        let follower = AbortOnDrop(follower);
        let version = client.server_info().version;
        if !provision::version_at_least(&version, MIN_SERVER.0, MIN_SERVER.1) {
            return Err(ConnectError::ServerTooOld { version });
        }
        let js = jetstream::ContextBuilder::new().timeout(config.request_timeout).build(client.clone());
        let stores = Box::pin(provision::provision(&js, &config.layout, &config.store, &version))
            .await
            .map_err(ConnectError::Provision)?;
        let lease_js = jetstream::ContextBuilder::new().timeout(config.request_timeout).build(lease_client);
        let leases = lease_js.get_key_value(config.layout.lease_bucket()).await.map_err(|e| {
            ConnectError::Provision(ProvisionError::Server {
                doing: "binding the lease bucket on the lease connection".to_owned(),
                error: e.to_string(),
            })
        })?;
        let report_max_age_ms = u64::try_from(stores.report_max_age.as_millis()).unwrap_or(u64::MAX);
        let limits = BatchLimits {
            interval_ms: u64::try_from(config.report_interval.as_millis()).unwrap_or(u64::MAX).max(1),
            lazy_ms: u64::try_from(config.lazy_report_interval.as_millis()).unwrap_or(u64::MAX),
            max_age_ms: report_max_age_ms,
            ..BatchLimits::default()
        };
        let stats = TransportStats::new(&config.node);
        let inner = Arc::new(Inner {
            node: config.node,
            layout: config.layout,
            limits: config.limits,
            decision_resync: config.decision_resync.max(Duration::from_millis(10)),
            request_timeout: config.request_timeout,
            client,
            js,
            stores,
            conn,
            stats,
            lease_js,
            leases,
            decisions: DecisionWatch::new(config.decision_resync.max(Duration::from_millis(10))),
            feed: Arc::default(),
            commands: Arc::default(),
            outbox: Outbox { batcher: Mutex::new(ReportBatcher::new(limits)), ready: Notify::new() },
            incarnation: fresh_incarnation(),
            origin: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        });
        inner.decisions.start(&inner);
        let publisher = tokio::spawn(publish_loop(inner.clone()));
        lock(&inner.tasks).push(publisher);
        if let Some(follower) = follower.disarm() {
            lock(&inner.tasks).push(follower);
        }
        Ok(Arc::new(Self { inner }))
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
        let entry = self.inner.leases.entry(shard.to_string()).await.map_err(|e| self.inner.failure(e))?;
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

    /// Milliseconds since the transport started: the batcher's timeline.
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The connection that writes to `bucket`: lease upkeep has one of its own, so that it
    /// never queues behind the node's reports and decisions.
    fn js_for(&self, bucket: &kv::Store) -> &jetstream::Context {
        if bucket.name == self.leases.name { &self.lease_js } else { &self.js }
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
        let ack = match self.js_for(bucket).send_publish(Self::kv_subject(bucket, key), message).await {
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
            Ok(decision) => DecisionRead { decision: Some(decision), revision: entry.revision },
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
        let bucket = &self.leases;
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

    /// What holds `key` now, for a lease manager that could not take it. Read right after
    /// losing the race, a replica may not have the winner's value yet (a direct read is
    /// answered by any replica): read again a few times, then report the key held at an
    /// unknown revision (0), which the next attempt sorts out.
    async fn lease_held(&self, key: &str) -> Result<LeaseAcquire, TransportError> {
        for attempt in 0..LEASE_READ_ATTEMPTS {
            match self.leases.entry(key).await.map_err(|e| self.failure(e))? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let ttl = match codec::decode_lease(&e.value, &self.limits) {
                        Ok(LeaseHolder::Holder(value)) => Some(Duration::from_millis(value.ttl_ms)),
                        Ok(LeaseHolder::Legacy(_)) => None,
                        Err(error) => {
                            self.stats.reject("lease", key, &error);
                            None
                        }
                    };
                    return Ok(LeaseAcquire::Held { revision: e.revision, ttl });
                }
                _ => tokio::time::sleep(RETRY_MIN * (attempt + 1)).await,
            }
        }
        Ok(LeaseAcquire::Held { revision: 0, ttl: None })
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

/// The options of one of the node's connections (`conn_tx`: the one whose state the
/// breakers follow): the transport's timeouts and reconnection policy, the connection
/// settings, then the hook; the state callback last, so that no hook replaces it.
fn connect_options(
    config: &NatsConfig,
    role: ConnectRole,
    conn_tx: Option<watch::Sender<ConnState>>,
) -> Result<ConnectOptions, ConnectError> {
    let max_delay = config.max_reconnect_delay;
    let name = match role {
        ConnectRole::Main => format!("fusebox-{}", config.node),
        ConnectRole::Leases => format!("fusebox-{}-leases", config.node),
    };
    let options = ConnectOptions::new()
        .name(name)
        .connection_timeout(config.connect_timeout)
        .ping_interval(config.ping_interval.max(Duration::from_millis(10)))
        .request_timeout(Some(config.request_timeout))
        .reconnect_delay_callback(move |attempts| backoff(u32::try_from(attempts).unwrap_or(u32::MAX)).min(max_delay));
    let mut options = config.connection.apply(options).map_err(ConnectError::Auth)?;
    if let Some(hook) = &config.connect_hook {
        options = hook.call(role, options);
    }
    if let Some(conn_tx) = conn_tx {
        options = options.event_callback(move |event| {
            let conn_tx = conn_tx.clone();
            async move { on_event(&conn_tx, &event) }
        });
    }
    Ok(options)
}

/// How often a client the transport did not build is asked for its connection state.
const STATE_POLL: Duration = Duration::from_millis(20);

/// The state of `client` as the breakers see it: connected or not, and how many times the
/// connection was lost (each reconnection since `first_connects` ended one loss; being
/// down now is one more).
fn connection_state(client: &async_nats::Client, first_connects: u64) -> ConnState {
    let reconnections = client.statistics().connects.load(Ordering::Relaxed).saturating_sub(first_connects);
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    ConnState { connected, losses: reconnections + u64::from(!connected) }
}

/// Follows the state of a client built elsewhere (no event callback of ours) by polling.
async fn follow_connection(client: async_nats::Client, conn_tx: watch::Sender<ConnState>) {
    let first_connects = client.statistics().connects.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval(STATE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut now = connection_state(&client, first_connects);
        conn_tx.send_if_modified(|seen| {
            // The count and the state are two reads: one may be a step ahead of the other,
            // and the count must never go back.
            now.losses = now.losses.max(seen.losses);
            let changed = *seen != now;
            *seen = now;
            changed
        });
    }
}

/// Aborts a task when dropped, unless disarmed.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn disarm(mut self) -> Option<JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A number no earlier run of this node used (wall-clock nanoseconds and the process id:
/// an id, never a time anything is decided on).
fn fresh_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0)) ^ (u64::from(std::process::id()) << 48)
}

/// The node's one report publisher: sends what the batcher says when it says, one message
/// in flight, and tells it how each publish went.
async fn publish_loop(inner: Arc<Inner>) {
    let mut conn = inner.conn.clone();
    let subject = inner.layout.batch_subject(&inner.node);
    let mut attempt = 0u32;
    let mut counted = (0u64, 0u64);
    loop {
        let now = inner.now();
        let (batch, timeout) = {
            let mut batcher = lock(&inner.outbox.batcher);
            let batch = batcher.poll_transmit(now);
            let (lost, coalesced) = (batcher.lost(), batcher.coalesced());
            let newly_lost = lost.saturating_sub(counted.0);
            if newly_lost > 0 {
                inner.stats.reports_lost.fetch_add(newly_lost, Ordering::Relaxed);
                for (breaker, n) in batcher.take_lost() {
                    let labels = [("breaker", breaker.as_str().to_owned()), ("node", inner.node.as_str().to_owned())];
                    metrics::counter!(names::REPORTS_LOST, &labels).increment(n);
                }
            }
            inner.stats.reports_coalesced.fetch_add(coalesced.saturating_sub(counted.1), Ordering::Relaxed);
            counted = (lost, coalesced);
            (batch, batcher.poll_timeout())
        };
        let Some(batch) = batch else {
            let wait = timeout.map(|at| Duration::from_millis(at.since(now)));
            tokio::select! {
                () = inner.outbox.ready.notified() => {}
                () = sleep_for(wait) => {}
            }
            continue;
        };
        let count = batch.reports.len() as u64;
        let published = if inner.is_connected() { publish_batch(&inner, &subject, &batch).await } else { false };
        if published {
            lock(&inner.outbox.batcher).handle_acked(batch.seq);
            attempt = 0;
            TransportStats::bump(&inner.stats.batches_published);
            inner.stats.reports_published.fetch_add(count, Ordering::Relaxed);
        } else {
            lock(&inner.outbox.batcher).handle_failed(batch.seq);
            TransportStats::bump(&inner.stats.publish_retries);
            if inner.is_connected() {
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            } else {
                // Until the connection returns, or at most a while: the batcher gives up on
                // reports older than the stream keeps.
                let _ = tokio::time::timeout(RETRY_MAX, until_connected(&mut conn)).await;
            }
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Publishes one batch and waits for its ack: `true` if the stream has it.
async fn publish_batch(inner: &Inner, subject: &str, batch: &Batch) -> bool {
    let node_batch = NodeBatch {
        version: codec::BATCH_VERSION,
        node: inner.node.clone(),
        incarnation: inner.incarnation,
        seq: batch.seq,
        reports: batch.reports.clone(),
    };
    let payload = match codec::encode_batch(&node_batch) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(error = %e, "batch cannot be encoded");
            return false;
        }
    };
    let message = PublishMessage::build()
        .payload(payload)
        .message_id(codec::batch_msg_id(&inner.node, inner.incarnation, batch.seq))
        .header(codec::CONTENT_TYPE, codec::POSTCARD_BATCH);
    let acked = match inner.js.send_publish(subject.to_owned(), message).await {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    match acked {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(subject, error = %e, "batch publish failed; retrying");
            false
        }
    }
}

impl Transport for NatsTransport {
    fn node(&self) -> &NodeId {
        &self.inner.node
    }

    fn connection(&self) -> watch::Receiver<ConnState> {
        self.inner.conn.clone()
    }

    fn publish_report(&self, report: Report) -> BoxFuture<Result<(), TransportError>> {
        let (_, closed) = self.inner.decisions.latest(&report.breaker);
        let urgency = Urgency::of(&report, closed);
        let now = self.inner.now();
        lock(&self.inner.outbox.batcher).handle_report(now, report, urgency);
        self.inner.outbox.ready.notify_one();
        Box::pin(std::future::ready(Ok(())))
    }

    fn consume_reports(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        self.inner.feed.register(&self.inner, breaker, inbox)
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
        self.inner.commands.register(&self.inner, breaker, inbox)
    }

    fn watch_decision(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        self.inner.decisions.register(&self.inner, breaker, &inbox)
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
                Ok(Cas::Written(revision)) => WriteOutcome::Written { revision },
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
        Box::pin(async move {
            // After an outage every breaker resyncs: answered from the node's one catch-up
            // with the bucket after now, not by a read per breaker.
            let patience = inner.decision_resync.saturating_mul(2).min(inner.request_timeout);
            match inner.decisions.current(&breaker, patience).await {
                Some(read) => Ok(read),
                None => inner.read(&breaker).await,
            }
        })
    }

    fn read_config(&self, breaker: &BreakerName) -> BoxFuture<Result<Option<FleetConfig>, TransportError>> {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        Box::pin(async move {
            let entry = inner.stores.config.entry(breaker.as_str()).await.map_err(|e| inner.failure(e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Ok(None);
            };
            match codec::decode_config_record(&entry.value, &inner.limits) {
                Ok(record) => Ok(Some(FleetConfig { record, revision: entry.revision })),
                Err(e) => {
                    inner.stats.reject("config", breaker.as_str(), &e);
                    Err(TransportError::Backend(format!("the fleet's config of {breaker} is unreadable: {e}")))
                }
            }
        })
    }

    fn write_config(
        &self,
        breaker: &BreakerName,
        record: ConfigRecord,
        expected: Revision,
    ) -> BoxFuture<Result<ConfigWrite, TransportError>> {
        let inner = self.inner.clone();
        let breaker = breaker.clone();
        Box::pin(async move {
            let payload = Bytes::from(codec::encode_config_record(&record).map_err(backend)?);
            let bucket = &inner.stores.config;
            let written = if expected == 0 {
                inner.create(bucket, breaker.as_str(), payload, None).await?
            } else {
                inner.cas(bucket, breaker.as_str(), payload, expected, None, None).await?
            };
            Ok(match written {
                Cas::Written(revision) => ConfigWrite::Written(revision),
                Cas::Conflict => ConfigWrite::Conflict,
            })
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
            Ok(inner.cas(&inner.leases, &shard.to_string(), value, revision, None, ttl).await?.revision())
        })
    }

    fn release_lease(&self, shard: LeaseShard, revision: Revision) -> BoxFuture<Result<bool, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let deleted = inner
                .cas(&inner.leases, &shard.to_string(), Bytes::new(), revision, Some(("KV-Operation", "DEL")), None)
                .await?;
            Ok(deleted != Cas::Conflict)
        })
    }

    fn set_report_interval(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        lock(&self.inner.outbox.batcher).set_interval(ms);
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<bool> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            lock(&inner.outbox.batcher).handle_hurry();
            inner.outbox.ready.notify_one();
            loop {
                if lock(&inner.outbox.batcher).pending() == 0 {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    fn serve_describe(&self, describer: Describer) -> Subscription {
        let inner = self.inner.clone();
        Subscription::from_task(tokio::spawn(keep_running(self.inner.conn.clone(), "describe", async move || {
            // One core NATS subscription for every breaker: no JetStream resource per node.
            let mut requests = inner.client.subscribe(inner.layout.describe_subjects()).await.map_err(backend)?;
            // One request at a time: they are rare, and each waits at most an actor call.
            while let Some(message) = requests.next().await {
                answer_describe(&inner, &describer, message).await;
            }
            Ok(Session::Retry)
        })))
    }

    fn watch_leases(&self, notify: Arc<Notify>) -> Subscription {
        let inner = self.inner.clone();
        Subscription::from_task(tokio::spawn(keep_running(self.inner.conn.clone(), "lease watch", async move || {
            let mut watch = inner.leases.watch_all().await.map_err(backend)?;
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

/// Answers one describe request if this node decides its breaker; a request that is not
/// one (no reply subject, a bad subject, a payload that does not decode) is counted and
/// dropped, like a request for a breaker decided elsewhere (which is not counted: every
/// node but the decider sees it).
async fn answer_describe(inner: &Inner, describer: &Describer, message: async_nats::Message) {
    let subject = message.subject.as_str();
    let Some(breaker) = inner.layout.parse_describe_subject(subject) else {
        let error = DecodeError::BadSubject { subject: subject.to_owned() };
        return inner.stats.reject("describe", subject, &error);
    };
    if let Err(error) = codec::decode_describe_request(&breaker, &message.payload, &inner.limits) {
        return inner.stats.reject("describe", subject, &error);
    }
    let Some(reply) = message.reply.clone() else {
        let error =
            DecodeError::Malformed { format: codec::Format::Json, detail: "no reply subject to answer on".to_owned() };
        return inner.stats.reject("describe", subject, &error);
    };
    let Some(description) = describer(breaker.clone()).await else {
        return;
    };
    let answer = codec::DescribeReply::new(breaker, description);
    match codec::encode_describe_reply(&answer) {
        Ok(payload) => match inner.client.publish(reply, payload.into()).await {
            Ok(()) => TransportStats::bump(&inner.stats.describes_answered),
            Err(e) => tracing::debug!(subject, error = %e, "could not answer a describe request"),
        },
        Err(e) => tracing::warn!(subject, error = %e, "could not encode a describe answer"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(async_nats::HeaderValue::as_str)
}
