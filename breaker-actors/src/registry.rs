//! The [`Registry`]: one per node. It spawns a breaker actor per breaker name and hands out
//! [`Breaker`] handles (get-or-create, typed errors), supervises the actors (a panicking
//! one is restarted with its state recovered from the decision bucket), runs the node's
//! lease manager, publishes operators' commands ([`Registry::command`]) and shuts
//! everything down gracefully.
//!
//! # Lease shards
//!
//! Deciding is spread over a fixed number of lease keys: breaker `name` belongs to shard
//! `fnv1a64(name) % shards` ([`lease_shard`]), FNV-1a 64-bit over the name's UTF-8 bytes
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`; test vectors:
//! `""` → `0xcbf29ce484222325`, `"a"` → `0xaf63dc4c8601ec8c`, `"foobar"` →
//! `0x85944171f73967e8`). Every node of a fleet must use the same number of shards.
//!
//! The lease manager competes for the shards of the breakers this node has, renews a held
//! shard every `ttl / 3` (a renewal's `sent_at` is when it was sent, on the machine's
//! timeline), and fans `LeaseGained` / `LeaseRenewed` / `LeaseLost` out to the shard's
//! breakers. Lease upkeep is the manager's only work: due renewals go out first and
//! together, then due acquisitions together, each awaited at most half a renewal interval.
//! The holder of a shard also adopts every breaker of that shard found in the fleet's config
//! bucket, so that no breaker is left without a decider because its own nodes lost the race
//! for the shard to a node that never registered it: a task of its own lists the bucket
//! once after each acquisition and every 30 s, so a slow listing never delays a renewal.
//!
//! The manager asks for a term above the newest one the shard's breakers were offered in a
//! decision (and above any newer term a step-down named), so that a rebuilt lease bucket,
//! whose revisions restart at 1, never grants a term below the stored decisions (see
//! `machine::next_term`). A value that holds the key with a revision that does not move for
//! a whole TTL (the larger of this node's and the value's) is dead, whatever it is (garbage,
//! a value written without a TTL that never expires): the manager then replaces it by CAS on
//! that revision.
//!
//! When a breaker's machine steps down for any reason, the manager releases the shard's
//! lease (delete with the expected revision: harmless if the key has moved on) and tells
//! the shard's other breakers it is lost: one term covers the whole shard, and a machine
//! never leads a term twice, so the shard needs a new term before that breaker can be
//! decided again. After a step-down other than for shutdown, the manager waits one retry
//! interval before competing again, so that a node whose writes fail does not grab the
//! shard straight back. (The fleet harness in `model-check` leaves the key to expire
//! instead; releasing only shortens the gap, and terms fence whichever decider is stale.)
//! A restarted actor never rejoins the term its predecessor led (its decisions may still
//! be in flight): the manager releases and re-acquires the shard for a new term.

// `shard` and `shared` are both words of the domain, not typos of each other.
#![allow(clippy::similar_names)]

mod lease;
mod supervisor;
mod tuning;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use self::lease::LeaseManager;
use self::supervisor::Supervisor;
use crate::actor::{ActorArgs, BreakerActor, BreakerMsg};
use crate::hot::{Breaker, HotPath, HotSettings, Undrained};
use crate::machine::{
    BreakerConfig, BreakerName, Command, CommandKind, ConfigError, DecisionId, MAX_TEXT_LEN, NameError, NodeId,
    OverrideError, ValidConfig, WIRE_VERSION, check_override,
};
use crate::node::{LeaseCmd, NodeContext, Settings};
use crate::observe::{BreakerEvent, BreakerMetrics, names};
use crate::transport::memory::MemoryBroker;
use crate::transport::{
    Describer, Description, INBOX_CAPACITY, Inbox, LeaseShard, Subscription, Transport, TransportError,
};

pub use crate::node::HealthCheckFn;

/// Restarts of one breaker actor after which the registry gives up on it (its hot path
/// keeps the last snapshot).
pub const MAX_RESTARTS: u32 = 16;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The lease shard of breaker `name` among `shards` (see the module documentation).
pub fn lease_shard(name: &BreakerName, shards: u32) -> LeaseShard {
    let shard = fnv1a64(name.as_str().as_bytes()) % u64::from(shards.max(1));
    LeaseShard(u32::try_from(shard).unwrap_or(0))
}

/// What the registry refused, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryError {
    /// The registry was shut down.
    ShutDown,
    /// A breaker name or node id is not valid.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// The breaker config is not valid (the error names the field).
    InvalidConfig(ConfigError),
    /// The fleet's config of the breaker, which this node would follow (`docs/tuning.md`),
    /// is not valid here (written by a newer version of Fusebox, or by hand).
    FleetConfigInvalid {
        /// The breaker.
        breaker: BreakerName,
        /// What is wrong with it.
        error: ConfigError,
    },
    /// The breaker's config in the fleet kept changing while this node settled it (every
    /// CAS lost, `attempts` times).
    ConfigContended {
        /// The breaker.
        breaker: BreakerName,
        /// Tries made.
        attempts: u32,
    },
    /// The breaker did not learn the fleet's state in time; it keeps trying (a later get
    /// may succeed).
    BootstrapTimeout {
        /// The breaker.
        breaker: BreakerName,
        /// How long the get waited.
        waited: Duration,
    },
    /// A registry setting is out of range.
    InvalidSetting {
        /// Which.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The transport failed.
    Transport(TransportError),
    /// An actor could not be spawned.
    Spawn(String),
    /// No breaker by that name on this node.
    NoSuchBreaker(BreakerName),
    /// A command's free text is longer than [`MAX_TEXT_LEN`] bytes.
    TextTooLong {
        /// Which text (`actor` or `reason`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A command's time box cannot be (zero, over 7 days, or on a reset).
    BadOverride(OverrideError),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShutDown => f.write_str("the registry was shut down"),
            Self::InvalidName { name, error } => write!(f, "invalid name {name:?}: {error}"),
            Self::InvalidConfig(e) => e.fmt(f),
            Self::FleetConfigInvalid { breaker, error } => {
                write!(f, "the fleet's config of breaker {breaker} is not valid here: {error}")
            }
            Self::ConfigContended { breaker, attempts } => {
                write!(f, "the fleet's config of breaker {breaker} changed under each of {attempts} tries to settle it")
            }
            Self::BootstrapTimeout { breaker, waited } => {
                write!(f, "breaker {breaker} did not learn the fleet state within {} ms", waited.as_millis())
            }
            Self::InvalidSetting { field, problem } => write!(f, "invalid registry setting {field}: {problem}"),
            Self::Transport(e) => e.fmt(f),
            Self::Spawn(e) => write!(f, "could not spawn a breaker actor: {e}"),
            Self::NoSuchBreaker(b) => write!(f, "no breaker {b} on this node"),
            Self::TextTooLong { field, len, max } => {
                write!(f, "command {field} is {len} bytes long; at most {max} are allowed")
            }
            Self::BadOverride(e) => write!(f, "invalid time-boxed command: {e}"),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidName { error, .. } => Some(error),
            Self::InvalidConfig(error) | Self::FleetConfigInvalid { error, .. } => Some(error),
            Self::Transport(error) => Some(error),
            Self::BadOverride(error) => Some(error),
            _ => None,
        }
    }
}

struct Entry {
    config: BreakerConfig,
    valid: Arc<ValidConfig>,
    hot: Arc<HotPath>,
    inbox: Inbox,
    shard: LeaseShard,
    actor: ActorRef<BreakerMsg>,
    bootstrapped: Arc<watch::Sender<bool>>,
    announced: Arc<Mutex<DecisionId>>,
    // Read by the test hooks only (feature `test-hooks`).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    restarts: u32,
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    timer_messages: Arc<std::sync::atomic::AtomicU64>,
    flush: Arc<FlushTarget>,
    metrics: Arc<BreakerMetrics>,
}

/// What the node's flusher needs of one breaker: its hot path, its actor (the current one:
/// a restart replaces it) and whether a flush is already in its mailbox; and its inbox, for
/// the connection watcher.
struct FlushTarget {
    hot: Arc<HotPath>,
    inbox: Inbox,
    actor: Mutex<ActorRef<BreakerMsg>>,
    pending: Arc<AtomicBool>,
}

/// The node's connection watcher: rings every breaker's inbox when the transport's
/// connection state changes, so each actor feeds its machine the loss or the return (one
/// task per node, not one per breaker).
async fn watch_connection(shared: Weak<Shared>, mut connection: watch::Receiver<crate::transport::ConnState>) {
    while connection.changed().await.is_ok() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for target in lock(&shared.flush_targets).iter() {
            target.inbox.ring();
        }
    }
}

/// The node's flusher: every flush interval (`every`) it advances the coarse clock and pokes
/// (one [`BreakerMsg::Flush`]) the actors whose hot path has outcomes to drain, and no other:
/// an idle breaker costs no timer wakeup, the node one per interval. Each look is
/// [`HotPath::undrained`] (a load or a few per breaker). A failure, slow call, ignored call
/// or rejection, or anything of a breaker that is not closed, is drained at the next flush:
/// detection waits one flush interval at most. Only successes of a closed breaker wait
/// for the lazy interval (`lazy`, by default the report batcher's, which would hold their
/// reports that long anyway), each breaker at its own tick of the period, so the node's lazy
/// drains spread over it instead of landing together: at 1,000 busy breakers per node that is
/// 10,000 actor messages a second where one per breaker per flush was 200,000, and the actor
/// that applies a decision finds a worker. Stops with the registry.
async fn run_flusher(shared: Weak<Shared>, every: Duration, lazy: Duration) {
    let lazy_ticks = u64::try_from(lazy.as_nanos() / every.as_nanos().max(1)).unwrap_or(u64::MAX).max(1);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        ticks.tick().await;
        tick = tick.wrapping_add(1);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.is_shut_down() {
            return;
        }
        shared.clock.advance_to(shared.now().0);
        for (index, target) in lock(&shared.flush_targets).iter().enumerate() {
            let due = match target.hot.undrained() {
                Undrained::Nothing => false,
                Undrained::Urgent => true,
                Undrained::Lazy => tick.wrapping_add(index as u64) % lazy_ticks == 0,
            };
            if due && !target.pending.swap(true, Ordering::AcqRel) {
                // A stopped actor's flush goes nowhere; its successor is poked next time.
                if lock(&target.actor).cast(BreakerMsg::Flush).is_err() {
                    target.pending.store(false, Ordering::Release);
                }
            }
        }
    }
}

/// What the registry, its actors, its supervisor and its lease manager share.
pub(crate) struct Shared {
    pub(crate) ctx: Arc<NodeContext>,
    incarnation: u64,
    entries: Mutex<HashMap<BreakerName, Entry>>,
    register: tokio::sync::Mutex<()>,
    supervisor: OnceLock<ActorRef<()>>,
    manager: Mutex<Option<JoinHandle<()>>>,
    /// Every breaker's flush target, in creation order (see [`run_flusher`]).
    flush_targets: Mutex<Vec<Arc<FlushTarget>>>,
    /// The flusher and the connection watcher.
    flusher: Mutex<Vec<JoinHandle<()>>>,
    /// The node's one answerer of describe requests (dropped when the registry stops).
    describe: Mutex<Option<Subscription>>,
    shut_down: AtomicBool,
}

// The registry's own state sits beside the node context its actors share; reading the
// context through `Shared` keeps one spelling (`shared.transport`) for both.
impl std::ops::Deref for Shared {
    type Target = NodeContext;

    fn deref(&self) -> &NodeContext {
        &self.ctx
    }
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, HashMap<BreakerName, Entry>> {
        // Entries are replaced whole: a poisoned lock still holds a consistent map.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds a [`Registry`].
pub struct RegistryBuilder {
    node: Option<String>,
    transport: Option<Arc<dyn Transport>>,
    flush: Duration,
    lease_ttl: Duration,
    lease_margin: Duration,
    lazy_flush: Duration,
    shards: u32,
    bootstrap_timeout: Duration,
    health: Option<HealthCheckFn>,
    health_timeout: Duration,
    incarnation: Option<u64>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("node", &self.node)
            .field("flush", &self.flush)
            .field("lazy_flush", &self.lazy_flush)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_margin", &self.lease_margin)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self {
            node: None,
            transport: None,
            flush: Duration::from_millis(5),
            lazy_flush: Duration::from_millis(crate::shell::BatchLimits::default().lazy_ms),
            lease_ttl: Duration::from_secs(10),
            lease_margin: Duration::from_secs(2),
            shards: 16,
            bootstrap_timeout: Duration::from_secs(5),
            health: None,
            health_timeout: Duration::from_secs(2),
            incarnation: None,
        }
    }
}

impl RegistryBuilder {
    /// This node's id (default: the transport's node, or `local`).
    #[must_use]
    pub fn node_id(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    /// The transport (default: a fresh in-process broker of which this node is the only
    /// member).
    #[must_use]
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// How often each actor drains its hot path and ticks its machine (default 5 ms).
    #[must_use]
    pub fn flush_interval(mut self, flush: Duration) -> Self {
        self.flush = flush;
        self
    }

    /// How long outcomes that cannot matter to a decision soon (successes of a breaker whose
    /// fleet and effective states are closed) may wait before their actor drains them
    /// (default 100 ms, the report batcher's lazy period: their reports would wait as long
    /// there). Anything else is drained at the next flush interval; a lazy interval at or
    /// below the flush interval drains everything every flush.
    #[must_use]
    pub fn lazy_flush_interval(mut self, lazy: Duration) -> Self {
        self.lazy_flush = lazy;
        self
    }

    /// Lease time-to-live (default 10 s). Renewals go out every third of it. A lease shorter
    /// than the broker's failover time flips leadership on every broker failover.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long before its lease would expire by its own clock a decider stops deciding
    /// (default 2 s): allowance for delivery delay and clock drift.
    #[must_use]
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.lease_margin = margin;
        self
    }

    /// Number of lease shards (default 16); the same on every node of a fleet.
    #[must_use]
    pub fn lease_shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// How long [`Registry::breaker`] waits for a new breaker to learn the fleet state
    /// (default 5 s).
    #[must_use]
    pub fn bootstrap_timeout(mut self, timeout: Duration) -> Self {
        self.bootstrap_timeout = timeout;
        self
    }

    /// The active health check run by deciders while a breaker is open (for breakers whose
    /// config enables health checks). Without one, every health check fails.
    #[must_use]
    pub fn health_check(mut self, check: HealthCheckFn) -> Self {
        self.health = Some(check);
        self
    }

    /// How long a health check may take before it counts as failed (default 2 s).
    #[must_use]
    pub fn health_check_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// This process's incarnation (default: wall-clock milliseconds at start, so that a
    /// restarted node's reports are never mistaken for duplicates of its old ones).
    #[must_use]
    pub fn incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = Some(incarnation);
        self
    }

    fn settings(&self) -> Result<Settings, RegistryError> {
        let bad = |field, problem: &str| Err(RegistryError::InvalidSetting { field, problem: problem.to_owned() });
        if self.flush.is_zero() {
            return bad("flush_interval", "must be greater than 0");
        }
        if self.lease_ttl < Duration::from_millis(3) {
            return bad("lease_ttl", "must be at least 3 ms (renewals go out every third of it)");
        }
        if self.lease_margin.saturating_mul(3) >= self.lease_ttl.saturating_mul(2) {
            return bad(
                "lease_margin",
                "must be less than two thirds of lease_ttl: a lease must outlast the renewal interval (ttl / 3)",
            );
        }
        if self.shards == 0 {
            return bad("lease_shards", "must be at least 1");
        }
        if self.bootstrap_timeout.is_zero() {
            return bad("bootstrap_timeout", "must be greater than 0");
        }
        Ok(Settings {
            flush: self.flush,
            lazy_flush: self.lazy_flush,
            lease_ttl: self.lease_ttl,
            lease_margin: self.lease_margin,
            shards: self.shards,
            bootstrap_timeout: self.bootstrap_timeout,
            health_timeout: self.health_timeout,
        })
    }

    /// Starts the registry: its supervisor and its lease manager. Describes every metric
    /// (`observe::names`) to the recorder installed now.
    pub async fn start(self) -> Result<Registry, RegistryError> {
        let settings = self.settings()?;
        names::describe();
        let (node, transport): (NodeId, Arc<dyn Transport>) = match (&self.node, self.transport) {
            (node, Some(t)) => {
                let node = match node {
                    Some(n) => NodeId::new(n).map_err(|error| RegistryError::InvalidName { name: n.clone(), error })?,
                    None => t.node().clone(),
                };
                if &node != t.node() {
                    return Err(RegistryError::InvalidSetting {
                        field: "node_id",
                        problem: format!("{node} differs from the transport's node {}", t.node()),
                    });
                }
                (node, t)
            }
            (node, None) => {
                let name = node.clone().unwrap_or_else(|| "local".to_owned());
                let node = NodeId::new(&name).map_err(|error| RegistryError::InvalidName { name, error })?;
                let transport: Arc<dyn Transport> = MemoryBroker::new().transport(node.clone());
                (node, transport)
            }
        };
        // One report message per flush interval: a batching transport batches at this one.
        transport.set_report_interval(settings.flush);
        let incarnation = self.incarnation.unwrap_or_else(fresh_incarnation);
        let (leases_tx, leases_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            ctx: Arc::new(NodeContext::new(node, transport, settings, leases_tx, self.health)),
            incarnation,
            entries: Mutex::new(HashMap::new()),
            register: tokio::sync::Mutex::new(()),
            supervisor: OnceLock::new(),
            manager: Mutex::new(None),
            flush_targets: Mutex::new(Vec::new()),
            flusher: Mutex::new(Vec::new()),
            describe: Mutex::new(None),
            shut_down: AtomicBool::new(false),
        });
        let (supervisor, _) = Actor::spawn(None, Supervisor, Arc::downgrade(&shared))
            .await
            .map_err(|e| RegistryError::Spawn(e.to_string()))?;
        let _ = shared.supervisor.set(supervisor);
        let weak = Arc::downgrade(&shared);
        shared.ctx.set_reloader(Box::new(move |name| {
            if let Some(shared) = weak.upgrade() {
                tokio::spawn(tuning::reload(shared, name));
            }
        }));
        let manager = LeaseManager::new(&shared);
        let task = tokio::spawn(manager.run(leases_rx));
        *lock(&shared.manager) = Some(task);
        let flusher = tokio::spawn(run_flusher(Arc::downgrade(&shared), settings.flush, settings.lazy_flush));
        let watcher = tokio::spawn(watch_connection(Arc::downgrade(&shared), shared.transport.connection()));
        lock(&shared.flusher).extend([flusher, watcher]);
        metrics::counter!(names::STALE_LEASES_REPLACED, "node" => shared.node.as_str().to_owned()).increment(0);
        *lock(&shared.describe) = Some(shared.transport.serve_describe(describer(Arc::downgrade(&shared))));
        Ok(Registry { shared })
    }
}

/// A new incarnation: wall-clock milliseconds, spaced to leave room for the restarts of each
/// actor (`incarnation + restarts`), and never the same twice in one process (two
/// registries started within a millisecond, a node restarted in a test).
fn fresh_incarnation() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let step = u64::from(MAX_RESTARTS) + 1;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let wanted = ms.saturating_mul(step);
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(wanted.max(last.saturating_add(step))))
        .unwrap_or(0);
    wanted.max(previous.saturating_add(step))
}

/// One node's breakers: see the module documentation.
///
/// Dropping every handle does not stop the node: its breakers keep working (a service may
/// keep [`Breaker`]s and drop the registry). [`Registry::shutdown`] steps down and stops. Cheap to clone (all clones are the
/// same registry).
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("node", &self.shared.node).finish_non_exhaustive()
    }
}

impl Registry {
    /// The embedded default: the in-process transport, a single node (`local`) that is its
    /// own lease holder, default settings.
    pub async fn local() -> Result<Self, RegistryError> {
        Self::builder().start().await
    }

    /// A registry to configure.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.shared.node
    }

    /// The lease shard of `name` in this registry.
    pub fn shard_of(&self, name: &BreakerName) -> LeaseShard {
        lease_shard(name, self.shared.settings.shards)
    }

    async fn settle(
        &self,
        name: &BreakerName,
        config: &BreakerConfig,
    ) -> Result<(BreakerConfig, ValidConfig), RegistryError> {
        let settled = tuning::settle(&self.shared, name, config).await?;
        let valid =
            settled.validate().map_err(|error| RegistryError::FleetConfigInvalid { breaker: name.clone(), error })?;
        Ok((settled, valid))
    }

    /// The config breaker `name` runs on here (the fleet's, which may not be the one this
    /// node asked for: see [`Registry::breaker`]).
    pub fn config_of(&self, name: &BreakerName) -> Option<BreakerConfig> {
        self.shared.entries().get(name).map(|e| e.config.clone())
    }

    fn check_open(&self) -> Result<(), RegistryError> {
        if self.shared.is_shut_down() { Err(RegistryError::ShutDown) } else { Ok(()) }
    }

    /// The breaker `name`, created with `config` if this node does not have it yet.
    /// Returns once the breaker knows the fleet state (a node joining while the breaker is
    /// open is open before its first call).
    ///
    /// The fleet runs one config per breaker (`docs/tuning.md`): if `config` declares a
    /// higher [`version`](BreakerConfig::version) than the fleet's, it replaces the fleet's
    /// everywhere (a rolling deploy of a retuned breaker); if the fleet's is newer, the same
    /// version with other settings, or an operator's, this node runs on the fleet's and logs
    /// a warning. Either way the get succeeds.
    pub async fn breaker(&self, name: &str, config: BreakerConfig) -> Result<Breaker, RegistryError> {
        self.check_open()?;
        let name =
            BreakerName::new(name).map_err(|error| RegistryError::InvalidName { name: name.to_owned(), error })?;
        config.validate().map_err(RegistryError::InvalidConfig)?;
        let (hot, mut ready) = {
            let _one_at_a_time = self.shared.register.lock().await;
            self.check_open()?;
            let existing = self
                .shared
                .entries()
                .get(&name)
                .map(|e| (e.config == config, e.hot.clone(), e.bootstrapped.subscribe()));
            match existing {
                Some((true, hot, ready)) => (hot, ready),
                Some((false, hot, ready)) => {
                    let (settled, valid) = self.settle(&name, &config).await?;
                    tuning::switch(&self.shared, &name, settled, valid).await;
                    (hot, ready)
                }
                None => {
                    let (settled, valid) = self.settle(&name, &config).await?;
                    create(&self.shared, name.clone(), settled, valid).await?
                }
            }
        };
        let waited = self.shared.settings.bootstrap_timeout;
        match tokio::time::timeout(waited, ready.wait_for(|b| *b)).await {
            Ok(Ok(_)) => Ok(Breaker::new(hot)),
            Ok(Err(_)) => Err(RegistryError::ShutDown),
            Err(_) => Err(RegistryError::BootstrapTimeout { breaker: name, waited }),
        }
    }

    /// Issues an operator's command for breaker `name`: published on the breaker's control
    /// stream, it is applied by whichever node decides the breaker (now, or the next one to
    /// decide if none does: the stream keeps it for a while), as a decision whose reason is
    /// [`Reason::Manual`](crate::machine::Reason::Manual) with `actor` and `reason`. Any
    /// node may issue a command for any breaker, whether it has the breaker or not. `Ok`
    /// means published, not yet applied: watch the breaker's state or its events.
    pub async fn command(&self, name: &str, kind: CommandKind, actor: &str, reason: &str) -> Result<(), RegistryError> {
        self.issue(name, kind, None, actor, reason).await
    }

    /// Issues a time-boxed operator's command for breaker `name`, as [`Registry::command`]
    /// does: the manual state `kind` sets lasts `duration`, then the decider returns the
    /// breaker to automatic control (closed, as a reset would) with reason
    /// [`Reason::OverrideExpired`](crate::machine::Reason::OverrideExpired). `duration` is
    /// at least 1 ms and at most [`MAX_OVERRIDE_MS`](crate::machine::MAX_OVERRIDE_MS) (7
    /// days), and `kind` is not [`CommandKind::Reset`]: otherwise
    /// [`RegistryError::BadOverride`], and nothing is published.
    pub async fn command_for(
        &self,
        name: &str,
        kind: CommandKind,
        duration: Duration,
        actor: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.issue(name, kind, Some(duration_ms), actor, reason).await
    }

    async fn issue(
        &self,
        name: &str,
        kind: CommandKind,
        duration_ms: Option<u64>,
        actor: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.check_open()?;
        check_override(kind, duration_ms).map_err(RegistryError::BadOverride)?;
        let breaker =
            BreakerName::new(name).map_err(|error| RegistryError::InvalidName { name: name.to_owned(), error })?;
        for (field, text) in [("actor", actor), ("reason", reason)] {
            if text.len() > MAX_TEXT_LEN {
                return Err(RegistryError::TextTooLong { field, len: text.len(), max: MAX_TEXT_LEN });
            }
        }
        let command = Command {
            version: WIRE_VERSION,
            breaker,
            kind,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            duration_ms,
        };
        self.shared.transport.publish_command(command).await.map_err(RegistryError::Transport)
    }

    /// Every breaker event of this node (see [`BreakerEvent`]).
    pub fn subscribe(&self) -> Result<broadcast::Receiver<BreakerEvent>, RegistryError> {
        self.check_open()?;
        Ok(self.shared.observer.subscribe())
    }

    /// The names of the breakers this node has (its own and those it adopted as decider).
    pub fn breaker_names(&self) -> Result<Vec<BreakerName>, RegistryError> {
        self.check_open()?;
        let mut names: Vec<BreakerName> = self.shared.entries().keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// Steps down from every lease (releasing it, so another node takes over without
    /// waiting for the TTL), stops the actors and closes the hot paths: later acquires are
    /// rejected with `RejectReason::ShutDown`.
    pub async fn shutdown(&self) -> Result<(), RegistryError> {
        if self.shared.shut_down.swap(true, Ordering::SeqCst) {
            return Err(RegistryError::ShutDown);
        }
        // Let registrations in progress finish (later ones see the flag); the lock is not
        // kept, because the lease manager may be waiting for it to adopt a breaker.
        drop(self.shared.register.lock().await);
        let actors: Vec<ActorRef<BreakerMsg>> = self.shared.entries().values().map(|e| e.actor.clone()).collect();
        for actor in &actors {
            // An actor that does not answer in time is stopped all the same below.
            let _ = actor.call(BreakerMsg::Shutdown, Some(Duration::from_secs(1))).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.leases.send(LeaseCmd::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        // The actors' last reports are handed over: see them out before the process goes.
        let _ = self.shared.transport.flush(Duration::from_secs(2)).await;
        self.stop_everything(false).await;
        Ok(())
    }

    async fn stop_everything(&self, kill: bool) {
        let entries: Vec<(ActorRef<BreakerMsg>, Arc<HotPath>, Inbox)> =
            self.shared.entries().values().map(|e| (e.actor.clone(), e.hot.clone(), e.inbox.clone())).collect();
        for (actor, hot, inbox) in entries {
            if kill {
                actor.kill();
            } else {
                let _ = actor.stop_and_wait(None, Some(Duration::from_secs(1))).await;
            }
            inbox.close();
            hot.close();
        }
        if let Some(supervisor) = self.shared.supervisor.get() {
            supervisor.stop(None);
        }
        if let Some(task) = lock(&self.shared.manager).take() {
            if kill {
                task.abort();
            }
        }
        for task in lock(&self.shared.flusher).drain(..) {
            task.abort();
        }
        drop(lock(&self.shared.describe).take());
    }

    /// What this node's decider of `name` holds now (its evidence window, the nodes'
    /// contributions, the decision it is at) with the breaker's config: `None` if this node
    /// does not decide `name` now. Operators ask the fleet with `fusebox describe`, which
    /// reaches this through the transport ([`Transport::serve_describe`]).
    pub async fn describe(&self, name: &BreakerName) -> Result<Option<Description>, RegistryError> {
        self.check_open()?;
        Ok(describe(&self.shared, name).await)
    }

    /// Test hook: the node dies without stepping down. Its actors are killed, its lease
    /// manager is aborted without releasing anything, its hot paths close; the fleet
    /// finds out by the lease's TTL.
    #[cfg(feature = "test-hooks")]
    pub async fn crash(&self) {
        self.shared.shut_down.store(true, Ordering::SeqCst);
        self.stop_everything(true).await;
    }

    /// Test hook: makes the actor of `name` panic (the supervisor restarts it).
    #[cfg(feature = "test-hooks")]
    pub fn inject_panic(&self, name: &BreakerName) -> Result<(), RegistryError> {
        self.check_open()?;
        let actor = self.shared.entries().get(name).map(|e| e.actor.clone());
        let actor = actor.ok_or_else(|| RegistryError::NoSuchBreaker(name.clone()))?;
        actor.cast(BreakerMsg::Panic).map_err(|e| RegistryError::Spawn(e.to_string()))
    }

    /// Test hook: how many flush and wake-up messages the actor of `name` has handled (its
    /// timer-driven work; inbox deliveries are not counted).
    #[cfg(feature = "test-hooks")]
    pub fn timer_messages(&self, name: &BreakerName) -> Option<u64> {
        self.shared.entries().get(name).map(|e| e.timer_messages.load(Ordering::Relaxed))
    }

    /// Test hook: how often the actor of `name` was restarted.
    #[cfg(feature = "test-hooks")]
    pub fn restarts(&self, name: &BreakerName) -> Option<u32> {
        self.shared.entries().get(name).map(|e| e.restarts)
    }

    /// Test hook: the machine of `name` (a copy, taken by its actor).
    #[cfg(feature = "test-hooks")]
    pub async fn machine(&self, name: &BreakerName) -> Option<crate::machine::Machine> {
        let actor = self.shared.entries().get(name).map(|e| e.actor.clone())?;
        match actor.call(BreakerMsg::Inspect, Some(Duration::from_secs(1))).await {
            Ok(ractor::rpc::CallResult::Success(m)) => Some(*m),
            _ => None,
        }
    }
}

/// Answers describe requests from `shared`'s breakers (see [`Registry::describe`]).
fn describer(shared: Weak<Shared>) -> Describer {
    Arc::new(move |breaker: BreakerName| {
        let shared = shared.clone();
        Box::pin(async move {
            let shared = shared.upgrade()?;
            describe(&shared, &breaker).await
        })
    })
}

async fn describe(shared: &Shared, breaker: &BreakerName) -> Option<Description> {
    if shared.is_shut_down() {
        return None;
    }
    let (actor, config) = {
        let entries = shared.entries();
        let entry = entries.get(breaker)?;
        (entry.actor.clone(), entry.config.clone())
    };
    match actor.call(BreakerMsg::Describe, Some(Duration::from_secs(1))).await {
        Ok(ractor::rpc::CallResult::Success(Some(view))) => {
            Some(Description { node: shared.node.clone(), config, view })
        }
        _ => None,
    }
}

/// Creates the entry and spawns the actor of a breaker new to this node.
async fn create(
    shared: &Arc<Shared>,
    name: BreakerName,
    config: BreakerConfig,
    valid: ValidConfig,
) -> Result<(Arc<HotPath>, watch::Receiver<bool>), RegistryError> {
    // Before the hot path and the actor: every series exists before anything records.
    let metrics = Arc::new(BreakerMetrics::new(&name, &shared.node, &valid));
    let hot = Arc::new(
        HotPath::new(name.clone(), HotSettings::from_config(&valid), shared.clock.clone())
            .with_metrics(metrics.call_metrics()),
    );
    let valid = Arc::new(valid);
    let inbox = Inbox::new(INBOX_CAPACITY);
    let shard = lease_shard(&name, shared.settings.shards);
    let bootstrapped = Arc::new(watch::Sender::new(false));
    let announced = Arc::new(Mutex::new(DecisionId::NONE));
    let timer_messages = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flush_pending = Arc::new(AtomicBool::new(false));
    let args = ActorArgs {
        ctx: shared.ctx.clone(),
        name: name.clone(),
        config: valid.clone(),
        hot: hot.clone(),
        inbox: inbox.clone(),
        shard,
        incarnation: shared.incarnation,
        bootstrapped: bootstrapped.clone(),
        announced: announced.clone(),
        restarted: false,
        timer_messages: timer_messages.clone(),
        flush_pending: flush_pending.clone(),
        metrics: metrics.clone(),
    };
    let actor = spawn_actor(shared, args).await?;
    let flush = Arc::new(FlushTarget {
        hot: hot.clone(),
        inbox: inbox.clone(),
        actor: Mutex::new(actor.clone()),
        pending: flush_pending,
    });
    lock(&shared.flush_targets).push(flush.clone());
    let ready = bootstrapped.subscribe();
    shared.entries().insert(
        name.clone(),
        Entry {
            config,
            valid,
            hot: hot.clone(),
            inbox: inbox.clone(),
            shard,
            actor,
            bootstrapped,
            announced,
            restarts: 0,
            timer_messages,
            flush,
            metrics,
        },
    );
    let _ = shared.leases.send(LeaseCmd::Join { shard, name, inbox, restarted: false });
    Ok((hot, ready))
}

async fn spawn_actor(shared: &Shared, args: ActorArgs) -> Result<ActorRef<BreakerMsg>, RegistryError> {
    let supervisor = shared.supervisor.get().ok_or(RegistryError::ShutDown)?.get_cell();
    let (actor, _) = BreakerActor::spawn_linked(None, BreakerActor, args, supervisor)
        .await
        .map_err(|e| RegistryError::Spawn(e.to_string()))?;
    Ok(actor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
