//! One demo service instance (the `service-instance` binary): a node of the fleet that calls
//! the scripted dependency through its breaker as a real service would (reqwest behind the
//! breaker's tower layer, 5xx answers counted as failures), and tells the
//! orchestrator what it sees as [`InstanceLine`]s on stdout. It stops (stepping down) when
//! its stdin closes or it is told to terminate, so a dying orchestrator leaves nothing behind.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_actors::http::ServerErrorsAsFailures;
use breaker_actors::machine::{
    Admission, BreakerConfig, BreakerName, Event, FleetState, HalfOpenPolicy, NodeId, OpenPolicy, OutageConfig,
    OutagePolicy, TripPolicy, WindowConfig,
};
use breaker_actors::tower::{FuseboxError, FuseboxLayer};
use breaker_actors::{Breaker, Registry, RegistryError};
use tokio::io::AsyncReadExt;
use tower::{Layer, Service, ServiceExt};
use transport_nats::nats::{NatsConfig, NatsTransport};

use super::dependency::{self, Call, CallKind, Phase};
use super::{BREAKER, InstanceLine, now_ms};

/// What an instance is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceArgs {
    /// Its node id.
    pub node: String,
    /// The NATS servers.
    pub servers: Vec<String>,
    /// The dependency's address.
    pub dependency: SocketAddr,
    /// Calls per second.
    pub rate: u32,
    /// Where to serve `/metrics` (Prometheus text format), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl InstanceArgs {
    /// Parses `--node ID --server URL [--server URL...] --dependency ADDR [--rate N]
    /// [--metrics-listen ADDR]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let (mut node, mut servers, mut dependency, mut rate) = (None, Vec::new(), None, 100);
        let mut metrics_listen = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--node" => node = Some(value),
                "--server" => servers.push(value),
                "--dependency" => dependency = Some(value.parse().map_err(|e| format!("--dependency {value}: {e}"))?),
                "--rate" => rate = value.parse().map_err(|e| format!("--rate {value}: {e}"))?,
                "--metrics-listen" => {
                    metrics_listen = Some(value.parse().map_err(|e| format!("--metrics-listen {value}: {e}"))?);
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(Self {
            node: node.ok_or("--node is required")?,
            servers: if servers.is_empty() { return Err("at least one --server is required".into()) } else { servers },
            dependency: dependency.ok_or("--dependency is required")?,
            rate: rate.max(1),
            metrics_listen,
        })
    }
}

/// Probes the demo's breaker allows fleet-wide per half-open round.
pub const PROBE_BUDGET: u32 = 2;

/// The demo's breaker: trips at 50% failures over 20 calls, stays open 2 s, then 2 probes
/// fleet-wide must both succeed; a node cut off from NATS keeps the last decision.
pub fn config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 20 },
            minimum_calls: 20,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 2_000 },
        half_open: HalfOpenPolicy { probe_budget: PROBE_BUDGET, success_threshold: 2, max_wait_ms: 3_000, ramp: None },
        local: None,
        outage: OutageConfig { policy: OutagePolicy::LastKnown, grace_ms: 2_000 },
        ..BreakerConfig::default()
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    probes: AtomicU64,
}

fn emit(line: &InstanceLine) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        // The orchestrator gone means nobody reads: stopping is handled by stdin.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Serves this process's metrics as Prometheus text on `http://ADDR/metrics` (any path
/// answers), from a task on the current runtime; installed before the registry starts, so
/// every breaker's series are there from its creation.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &breaker_actors::observe::names::SECONDS_BUCKETS,
        )
        .and_then(|builder| builder.with_http_listener(addr).install())
        .map_err(|e| format!("serving metrics on {addr}: {e}"))
}

/// Runs the instance until stdin closes or SIGTERM.
pub async fn run(args: InstanceArgs) -> Result<(), String> {
    let node = NodeId::new(&args.node).map_err(|e| format!("node id {}: {e}", args.node))?;
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr)?;
    }
    let mut nats = NatsConfig::new(args.servers.clone(), node.clone());
    nats.store.replicas = args.servers.len().min(3);
    let transport = NatsTransport::connect(nats).await.map_err(|e| e.to_string())?;
    let registry = Registry::builder()
        .transport(transport)
        .lease_ttl(Duration::from_secs(3))
        .lease_margin(Duration::from_secs(1))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let name = BreakerName::new(BREAKER).map_err(|e| e.to_string())?;
    let mut events = registry.subscribe().map_err(|e| e.to_string())?;
    // A service retries a transient NATS error at startup (a bounded number of times).
    let mut attempt = 0;
    let breaker = loop {
        match registry.breaker(BREAKER, config()).await {
            Ok(breaker) => break breaker,
            Err(RegistryError::Transport(e)) if attempt < 5 => {
                eprintln!("service-instance {}: registering {BREAKER}: {e}; retrying", args.node);
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let counters = Arc::new(Counters::default());

    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Applied { id, to, .. } = event.event {
                emit(&InstanceLine::Applied {
                    node: event.node.to_string(),
                    term: id.term.0,
                    seq: id.seq,
                    to: format!("{to:?}"),
                    at_ms: now_ms(),
                });
            }
        }
    });
    let phases = ProbePhases { registry: registry.clone(), name: name.clone(), known: HashMap::new() };
    let dependency = guarded(&breaker, args.dependency, &counters)?;
    let calls =
        tokio::spawn(call_loop(dependency, breaker.clone(), phases, args.node.clone(), args.rate, counters.clone()));
    let status = {
        let (registry, breaker, counters) = (registry.clone(), breaker.clone(), counters.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let machine = registry.machine(&name).await;
                emit(&InstanceLine::Status {
                    node: node.to_string(),
                    state: format!("{:?}", breaker.state()),
                    ok: counters.ok.load(Ordering::Relaxed),
                    failed: counters.failed.load(Ordering::Relaxed),
                    rejected: counters.rejected.load(Ordering::Relaxed),
                    probes: counters.probes.load(Ordering::Relaxed),
                    deciding: machine.as_ref().is_some_and(breaker_actors::machine::Machine::is_deciding),
                    term: machine.map_or(0, |m| m.applied_id().term.0),
                });
            }
        })
    };

    until_told_to_stop().await;
    calls.abort();
    status.abort();
    // Step down if NATS is there to hear it; if not (the demo is being torn down), the lease
    // expires on its own: never linger.
    match tokio::time::timeout(Duration::from_secs(2), registry.shutdown()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Ok(()),
    }
}

/// Which half-open phase each of the hot path's probe rounds belongs to, so that a probe can
/// tell the dependency which round it is spent in. Learnt from the breaker's machine, which
/// shows its applied decision and the probe round of its snapshot in one consistent copy; a
/// round, once left, never comes back (rounds only increase), so what is learnt stays true.
struct ProbePhases {
    registry: Registry,
    name: BreakerName,
    /// Hot-path probe round -> the phase of the half-open decision it was armed for.
    known: HashMap<u64, Phase>,
}

impl ProbePhases {
    /// The probe round the hot path is in now, if it admits probes.
    fn round_now(breaker: &Breaker) -> Option<u64> {
        match breaker.hot_path().snapshot().admission {
            Admission::Probe { round, .. } => Some(round),
            _ => None,
        }
    }

    /// Learns `round`'s phase if it is not known yet: asked before the probe is taken, while
    /// the machine is still in that round (a round lasts at least until its probes report).
    async fn learn(&mut self, round: u64) {
        if self.known.contains_key(&round) {
            return;
        }
        let Some(machine) = self.registry.machine(&self.name).await else { return };
        let in_round = matches!(machine.snapshot().admission, Admission::Probe { round: r, .. } if r == round);
        if let Some(decision) = machine.applied().filter(|d| in_round && matches!(d.state, FleetState::HalfOpen { .. }))
        {
            self.known.insert(round, (decision.phase.term.0, decision.phase.seq));
        }
    }
}

/// A call on its way to the breaker, with what it names if the breaker admits it as a probe:
/// the probe round the hot path was in before the call, and that round's phase if known.
struct Outgoing {
    call: Call,
    round_before: Option<u64>,
    phase: Option<Phase>,
}

/// The dependency behind the breaker: reqwest through the breaker's tower layer, each 5xx
/// answer a failure, each admitted probe counted and marked with the phase it is spent in.
fn guarded(
    breaker: &Breaker,
    dependency: SocketAddr,
    counters: &Arc<Counters>,
) -> Result<
    impl Service<Outgoing, Response = http::Response<reqwest::Body>, Error = FuseboxError<reqwest::Error>, Future: Send>
    + Send
    + use<>,
    String,
> {
    let client = dependency::client(dependency, Duration::from_millis(500))?;
    let mark_probe = {
        let (breaker, counters) = (breaker.clone(), Arc::clone(counters));
        move |outgoing: &mut Outgoing| {
            counters.probes.fetch_add(1, Ordering::Relaxed);
            // The permit was taken between two reads of the same round, so in that round
            // (rounds only increase); otherwise its round is unknown and it says so.
            let round_after = ProbePhases::round_now(&breaker);
            let phase = outgoing.round_before.filter(|r| round_after == Some(*r)).and(outgoing.phase);
            outgoing.call.kind = CallKind::Probe(phase);
        }
    };
    Ok(FuseboxLayer::new(breaker.clone())
        .classify_results_with(ServerErrorsAsFailures::new())
        .on_probe(mark_probe)
        .layer(client.map_request(|outgoing: Outgoing| outgoing.call)))
}

async fn call_loop<S>(
    mut dependency: S,
    breaker: Breaker,
    mut phases: ProbePhases,
    node: String,
    rate: u32,
    counters: Arc<Counters>,
) where
    S: Service<Outgoing, Response = http::Response<reqwest::Body>, Error = FuseboxError<reqwest::Error>>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let round_before = ProbePhases::round_now(&breaker);
        if let Some(round) = round_before {
            phases.learn(round).await;
        }
        let phase = round_before.and_then(|r| phases.known.get(&r).copied());
        let outgoing = Outgoing { call: Call { node: node.clone(), kind: CallKind::Call }, round_before, phase };
        let answer = match dependency.ready().await {
            Ok(ready) => ready.call(outgoing).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(response) if response.status().is_success() => counters.ok.fetch_add(1, Ordering::Relaxed),
            Ok(_) | Err(FuseboxError::Failed(_)) => counters.failed.fetch_add(1, Ordering::Relaxed),
            Err(FuseboxError::Rejected(_)) => counters.rejected.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Returns when stdin closes (the orchestrator is gone) or on SIGTERM / Ctrl-C.
async fn until_told_to_stop() {
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    #[cfg(unix)]
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        () = stdin_closed => {}
        () = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_parse_and_bad_ones_are_named() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let parsed = InstanceArgs::parse(args(
            "--node i1 --server nats://127.0.0.1:1 --server nats://127.0.0.1:2 --dependency 127.0.0.1:9 --rate 50 \
             --metrics-listen 127.0.0.1:9464",
        ))
        .unwrap();
        assert_eq!(parsed.servers.len(), 2);
        assert_eq!(parsed.rate, 50);
        assert_eq!(parsed.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(InstanceArgs::parse(args("--metrics-listen nowhere")).unwrap_err().contains("--metrics-listen"));
        assert!(InstanceArgs::parse(args("--node i1 --dependency 127.0.0.1:9")).unwrap_err().contains("--server"));
        assert!(InstanceArgs::parse(args("--bogus x")).unwrap_err().contains("--bogus"));
        assert!(config().validate().is_ok());
    }
}
