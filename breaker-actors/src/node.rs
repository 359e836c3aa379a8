//! The node context: what a node's breaker actors share with its registry, supervisor and
//! lease manager (the node id, the transport, the settings, the machines' timeline, the
//! coarse clock, the observer, the lease manager's channel, the health check), and the
//! messages the lease manager takes. It depends on neither the registry nor the actors,
//! so both depend on it and not on each other.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::hot::CoarseClock;
use crate::machine::{BreakerName, Millis, NodeId, StepDownReason, Term};
use crate::observe::Observer;
use crate::transport::{BoxFuture, Inbox, LeaseShard, Transport};

/// A user health check: `true` if the dependency behind the breaker answers well. Run by
/// the decider alone, while the breaker is open and the config asks for health checks.
pub type HealthCheckFn = Arc<dyn Fn(BreakerName) -> BoxFuture<bool> + Send + Sync>;

/// Switches a running breaker to the fleet's config (the registry's, set once it exists).
pub(crate) type ConfigReloader = Box<dyn Fn(BreakerName) + Send + Sync>;

/// Registry settings (see `RegistryBuilder` for their defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) flush: Duration,
    pub(crate) lazy_flush: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_margin: Duration,
    pub(crate) shards: u32,
    pub(crate) bootstrap_timeout: Duration,
    pub(crate) health_timeout: Duration,
}

/// What the lease manager is told.
#[derive(Debug)]
pub(crate) enum LeaseCmd {
    /// A breaker of `shard` exists on this node (again, after a restart, if `restarted`).
    Join { shard: LeaseShard, name: BreakerName, inbox: Inbox, restarted: bool },
    /// A breaker's machine stopped deciding `term`.
    SteppedDown { shard: LeaseShard, term: Term, reason: StepDownReason },
    /// Release every held lease, then stop.
    Shutdown(oneshot::Sender<()>),
}

/// What every part of one node shares.
pub(crate) struct NodeContext {
    pub(crate) node: NodeId,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) settings: Settings,
    /// The start of the machines' timeline (see [`NodeContext::now`]).
    pub(crate) origin: Instant,
    pub(crate) clock: CoarseClock,
    pub(crate) observer: Observer,
    /// Unbounded by type, bounded by design: one `Join` per breaker actor start, one
    /// `SteppedDown` per term a breaker leaves, one `Shutdown`.
    pub(crate) leases: mpsc::UnboundedSender<LeaseCmd>,
    pub(crate) health: Option<HealthCheckFn>,
    reloader: OnceLock<ConfigReloader>,
}

impl NodeContext {
    pub(crate) fn new(
        node: NodeId,
        transport: Arc<dyn Transport>,
        settings: Settings,
        leases: mpsc::UnboundedSender<LeaseCmd>,
        health: Option<HealthCheckFn>,
    ) -> Self {
        Self {
            observer: Observer::new(node.clone()),
            node,
            transport,
            settings,
            origin: Instant::now(),
            clock: CoarseClock::new(),
            leases,
            health,
            reloader: OnceLock::new(),
        }
    }

    /// Milliseconds since the registry started, on tokio's monotonic clock: the timeline of
    /// every machine and of the coarse clock.
    pub(crate) fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Sets what [`NodeContext::reload_config`] does (once; later calls change nothing).
    pub(crate) fn set_reloader(&self, reloader: ConfigReloader) {
        let _ = self.reloader.set(reloader);
    }

    /// Switches `name` to the fleet's config, in the background.
    pub(crate) fn reload_config(&self, name: BreakerName) {
        if let Some(reload) = self.reloader.get() {
            reload(name);
        }
    }
}
