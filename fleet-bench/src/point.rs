//! One grid point, start to end and bounded: its servers (a single nats-server or the 3-node
//! cluster, stopped by PID when dropped), the fleet, the tap, the load, a settle phase, the
//! measured window, propagation, the deciders left at the end, and a bounded shutdown; the
//! result as named figures ([`PointResult`]) the binary prints.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusebox_testkit::servers::{NatsCluster, NatsServer};

use crate::fleet::{Fleet, FleetSpec, Load};
use crate::propagation::{self, PROPAGATION_BREAKER, RawKv};
use crate::tap::Tap;
use crate::window::{self, Scope};
use crate::{BenchError, Context, procstat};

/// The name the nodes' runtime threads carry (their CPU is the node CPU).
pub const NODE_THREADS: &str = "fleet-node";

/// One point of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointSpec {
    /// Nodes.
    pub nodes: usize,
    /// Breakers per node (the propagation breaker among them).
    pub breakers: usize,
    /// Calls per second per breaker; `None`: idle (no calls at all).
    pub rate: Option<f64>,
    /// On the 3-node cluster rather than one server.
    pub cluster: bool,
}

impl PointSpec {
    /// Parses `NxB[:idle|:busy|:cluster|:single|:r<calls/s>]...`, busy at `default_rate`
    /// unless told otherwise.
    pub fn parse(text: &str, default_rate: f64) -> Result<Self, BenchError> {
        let mut parts = text.trim().split(':');
        let shape = parts.next().unwrap_or_default();
        let (nodes, breakers) = shape
            .split_once('x')
            .and_then(|(n, b)| Some((n.parse().ok()?, b.replace('_', "").parse().ok()?)))
            .ok_or_else(|| BenchError(format!("point {text:?}: expected NODESxBREAKERS, e.g. 4x100")))?;
        let mut spec = Self { nodes, breakers, rate: Some(default_rate), cluster: false };
        for flag in parts {
            match flag {
                "idle" => spec.rate = None,
                "busy" => spec.rate = Some(spec.rate.unwrap_or(default_rate)),
                "cluster" => spec.cluster = true,
                "single" => spec.cluster = false,
                r if r.starts_with('r') => {
                    spec.rate =
                        Some(r[1..].parse().map_err(|_| BenchError(format!("point {text:?}: bad rate {r:?}")))?);
                }
                other => return crate::fail(format!("point {text:?}"), format!("unknown flag {other:?}")),
            }
        }
        if spec.nodes == 0 || spec.nodes > 64 || spec.breakers == 0 {
            return crate::fail(format!("point {text:?}"), "1 to 64 nodes, at least 1 breaker");
        }
        Ok(spec)
    }
}

impl fmt::Display for PointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x {}", self.nodes, self.breakers)?;
        match self.rate {
            Some(rate) => write!(f, ", {rate} calls/s per breaker")?,
            None => write!(f, ", idle")?,
        }
        write!(f, ", {}", if self.cluster { "3-node cluster" } else { "single server" })
    }
}

/// Settings every point shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The measured window.
    pub window: Duration,
    /// The settle phase before it (load running).
    pub settle: Duration,
    /// The registries' flush interval.
    pub flush: Duration,
    /// Fleet decisions measured for propagation (as many raw puts).
    pub trips: usize,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// Lease shards.
    pub lease_shards: u32,
    /// How long creating the breakers may take.
    pub create_deadline: Duration,
    /// Whether the raw side's scratch bucket is file-backed, as the state bucket is (by
    /// default it is in memory, as in the earlier tables).
    pub raw_file: bool,
}

/// A point's figures, in print order: `(label, value)`; NaN where there is none.
#[derive(Debug, Clone, Default)]
pub struct PointResult {
    /// Figures.
    pub figures: Vec<(&'static str, f64)>,
    /// Remarks (the busiest stream, the first creation error, ...).
    pub notes: Vec<String>,
}

impl PointResult {
    fn put(&mut self, label: &'static str, value: f64) {
        self.figures.push((label, value));
    }

    /// The value of `label`.
    pub fn get(&self, label: &str) -> f64 {
        self.figures.iter().find(|(l, _)| *l == label).map_or(f64::NAN, |(_, v)| *v)
    }
}

#[allow(clippy::cast_precision_loss)]
fn f(value: impl TryInto<u64>) -> f64 {
    value.try_into().unwrap_or(u64::MAX) as f64
}

fn pct(cpu: Duration, over: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / over.as_secs_f64().max(1e-9)
}

fn mean_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let all: Vec<f64> = values.collect();
    #[allow(clippy::cast_precision_loss)]
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    (mean, all.iter().copied().fold(f64::NAN, f64::max))
}

enum Servers {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Servers {
    fn all(&self) -> Vec<&NatsServer> {
        match self {
            Self::Single(s) => vec![s],
            Self::Cluster(c) => c.nodes().iter().collect(),
        }
    }

    fn urls(&self) -> Vec<String> {
        self.all().iter().map(|s| s.url()).collect()
    }

    fn cpu(&self) -> Duration {
        self.all().iter().filter_map(|s| s.pid()).map(|pid| procstat::cpu_of_threads(Some(pid), "")).sum()
    }

    fn rss(&self) -> u64 {
        self.all().iter().filter_map(|s| s.pid()).map(|pid| procstat::rss(Some(pid))).sum()
    }
}

/// Runs one point. Must be called from the nodes' runtime (whose threads are named
/// [`NODE_THREADS`]); the tap and the raw watchers run on `aux`.
pub async fn run(
    spec: PointSpec,
    settings: &Settings,
    aux: &tokio::runtime::Handle,
) -> Result<PointResult, BenchError> {
    let servers = tokio::task::spawn_blocking(move || {
        if spec.cluster {
            NatsCluster::start(3).map(Servers::Cluster)
        } else {
            NatsServer::start().map(Servers::Single)
        }
    })
    .await
    .doing("starting the servers")?
    .doing("starting the servers")?;
    let urls = servers.urls();
    let replicas = urls.len().min(3);
    let scope = Scope {
        nodes: (1..=spec.nodes).map(|i| format!("n{i}")).collect(),
        prefix: "fusebox".to_owned(),
        ports: servers.all().iter().map(|s| s.monitor_port()).collect(),
    };
    let mut result = PointResult::default();

    let rss_before = procstat::rss(None);
    let fleet_spec = FleetSpec {
        urls: urls.clone(),
        nodes: spec.nodes,
        // The propagation breaker is one of the point's breakers.
        breakers: spec.breakers.saturating_sub(1),
        flush: settings.flush,
        lease_ttl: settings.lease_ttl,
        lease_shards: settings.lease_shards,
        replicas,
        create_deadline: settings.create_deadline,
    };
    let fleet = Fleet::start(fleet_spec, &[PROPAGATION_BREAKER]).await?;
    let created: usize = fleet.breakers.iter().map(Vec::len).sum();
    let rss_created = procstat::rss(None);
    result.put("breakers wanted (all nodes)", f(spec.nodes * spec.breakers));
    result.put("breakers created (all nodes)", f(created));
    result.put("creation s", fleet.created_in.as_secs_f64());
    if let Some(e) = &fleet.first_error {
        result.notes.push(format!("{} breakers not created; first: {e}", fleet.failed));
    }

    let (urls_aux, prefix, raw_file) = (urls.clone(), scope.prefix.clone(), settings.raw_file);
    let watchers = spec.nodes;
    let (monitor, tap, raw) = aux
        .spawn(async move {
            let monitor = async_nats::ConnectOptions::new()
                .name("fleet-bench-monitor")
                .connect(urls_aux.clone())
                .await
                .doing("connecting the monitor")?;
            let tap = Tap::start(&monitor, &prefix).await?;
            let raw = RawKv::start(&urls_aux, watchers, replicas, raw_file).await?;
            Ok::<_, BenchError>((monitor, tap, raw))
        })
        .await
        .doing("starting the tap")??;

    // Every breaker is called, the propagation breaker too (forced states win over its outcomes).
    let background: Vec<_> = fleet.breakers.concat();
    let load_deadline = Instant::now() + settings.settle + settings.window + Duration::from_secs(120);
    let load = match spec.rate {
        Some(rate) => Some(Load::start(background, rate, load_deadline)?),
        None => None,
    };
    tokio::time::sleep(settings.settle).await;

    fleet.book.arm(&fleet.names, settings.lease_ttl);
    let node_cpu = procstat::cpu_of_threads(None, NODE_THREADS);
    let server_cpu = servers.cpu();
    let calls = load.as_ref().map_or(0, Load::calls);
    let start = window::mark(&scope, &tap).await?;
    tokio::time::sleep(settings.window).await;
    let w = window::finish(&scope, &tap, &start).await?;
    let node_cpu = procstat::cpu_of_threads(None, NODE_THREADS).saturating_sub(node_cpu);
    let server_cpu = servers.cpu().saturating_sub(server_cpu);
    let calls = load.as_ref().map_or(0, Load::calls) - calls;
    let leases = fleet.book.counts();
    let held = fleet.shards_held().await;

    result.put("calls/s (all nodes)", w.rate(calls));
    let (mean, max) = mean_max(w.nodes.iter().map(|n| w.rate(n.outcome_msgs)));
    result.put("outcome msgs/s per node (mean)", mean);
    result.put("outcome msgs/s per node (max)", max);
    result.put("outcome msgs per flush per node (max)", max * settings.flush.as_secs_f64());
    result.put("JetStream msgs/s per node (max)", mean_max(w.nodes.iter().map(|n| w.rate(n.jetstream_msgs))).1);
    result.put("NATS msgs/s per node (max, /connz)", mean_max(w.nodes.iter().map(|n| w.rate(n.in_msgs))).1);
    result.put("outcome stream stored msgs/s", w.rate(w.outcome_stream_stored));
    result.put("state bucket stored msgs/s", w.rate(w.state_stream_stored));
    result.put("consumers per node (max)", mean_max(w.nodes.iter().map(|n| f(n.consumers))).1);
    result.put(
        "consumers per node over 3 + shards held (max)",
        mean_max(w.nodes.iter().zip(&held).map(|(n, h)| f(n.consumers) - f(3 + h))).1,
    );
    result.put("consumers (all)", f(w.consumers_per_stream.values().sum::<u64>()));
    let busiest = w.consumers_per_stream.iter().max_by_key(|(_, c)| **c);
    result.put("consumers on the busiest stream", busiest.map_or(0.0, |(_, c)| f(*c)));
    if let Some((stream, _)) = busiest {
        result.notes.push(format!("busiest stream: {stream}; consumers per stream {:?}", w.consumers_per_stream));
    }
    result.put("consumers unattributed", f(w.consumers_unattributed));
    let mut kinds: Vec<_> = w.requests_by_kind.iter().collect();
    kinds.sort_by_key(|(_, c)| std::cmp::Reverse(**c));
    let kinds: Vec<String> = kinds.iter().take(6).map(|(k, c)| format!("{k} {:.0}/s", w.rate(**c))).collect();
    result.notes.push(format!("requests by kind (all nodes): {}", kinds.join(", ")));
    result.put("subscriptions per node (max)", mean_max(w.nodes.iter().map(|n| f(n.subscriptions))).1);
    result.put("resync gets/s per node (max)", mean_max(w.nodes.iter().map(|n| w.rate(n.resync_gets))).1);
    result.put("API requests/s per node (max)", mean_max(w.nodes.iter().map(|n| w.rate(n.api_requests))).1);
    #[allow(clippy::cast_precision_loss)]
    result.put("server API requests/s per node (/jsz)", w.rate(w.server_api_requests) / spec.nodes as f64);
    result.put("tapped msgs unattributed", f(w.tapped_unattributed));
    result.put("node CPU % (all nodes, of one core)", pct(node_cpu, w.elapsed));
    result.put("server CPU % (of one core)", pct(server_cpu, w.elapsed));
    result.put("process RSS MiB", f(procstat::rss(None)) / 1_048_576.0);
    result.put("memory per breaker KiB", f(rss_created.saturating_sub(rss_before)) / 1024.0 / f(created.max(1)));
    result.put("server RSS MiB", f(servers.rss()) / 1_048_576.0);
    result.put("lease shards held", f(held.iter().sum::<u32>()));
    result.put("leases gained (window)", f(leases.gained));
    result.put("lease suspensions (window)", f(leases.suspended));
    result.put("lease losses (window)", f(leases.lease_lost));
    result.put("depositions (window)", f(leases.deposed));
    result.put("lease gaps (window)", f(leases.gaps));
    result.put("longest lease gap s", leases.longest_gap.as_secs_f64());
    result.put("lease gaps > TTL", f(leases.gaps_over_ttl));
    result.put("events missed", f(leases.events_missed));

    let prop = propagation::measure(&fleet, &raw, aux, &monitor, settings.trips).await?;
    let q = |v: &[f64], q: f64| propagation::quantile(v, q).unwrap_or(f64::NAN);
    result.put("propagation p50 ms", q(&prop.fleet_ms, 0.5));
    result.put("propagation p99 ms", q(&prop.fleet_ms, 0.99));
    result.put("raw KV watch p50 ms", q(&prop.raw_ms, 0.5));
    result.put("raw KV watch p99 ms", q(&prop.raw_ms, 0.99));
    result.put("p99 fleet / raw", q(&prop.fleet_ms, 0.99) / q(&prop.raw_ms, 0.99));
    result.put("decisions measured", f(prop.fleet_ms.len()));
    result.put("decisions or puts missed", f(prop.missed));
    result.put("nodes holding the propagation breaker", f(prop.holders));
    if prop.cut_short {
        result.notes.push("propagation cut short (its 30 s budget, or 3 misses in a row)".to_owned());
    }

    result.put("breakers decided at the end", f(fleet.deciding_now(Duration::from_secs(20)).await));
    let load_cpu = load.map_or(Duration::ZERO, Load::stop);
    result
        .notes
        .push(format!("load thread CPU {:.1} % (not in the node CPU)", pct(load_cpu, w.elapsed + settings.settle)));
    fleet.shutdown(Duration::from_secs(10)).await;
    drop(Arc::clone(&raw));
    aux.spawn(async move {
        drop(tap);
        drop(raw);
        drop(monitor);
    })
    .await
    .doing("stopping the tap")?;
    drop(servers);
    Ok(result)
}
