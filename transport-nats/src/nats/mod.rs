//! [`NatsTransport`]: the `breaker_actors::transport::Transport` of a node over NATS
//! `JetStream` (layout in `docs/nats.md`). It owns the connection and its state, provisioning at
//! connect, the ordered per-breaker report publisher, the consumers and watches that feed
//! breaker inboxes, and the CAS writes to the lease and state buckets. Everything decoded
//! from the wire goes through [`crate::codec`]; what it rejects is counted in
//! [`TransportStats`] and skipped, never fatal.
//!
//! This module holds the configuration, the transport and its `Transport` impl; each concern
//! behind them has a file of its own: `connect.rs` (auth, TLS, contexts), `connection.rs` (the
//! connections and their state), `session.rs` (keeping consumers and watches going),
//! `outbox.rs` (the report publisher), `feed.rs` (reports and commands to deciders),
//! `decisions.rs` (the decision watch and resync), `buckets.rs` (CAS writes and decision reads),
//! `lease.rs` (acquiring leases), `describe.rs` (describe requests), `stats.rs` (the
//! counters) and `error.rs` (the errors).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};
use breaker_actors::machine::{
    BreakerConfig, BreakerName, Command, ConfigRecord, Decision, Millis, NodeId, Report, Term,
};
use breaker_actors::shell::{BatchLimits, ReportBatcher, Urgency};
use breaker_actors::transport::{
    BoxFuture, ConfigWrite, ConnState, DecisionRead, Describer, FleetConfig, Inbox, LeaseAcquire, LeaseRequest,
    LeaseShard, Revision, Subscription, Transport, TransportError, WriteOutcome,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{self, Limits};

mod buckets;
pub mod connect;
mod connection;
mod decisions;
mod describe;
mod error;
mod feed;
mod lease;
mod outbox;
mod session;
mod stats;

pub use connect::{Auth, AuthError, ConnectHook, ConnectRole, ConnectionSettings, NatsContext, Setting, Tls};
pub use error::ConnectError;
pub use stats::{REFUSED_SOURCES, StatsSnapshot, TransportStats};

use crate::layout::Layout;
use crate::provision::{self, LeaseExpiry, ProvisionError, Provisioned, StoreSettings};
use buckets::Cas;
use connection::{AbortOnDrop, connect_options, connection_state, follow_connection};
use decisions::DecisionWatch;
use describe::answer_describe;
use error::backend;
use feed::{NodeCommands, ReportFeed};
use outbox::{Outbox, fresh_incarnation, publish_loop};
use session::{Session, keep_running};

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

/// The most breaker configs [`Transport::configs`] lists.
const MAX_CONFIGS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain field update: a poisoned lock holds valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
