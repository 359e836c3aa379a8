//! Propagation, fleet against raw, interleaved in one run: a fleet decision (an operator
//! command forcing the bench breaker open, then closed, alternately) from the moment it
//! landed in the state bucket (the stored message's server timestamp) to the moment the last
//! node applied it (its `Applied` event received), next to a plain client putting a key in
//! a scratch KV bucket and as many plain watchers as there are nodes receiving it (from the
//! same kind of server timestamp to the last watcher's receipt). Both ends are read on this
//! machine's wall clock, so the two figures are comparable with each other.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use breaker_actors::machine::{CommandKind, StateLabel};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::fleet::Fleet;
use crate::{BenchError, Context};

/// The breaker the fleet side trips.
pub const PROPAGATION_BREAKER: &str = "bench-prop";

/// How long one decision or one put may take to reach everyone before it counts as missed.
const REACH_DEADLINE: Duration = Duration::from_secs(5);

/// How long one point's propagation measurement may take in all.
const BUDGET: Duration = Duration::from_secs(30);

/// Consecutive misses after which a side stops being measured (an overloaded fleet would
/// otherwise cost the reach deadline per decision).
const MAX_CONSECUTIVE_MISSES: u32 = 3;

/// The scratch bucket of the raw side.
const RAW_BUCKET: &str = "fleet_bench_raw"; // its stream starts with window::BENCH_STREAMS

/// Latencies in milliseconds, and what never arrived everywhere.
#[derive(Debug, Clone, Default)]
pub struct Propagation {
    /// Fleet decisions: landing to the last node applying it.
    pub fleet_ms: Vec<f64>,
    /// Raw puts: landing to the last watcher receiving it.
    pub raw_ms: Vec<f64>,
    /// Decisions or puts that did not reach everyone within the deadline.
    pub missed: u32,
    /// Nodes holding the propagation breaker (the ones waited for).
    pub holders: usize,
    /// Stopped by the budget or by repeated misses before all trips were made.
    pub cut_short: bool,
}

fn millis_between(landed_ns: i128, at: SystemTime) -> f64 {
    let at_ns = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
    #[allow(clippy::cast_precision_loss)]
    let ms = (at_ns - landed_ns) as f64 / 1e6;
    ms
}

/// The raw side: a putter and `watchers` watchers, each its own connection.
#[derive(Debug)]
pub struct RawKv {
    bucket: kv::Store,
    received: tokio::sync::Mutex<mpsc::UnboundedReceiver<(usize, u64, SystemTime, i128)>>,
    watchers: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _clients: Vec<async_nats::Client>,
}

impl RawKv {
    /// Creates the scratch bucket (in memory, or in a file if `file`, with `replicas`) and
    /// starts the watchers.
    pub async fn start(urls: &[String], watchers: usize, replicas: usize, file: bool) -> Result<Arc<Self>, BenchError> {
        let putter = async_nats::ConnectOptions::new()
            .name("fleet-bench-raw-put")
            .connect(urls)
            .await
            .doing("connecting the raw putter")?;
        let js = jetstream::new(putter.clone());
        let bucket = js
            .create_key_value(kv::Config {
                bucket: RAW_BUCKET.to_owned(),
                history: 1,
                storage: if file {
                    jetstream::stream::StorageType::File
                } else {
                    jetstream::stream::StorageType::Memory
                },
                num_replicas: replicas,
                ..kv::Config::default()
            })
            .await
            .doing("creating the raw bucket")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let mut clients = vec![putter];
        for i in 0..watchers {
            let client = async_nats::ConnectOptions::new()
                .name(format!("fleet-bench-raw-watch-{i}"))
                .connect(urls)
                .await
                .doing("connecting a raw watcher")?;
            let store =
                jetstream::new(client.clone()).get_key_value(RAW_BUCKET).await.doing("opening the raw bucket")?;
            let mut watch = store.watch("k").await.doing("watching the raw key")?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(entry)) = watch.next().await {
                    let at = SystemTime::now();
                    let _ = tx.send((i, entry.revision, at, entry.created.unix_timestamp_nanos()));
                }
            }));
            clients.push(client);
        }
        Ok(Arc::new(Self { bucket, received: tokio::sync::Mutex::new(rx), watchers, tasks, _clients: clients }))
    }

    /// One put, until every watcher has it: milliseconds from landing to the last receipt.
    pub async fn one(&self) -> Option<f64> {
        let revision = self.bucket.put("k", "x".into()).await.ok()?;
        let mut received = self.received.lock().await;
        let mut seen = vec![None; self.watchers];
        let mut landed = 0;
        let deadline = tokio::time::Instant::now() + REACH_DEADLINE;
        while seen.iter().any(Option::is_none) {
            let (i, rev, at, created) = tokio::time::timeout_at(deadline, received.recv()).await.ok()??;
            if rev == revision {
                seen[i] = Some(at);
                landed = created;
            }
        }
        seen.into_iter().flatten().max().map(|last| millis_between(landed, last))
    }
}

impl Drop for RawKv {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One fleet decision: forces the bench breaker to `kind` through node 0 and waits until
/// every node applied it; milliseconds from landing to the last node.
async fn fleet_one(
    fleet: &Fleet,
    state: &kv::Store,
    applied: &mut mpsc::UnboundedReceiver<crate::fleet::AppliedAt>,
    holders: &[bool],
    kind: CommandKind,
    target: StateLabel,
) -> Option<f64> {
    while applied.try_recv().is_ok() {}
    fleet.nodes.first()?.reg.command(PROPAGATION_BREAKER, kind, "fleet-bench", "propagation").await.ok()?;
    let mut seen = vec![None; fleet.nodes.len()];
    let deadline = tokio::time::Instant::now() + REACH_DEADLINE;
    while seen.iter().zip(holders).any(|(s, holds)| *holds && s.is_none()) {
        let event = tokio::time::timeout_at(deadline, applied.recv()).await.ok()??;
        if event.to == target {
            seen[event.node] = Some(event.at);
        }
    }
    let entry = state.entry(PROPAGATION_BREAKER).await.ok()??;
    seen.into_iter().flatten().max().map(|last| millis_between(entry.created.unix_timestamp_nanos(), last))
}

/// `trips` fleet decisions interleaved with as many raw puts (the raw side runs on `aux`,
/// where its clients live).
pub async fn measure(
    fleet: &Fleet,
    raw: &Arc<RawKv>,
    aux: &tokio::runtime::Handle,
    monitor: &async_nats::Client,
    trips: usize,
) -> Result<Propagation, BenchError> {
    let state =
        jetstream::new(monitor.clone()).get_key_value("fusebox_state").await.doing("opening the state bucket")?;
    let mut applied = fleet.book.follow(PROPAGATION_BREAKER);
    let mut result = Propagation::default();
    // Only nodes that hold the breaker (creating it may have failed on some) are waited for.
    let name = breaker_actors::machine::BreakerName::new(PROPAGATION_BREAKER).doing("breaker name")?;
    let mut holders = Vec::new();
    for node in &fleet.nodes {
        holders.push(node.reg.machine(&name).await.is_some());
    }
    result.holders = holders.iter().filter(|h| **h).count();
    let budget = tokio::time::Instant::now() + BUDGET;
    let (mut fleet_misses, mut raw_misses) = (0, 0);
    for k in 0..trips {
        if tokio::time::Instant::now() > budget
            || (fleet_misses >= MAX_CONSECUTIVE_MISSES && raw_misses >= MAX_CONSECUTIVE_MISSES)
        {
            result.cut_short = true;
            break;
        }
        let (kind, target) = if k % 2 == 0 {
            (CommandKind::ForceOpen, StateLabel::ForcedOpen)
        } else {
            (CommandKind::ForceClosed, StateLabel::ForcedClosed)
        };
        if result.holders > 0 && fleet_misses < MAX_CONSECUTIVE_MISSES {
            if let Some(ms) = fleet_one(fleet, &state, &mut applied, &holders, kind, target).await {
                result.fleet_ms.push(ms);
                fleet_misses = 0;
            } else {
                result.missed += 1;
                fleet_misses += 1;
            }
        }
        if raw_misses < MAX_CONSECUTIVE_MISSES {
            let raw = raw.clone();
            if let Some(ms) = aux.spawn(async move { raw.one().await }).await.ok().flatten() {
                result.raw_ms.push(ms);
                raw_misses = 0;
            } else {
                result.missed += 1;
                raw_misses += 1;
            }
        }
    }
    Ok(result)
}

/// The `q` quantile (0..=1) of `values` (nearest rank), `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(rank).copied()
}
