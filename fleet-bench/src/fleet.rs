//! The fleet under test: `nodes` registries in this process, each over its own
//! `NatsTransport` (its own connections, named by the transport), each holding the same
//! `breakers` breakers; the lease book fed by every node's event subscription (who decides
//! what, lease gaps, step-downs by reason, decisions applied); a load generator thread that
//! calls every breaker at a fixed rate; and a bounded shutdown. Only public APIs are used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use breaker_actors::Registry;
use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerConfig, Event, NodeId, StateLabel, StepDownReason};
use breaker_actors::transport::LeaseShard;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use transport_nats::nats::{NatsConfig, NatsTransport};

use crate::{BenchError, Context};

/// Breakers being created at once per node.
const CREATE_CONCURRENCY: usize = 64;

/// How a fleet is built.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Nodes.
    pub nodes: usize,
    /// Breakers per node (the same names on every node).
    pub breakers: usize,
    /// The registries' flush interval.
    pub flush: Duration,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// Lease shards.
    pub lease_shards: u32,
    /// Replicas of every stream and bucket.
    pub replicas: usize,
    /// How long creating every node's breakers may take in all; the rest are given up.
    pub create_deadline: Duration,
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Its id (`n1`, `n2`, ...).
    pub id: String,
    /// Its registry.
    pub reg: Registry,
    /// Its transport.
    pub transport: Arc<NatsTransport>,
}

/// A decision applied on a node to the breaker the lease book is told to follow.
#[derive(Debug, Clone, Copy)]
pub struct AppliedAt {
    /// The node (index).
    pub node: usize,
    /// The state applied.
    pub to: StateLabel,
    /// When the event was received (wall clock: comparable with the server's timestamps
    /// on this machine).
    pub at: SystemTime,
}

/// Lease and event counts over the fleet's life (or since [`LeaseBook::arm`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseCounts {
    /// `LeaseGained` events.
    pub gained: u64,
    /// `LeaseSuspended` events (renewal overdue: deciding paused).
    pub suspended: u64,
    /// Step-downs because the lease was lost.
    pub lease_lost: u64,
    /// Step-downs because a newer term showed up (deposition).
    pub deposed: u64,
    /// Other step-downs (writes failing, unstable, shutdown).
    pub other_step_downs: u64,
    /// Events a subscriber missed (the broadcast channel overflowed).
    pub events_missed: u64,
    /// Lease gaps (a breaker with no node deciding) that began while armed.
    pub gaps: u64,
    /// The longest gap that ended (or was still open) while armed.
    pub longest_gap: Duration,
    /// Gaps longer than the lease TTL.
    pub gaps_over_ttl: u64,
}

#[derive(Debug, Default)]
struct BookState {
    deciders: HashMap<String, u64>,
    gap_began: HashMap<String, Instant>,
    armed: Option<Instant>,
    counts: LeaseCounts,
    ttl: Duration,
    follow: Option<(String, tokio::sync::mpsc::UnboundedSender<AppliedAt>)>,
}

/// Who decides what, from every node's events.
#[derive(Debug, Default)]
pub struct LeaseBook {
    state: Mutex<BookState>,
}

impl LeaseBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_gap(state: &mut BookState, breaker: &str, now: Instant) {
        if let Some(began) = state.gap_began.remove(breaker) {
            let length = now - began;
            state.counts.longest_gap = state.counts.longest_gap.max(length);
            if length > state.ttl {
                state.counts.gaps_over_ttl += 1;
            }
        }
    }

    fn on_event(&self, node: usize, breaker: &str, event: &Event) {
        let now = Instant::now();
        let mut state = self.lock();
        let bit = 1u64 << (node % 64);
        match event {
            Event::LeaseGained { .. } => {
                state.counts.gained += 1;
                *state.deciders.entry(breaker.to_owned()).or_default() |= bit;
                Self::close_gap(&mut state, breaker, now);
            }
            Event::LeaseSuspended { .. } => state.counts.suspended += 1,
            Event::SteppedDown { reason, .. } => {
                match reason {
                    StepDownReason::LeaseLost => state.counts.lease_lost += 1,
                    StepDownReason::Deposed { .. } => state.counts.deposed += 1,
                    _ => state.counts.other_step_downs += 1,
                }
                let mask = state.deciders.entry(breaker.to_owned()).or_default();
                *mask &= !bit;
                if *mask == 0 && state.armed.is_some() && !state.gap_began.contains_key(breaker) {
                    state.gap_began.insert(breaker.to_owned(), now);
                    state.counts.gaps += 1;
                }
            }
            Event::Applied { to, .. } => {
                if let Some((name, tx)) = &state.follow {
                    if name == breaker {
                        let _ = tx.send(AppliedAt { node, to: *to, at: SystemTime::now() });
                    }
                }
            }
            _ => {}
        }
    }

    /// Starts counting gaps and step-downs afresh: counts reset, and every breaker in
    /// `breakers` nobody decides now opens a gap.
    pub fn arm(&self, breakers: &[String], ttl: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        state.counts = LeaseCounts::default();
        state.ttl = ttl;
        state.armed = Some(now);
        state.gap_began.clear();
        for name in breakers {
            if state.deciders.get(name).copied().unwrap_or(0) == 0 {
                state.gap_began.insert(name.clone(), now);
                state.counts.gaps += 1;
            }
        }
    }

    /// The counts so far, gaps still open counted up to now.
    pub fn counts(&self) -> LeaseCounts {
        let now = Instant::now();
        let state = self.lock();
        let mut counts = state.counts;
        for began in state.gap_began.values() {
            let length = now - *began;
            counts.longest_gap = counts.longest_gap.max(length);
            if length > state.ttl {
                counts.gaps_over_ttl += 1;
            }
        }
        counts
    }

    /// Breakers some node decides, by the events.
    pub fn decided(&self) -> usize {
        self.lock().deciders.values().filter(|m| **m != 0).count()
    }

    /// Sends every `Applied` event of `breaker` to the returned receiver.
    pub fn follow(&self, breaker: &str) -> tokio::sync::mpsc::UnboundedReceiver<AppliedAt> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().follow = Some((breaker.to_owned(), tx));
        rx
    }
}

/// The fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Its nodes.
    pub nodes: Vec<Node>,
    /// Every node's breakers that were created, by node.
    pub breakers: Vec<Vec<Breaker>>,
    /// The breaker names.
    pub names: Vec<String>,
    /// Breakers that could not be created (by the deadline, or with an error), over all nodes.
    pub failed: usize,
    /// The first creation error seen.
    pub first_error: Option<String>,
    /// How long creating every breaker took.
    pub created_in: Duration,
    /// The lease book.
    pub book: Arc<LeaseBook>,
    spec: FleetSpec,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

/// The breaker config every bench breaker uses: the defaults (count window, 50 % failure rate,
/// local overlay on), so a healthy load never trips.
pub fn bench_config() -> BreakerConfig {
    BreakerConfig::default()
}

/// The name of breaker `i`.
pub fn breaker_name(i: usize) -> String {
    format!("dep-{i:05}")
}

impl Fleet {
    /// Connects the nodes, starts their registries and event listeners, and creates every
    /// node's breakers (`extra` names first, then `spec.breakers` of [`breaker_name`]),
    /// giving up on what is not created by the deadline.
    pub async fn start(spec: FleetSpec, extra: &[&str]) -> Result<Self, BenchError> {
        let book = Arc::new(LeaseBook::default());
        let mut nodes = Vec::new();
        let mut listeners = Vec::new();
        for i in 0..spec.nodes {
            let id = format!("n{}", i + 1);
            let node_id = NodeId::new(&id).doing(format!("node id {id}"))?;
            let mut config = NatsConfig::new(spec.urls.clone(), node_id);
            config.store.replicas = spec.replicas;
            let transport = NatsTransport::connect(config).await.doing(format!("connecting node {id}"))?;
            let reg = Registry::builder()
                .transport(transport.clone())
                .flush_interval(spec.flush)
                .lease_ttl(spec.lease_ttl)
                .lease_margin(spec.lease_ttl / 4)
                .lease_shards(spec.lease_shards)
                .start()
                .await
                .doing(format!("starting node {id}'s registry"))?;
            let mut events = reg.subscribe().doing("subscribing to events")?;
            let listener_book = book.clone();
            listeners.push(tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(e) => listener_book.on_event(i, e.breaker.as_str(), &e.event),
                        Err(RecvError::Lagged(missed)) => listener_book.lock().counts.events_missed += missed,
                        Err(RecvError::Closed) => break,
                    }
                }
            }));
            nodes.push(Node { id, reg, transport });
        }
        let names: Vec<String> =
            extra.iter().map(|s| (*s).to_owned()).chain((0..spec.breakers).map(breaker_name)).collect();
        let began = Instant::now();
        let deadline = tokio::time::Instant::now() + spec.create_deadline;
        let mut breakers = Vec::new();
        let mut failed = 0;
        let mut first_error = None;
        for node in &nodes {
            let made: Vec<Result<Breaker, String>> = futures_util::stream::iter(names.iter())
                .map(|name| async move {
                    match tokio::time::timeout_at(deadline, node.reg.breaker(name, bench_config())).await {
                        Ok(Ok(b)) => Ok(b),
                        Ok(Err(e)) => Err(format!("{name} on {}: {e}", node.id)),
                        Err(_) => Err(format!("{name} on {}: not created by the deadline", node.id)),
                    }
                })
                .buffer_unordered(CREATE_CONCURRENCY)
                .collect()
                .await;
            let mut mine = Vec::new();
            for result in made {
                match result {
                    Ok(b) => mine.push(b),
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            breakers.push(mine);
        }
        Ok(Self { nodes, breakers, names, failed, first_error, created_in: began.elapsed(), book, spec, listeners })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    /// Breakers whose machine decides on some node now (asks every node's actors; bounded by
    /// `within`, unanswered ones count as undecided).
    pub async fn deciding_now(&self, within: Duration) -> usize {
        let names: Vec<_> =
            self.names.iter().filter_map(|n| breaker_actors::machine::BreakerName::new(n).ok()).collect();
        let ask = futures_util::stream::iter(names.iter())
            .map(|name| async move {
                for node in &self.nodes {
                    if node.reg.machine(name).await.is_some_and(|m| m.is_deciding()) {
                        return 1;
                    }
                }
                0
            })
            .buffer_unordered(64)
            .fold(0usize, |sum, one| async move { sum + one });
        tokio::time::timeout(within, ask).await.unwrap_or(0)
    }

    /// Lease shards held, by node index (read through the first node's transport; shards
    /// held by nobody or unreadable are left out).
    pub async fn shards_held(&self) -> Vec<u32> {
        let mut held = vec![0u32; self.nodes.len()];
        let Some(first) = self.nodes.first() else { return held };
        for shard in 0..self.spec.lease_shards {
            if let Ok(Some((holder, _))) = first.transport.lease_holder(LeaseShard(shard)).await {
                if let Some(i) = self.nodes.iter().position(|n| n.id == holder.as_str()) {
                    held[i] += 1;
                }
            }
        }
        held
    }

    /// Shuts every node down, each bounded by `within`.
    pub async fn shutdown(self, within: Duration) {
        for node in &self.nodes {
            let _ = tokio::time::timeout(within, node.reg.shutdown()).await;
        }
        for listener in self.listeners {
            listener.abort();
        }
    }
}

/// A thread calling every breaker given at `rate` calls/s each (successes), until stopped or
/// its deadline passes.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    cpu_ns: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The load thread's time step.
const LOAD_TICK: Duration = Duration::from_millis(10);

impl Load {
    /// Starts calling; the thread ends by itself at `deadline` at the latest.
    pub fn start(breakers: Vec<Breaker>, rate: f64, deadline: Instant) -> Result<Self, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let (s, c, t) = (stop.clone(), calls.clone(), cpu_ns.clone());
        let thread = std::thread::Builder::new()
            .name("fleet-load".to_owned())
            .spawn(move || {
                let began_cpu = crate::procstat::cpu_of_this_thread();
                let per_tick = rate * LOAD_TICK.as_secs_f64();
                let mut owed = 0.0f64;
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                    owed += per_tick;
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let now_calls = owed.floor() as u64;
                    #[allow(clippy::cast_precision_loss)]
                    let whole = now_calls as f64;
                    owed -= whole;
                    let mut made = 0;
                    for b in &breakers {
                        for _ in 0..now_calls {
                            if let Ok(permit) = b.try_acquire() {
                                permit.success();
                            }
                            made += 1;
                        }
                    }
                    c.fetch_add(made, Ordering::Relaxed);
                    next += LOAD_TICK;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                let cpu = crate::procstat::cpu_of_this_thread().saturating_sub(began_cpu);
                t.store(u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
            })
            .doing("starting the load thread")?;
        Ok(Self { stop, calls, cpu_ns, thread: Some(thread) })
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Stops and joins the thread: the CPU time it used.
    pub fn stop(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
