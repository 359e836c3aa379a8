//! The runtime end to end over the in-process transport: registries (nodes) sharing one
//! simulated broker, breaker actors, leases, supervision, shutdown and outages.
//!
//! Every test runs on paused tokio time (the runtime skips ahead whenever every task
//! waits), so seconds of breaker time take milliseconds, and waits are polls against a
//! deadline on that clock, never sleeps used as synchronisation.

// The runtime is not built under loom (see lib.rs).
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use breaker_actors::hot::{Breaker, CallError, RejectReason};
use breaker_actors::machine::{
    BreakerConfig, BreakerName, CommandKind, Event, FleetState, HalfOpenPolicy, HealthCheckPolicy, MAX_TEXT_LEN,
    NameError, NodeId, OpenPolicy, OutageConfig, OutagePolicy, Reason, StateLabel, TripPolicy, WindowConfig,
};
use breaker_actors::machine::{OutcomeCounts, Report, VectorClock, WIRE_VERSION};
use breaker_actors::transport::Transport;
use breaker_actors::transport::memory::MemoryBroker;
use breaker_actors::{Registry, RegistryError};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);

/// Trips on 5 failures out of 10 calls; open 300 ms; 2 probes in total, both must succeed.
fn config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 10 },
            minimum_calls: 10,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 300 },
        half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: 2_000, ramp: None },
        local: None,
        outage: OutageConfig { policy: OutagePolicy::FailClosed, grace_ms: 200 },
        ..BreakerConfig::default()
    }
}

fn name(n: &str) -> BreakerName {
    BreakerName::new(n).unwrap()
}

/// Polls `cond` every millisecond of (paused) time until it holds; fails after `within`.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn node(broker: &MemoryBroker, id: &str) -> Registry {
    Registry::builder()
        .transport(broker.transport(NodeId::new(id).unwrap()))
        .lease_ttl(TTL)
        .lease_margin(Duration::from_millis(200))
        .lease_shards(4)
        .start()
        .await
        .unwrap()
}

/// Three nodes on one in-process broker, each holding breaker `payments`, once a decider holds
/// its lease shard and the first decision is out.
async fn three_nodes_deciding() -> (MemoryBroker, Vec<Registry>, Vec<Breaker>, breaker_actors::transport::LeaseShard) {
    let broker = MemoryBroker::new();
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let reg = node(&broker, id).await;
        breakers.push(reg.breaker("payments", config()).await.unwrap());
        nodes.push(reg);
    }
    let shard = nodes[0].shard_of(&name("payments"));
    eventually("a decider holds the lease", TTL, || broker.lease(shard).is_some()).await;
    eventually("the first decision is out", TTL, || broker.decision(&name("payments")).is_some()).await;
    (broker, nodes, breakers, shard)
}

async fn fail(b: &Breaker, calls: usize) {
    for _ in 0..calls {
        let _ = b.call(async { Err::<(), _>("boom") }).await;
    }
}

/// One call that succeeds if admitted: `Some(is_probe)` if admitted.
fn succeed(b: &Breaker) -> Option<bool> {
    let permit = b.try_acquire().ok()?;
    let probe = permit.is_probe();
    permit.success();
    Some(probe)
}

async fn deciding(reg: &Registry, breaker: &BreakerName) -> bool {
    reg.machine(breaker).await.is_some_and(|m| m.is_deciding())
}

async fn wait_deciding(reg: &Registry, breaker: &BreakerName) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !deciding(reg, breaker).await {
        assert!(Instant::now() < deadline, "{} never became the decider", reg.node());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn local_breaker_trips_rejects_half_opens_and_closes() {
    let reg = Registry::local().await.unwrap();
    let mut events = reg.subscribe().unwrap();
    let b = reg.breaker("payments", config()).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    assert_eq!(b.state(), StateLabel::Closed);
    assert_eq!(b.call(async { Ok::<_, ()>(7) }).await, Ok(7));

    fail(&b, 10).await;
    eventually("the breaker opens", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    let opened = Instant::now();
    match b.call(async { Ok::<_, ()>(()) }).await {
        Err(CallError::Rejected(r)) => {
            assert_eq!((r.state(), r.reason()), (StateLabel::Open, RejectReason::Open));
            assert!(r.retry_after().is_some_and(|d| d <= Duration::from_millis(300)), "{r}");
        }
        other => panic!("an open breaker rejects: {other:?}"),
    }

    // Keep calling: the rejections are the demand the decider grants probes to.
    let mut probes = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while b.state() != StateLabel::Closed || probes == 0 {
        assert!(Instant::now() < deadline, "the breaker never closed again");
        if succeed(&b) == Some(true) {
            probes += 1;
            assert!(opened.elapsed() >= Duration::from_millis(300), "probes only after the open period");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(probes, 2, "two successful probes close it");

    let mut transitions = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Applied { from, to, .. } = e.event {
            if from != to {
                transitions.push((from, to));
            }
        }
    }
    assert_eq!(
        transitions,
        [
            (StateLabel::Closed, StateLabel::Open),
            (StateLabel::Open, StateLabel::HalfOpen),
            (StateLabel::HalfOpen, StateLabel::Closed)
        ]
    );
    reg.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn get_or_create_and_typed_errors() {
    let reg = Registry::local().await.unwrap();
    let a = reg.breaker("inventory", config()).await.unwrap();
    let b = reg.breaker("inventory", config()).await.unwrap();
    assert!(Arc::ptr_eq(a.hot_path(), b.hot_path()), "the same breaker");

    // The same version with other settings: the fleet's (this node's first) stands.
    let other = BreakerConfig { quorum: 2, ..config() };
    let same_version = reg.breaker("inventory", other).await.unwrap();
    assert!(Arc::ptr_eq(a.hot_path(), same_version.hot_path()), "still the same breaker");
    assert_eq!(reg.config_of(&name("inventory")), Some(config()));
    // A newer version replaces it, on the same hot path.
    let newer = BreakerConfig { version: 2, quorum: 2, ..config() };
    let retuned = reg.breaker("inventory", newer.clone()).await.unwrap();
    assert!(Arc::ptr_eq(a.hot_path(), retuned.hot_path()));
    assert_eq!(reg.config_of(&name("inventory")), Some(newer));
    match reg.breaker("in.ventory", config()).await {
        Err(RegistryError::InvalidName { name, error }) => {
            assert_eq!(name, "in.ventory");
            assert_eq!(error, NameError::InvalidChar { ch: '.', at: 2 });
        }
        other => panic!("expected an invalid name, got {other:?}"),
    }
    let bad = BreakerConfig { half_open: HalfOpenPolicy { probe_budget: 0, ..config().half_open }, ..config() };
    match reg.breaker("orders", bad).await {
        Err(RegistryError::InvalidConfig(e)) => assert_eq!(e.field, "half_open.probe_budget"),
        other => panic!("expected an invalid config, got {other:?}"),
    }
    assert_eq!(reg.breaker_names().unwrap(), [name("inventory")]);
    let bad_setting = Registry::builder().lease_margin(Duration::from_secs(20)).start().await;
    assert!(matches!(bad_setting, Err(RegistryError::InvalidSetting { field: "lease_margin", .. })));
    reg.shutdown().await.unwrap();
}

/// The tuning lifecycle (`docs/tuning.md`) on the in-memory broker: a node with an older
/// or same-version config follows the fleet's; a newer version replaces it, the decider
/// records the switch, and every node ends on it. (The old code refused both nodes with
/// `ConfigConflict`; the NATS version of this test is `tests/tests/nats.rs`.)
#[tokio::test(start_paused = true)]
async fn configs_follow_the_newest_version_fleet_wide() {
    let broker = MemoryBroker::new();
    let (n1, n2) = (node(&broker, "n1").await, node(&broker, "n2").await);
    let search = name("search");
    n1.breaker("search", config()).await.unwrap();
    let same_version = BreakerConfig { quorum: 2, ..config() };
    n2.breaker("search", same_version).await.unwrap();
    assert_eq!(n2.config_of(&search), Some(config()), "the same version: the fleet's stands");
    let v2 = BreakerConfig { version: 2, quorum: 2, ..config() };
    let n3 = node(&broker, "n3").await;
    n3.breaker("search", v2.clone()).await.unwrap();
    eventually("every node on version 2", Duration::from_secs(10), || {
        [&n1, &n2, &n3].iter().all(|n| n.config_of(&search).is_some_and(|c| c.version == 2))
    })
    .await;
    assert_eq!(n1.config_of(&search), Some(v2.clone()));
    let decision = broker.decision(&search).expect("a decision");
    assert_eq!(decision.config_version, 2, "decisions record the version they were made under");
    // An old pod restarted during the rollout follows version 2.
    let n4 = node(&broker, "n4").await;
    n4.breaker("search", config()).await.unwrap();
    assert_eq!(n4.config_of(&search), Some(v2));
}

#[tokio::test(start_paused = true)]
async fn failures_on_one_node_trip_all_three() {
    let (_broker, _nodes, breakers, _shard) = three_nodes_deciding().await;

    fail(&breakers[2], 10).await;
    eventually("all three open", Duration::from_secs(1), || breakers.iter().all(|b| b.state() == StateLabel::Open))
        .await;
    for b in &breakers {
        assert!(matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::Open));
    }
}

#[tokio::test(start_paused = true)]
async fn five_nodes_share_a_probe_budget_of_two_and_close_together() {
    let broker = MemoryBroker::new();
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for i in 1..=5 {
        let reg = node(&broker, &format!("n{i}")).await;
        breakers.push(reg.breaker("ledger", config()).await.unwrap());
        nodes.push(reg);
    }
    eventually("the first decision is out", TTL, || broker.decision(&name("ledger")).is_some()).await;
    fail(&breakers[0], 10).await;
    eventually("all open", Duration::from_secs(1), || breakers.iter().all(|b| b.state() == StateLabel::Open)).await;

    // Every node keeps calling: demand everywhere, probes only where granted.
    let mut probes = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !breakers.iter().all(|b| b.state() == StateLabel::Closed) {
        assert!(Instant::now() < deadline, "the fleet never closed");
        for b in &breakers {
            if succeed(b) == Some(true) {
                probes += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let history = broker.history(&name("ledger"));
    let rounds: std::collections::BTreeSet<_> =
        history.iter().filter(|(_, d)| matches!(d.state, FleetState::HalfOpen { .. })).map(|(_, d)| d.phase).collect();
    assert_eq!(rounds.len(), 1, "one half-open round: {history:?}");
    assert!((1..=2).contains(&probes), "{probes} probes admitted fleet-wide; the budget is 2");
    assert!(matches!(history.last().map(|(_, d)| &d.state), Some(FleetState::Closed)));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_decider_is_replaced_after_the_ttl() {
    let (broker, nodes, breakers, shard) = three_nodes_deciding().await;
    let first = broker.lease(shard).unwrap();
    let dead = nodes.iter().position(|n| n.node() == &first.holder).unwrap();
    nodes[dead].crash().await;
    let crashed_at = Instant::now();
    assert!(matches!(breakers[dead].try_acquire(), Err(r) if r.reason() == RejectReason::ShutDown));

    eventually("another node takes the lease", 3 * TTL, || {
        broker.lease(shard).is_some_and(|l| l.holder != first.holder)
    })
    .await;
    assert!(crashed_at.elapsed() >= Duration::from_millis(999), "not before the TTL: {:?}", crashed_at.elapsed());
    let alive: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    let holder = broker.lease(shard).unwrap().holder;
    let next = nodes.iter().find(|n| n.node() == &holder).unwrap();
    wait_deciding(next, &name("payments")).await;

    fail(&breakers[alive[0]], 10).await;
    eventually("the survivors open", Duration::from_secs(1), || {
        alive.iter().all(|&i| breakers[i].state() == StateLabel::Open)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over_without_waiting_for_the_ttl() {
    let broker = MemoryBroker::new();
    let (n1, n2) = (node(&broker, "n1").await, node(&broker, "n2").await);
    let (b1, b2) = (n1.breaker("payments", config()).await.unwrap(), n2.breaker("payments", config()).await.unwrap());
    let shard = n1.shard_of(b1.name());
    eventually("a decider", TTL, || broker.decision(b1.name()).is_some()).await;
    let holder = broker.lease(shard).unwrap().holder;
    let (leaving, staying, stay_b) = if &holder == n1.node() { (&n1, &n2, &b2) } else { (&n2, &n1, &b1) };

    leaving.shutdown().await.unwrap();
    let left_at = Instant::now();
    eventually("the other node takes over", TTL, || broker.lease(shard).is_some_and(|l| &l.holder == staying.node()))
        .await;
    assert!(left_at.elapsed() < TTL / 2, "handed over in {:?}", left_at.elapsed());
    wait_deciding(staying, stay_b.name()).await;
    fail(stay_b, 10).await;
    eventually("the remaining node still decides", Duration::from_secs(1), || stay_b.state() == StateLabel::Open).await;
}

#[tokio::test(start_paused = true)]
async fn a_node_joining_while_open_starts_open() {
    let broker = MemoryBroker::new();
    let n1 = node(&broker, "n1").await;
    let b1 = n1.breaker("payments", config()).await.unwrap();
    wait_deciding(&n1, b1.name()).await;
    fail(&b1, 10).await;
    eventually("open", Duration::from_secs(1), || b1.state() == StateLabel::Open).await;

    let n2 = node(&broker, "n2").await;
    let b2 = n2.breaker("payments", config()).await.unwrap();
    assert_eq!(b2.state(), StateLabel::Open);
    assert!(matches!(b2.try_acquire(), Err(r) if r.reason() == RejectReason::Open), "not even one call goes out");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_nobody_here_registered_is_adopted_by_the_shard_holder() {
    let broker = MemoryBroker::new();
    let n1 = node(&broker, "n1").await;
    // Same shard (4 shards): n1 holds it through its own breaker first.
    let own = n1.breaker("alpha", config()).await.unwrap();
    wait_deciding(&n1, own.name()).await;
    let shard = n1.shard_of(own.name());
    let foreign = (0..100).map(|i| format!("beta{i}")).find(|n| n1.shard_of(&name(n)) == shard).unwrap();

    let n2 = node(&broker, "n2").await;
    let b2 = n2.breaker(&foreign, config()).await.unwrap();
    // n1 held the shard before the breaker existed: it adopts it at its next sweep of the
    // config bucket (every 30 s, off the lease path), not at a renewal.
    let sweep = Duration::from_secs(30);
    eventually("n1 adopts the breaker", sweep + 2 * TTL, || n1.breaker_names().unwrap().contains(b2.name())).await;
    fail(&b2, 10).await;
    eventually("n1 decides for n2", Duration::from_secs(1), || b2.state() == StateLabel::Open).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_actor_is_restarted_and_the_hot_path_keeps_answering() {
    let broker = MemoryBroker::new();
    let reg = node(&broker, "n1").await;
    let b = reg.breaker("payments", config()).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    fail(&b, 10).await;
    eventually("open", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    let term_before = broker.decision(b.name()).unwrap().id.term;

    let mut events = reg.subscribe().unwrap();
    reg.inject_panic(b.name()).unwrap();
    eventually("restarted", Duration::from_secs(1), || reg.restarts(b.name()) == Some(1)).await;
    assert!(matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::Open), "answers from the last snapshot");

    let deadline = Instant::now() + Duration::from_secs(5);
    while b.state() != StateLabel::Closed {
        assert!(Instant::now() < deadline, "the restarted breaker never recovered");
        let _ = succeed(&b);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    fail(&b, 10).await;
    eventually("it trips again", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    let mut applied = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Applied { id, .. } = e.event {
            applied.push(id);
        }
    }
    assert!(applied.len() >= 3, "{applied:?}");
    assert!(applied.windows(2).all(|w| w[0] < w[1]), "each decision is announced once per node: {applied:?}");
    assert!(
        broker.decision(b.name()).unwrap().id.term > term_before,
        "the restarted machine leads a new term, never its predecessor's"
    );
}

#[tokio::test(start_paused = true)]
async fn health_checks_close_an_open_breaker_through_the_registry_fn() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let reg = Registry::builder()
        .health_check(Arc::new(move |_| {
            let ok = flag.load(Ordering::SeqCst);
            Box::pin(async move { ok })
        }))
        .start()
        .await
        .unwrap();
    let checked = BreakerConfig {
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        health_check: Some(HealthCheckPolicy {
            initial_interval_ms: 50,
            max_interval_ms: 100,
            successes_required: 2,
            closes_directly: true,
        }),
        ..config()
    };
    let b = reg.breaker("payments", checked.clone()).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    fail(&b, 10).await;
    eventually("open", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.state(), StateLabel::Open, "failing health checks keep it open");
    healthy.store(true, Ordering::SeqCst);
    eventually("two passing checks close it", Duration::from_secs(1), || b.state() == StateLabel::Closed).await;

    // Without a health-check fn every check fails.
    let bare = Registry::local().await.unwrap();
    let b = bare.breaker("payments", checked).await.unwrap();
    wait_deciding(&bare, b.name()).await;
    fail(&b, 10).await;
    eventually("open", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.state(), StateLabel::Open);
}

#[tokio::test(start_paused = true)]
async fn everything_after_shutdown_is_a_typed_error() {
    let broker = MemoryBroker::new();
    let reg = node(&broker, "n1").await;
    let b = reg.breaker("payments", config()).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    let shard = reg.shard_of(b.name());
    reg.shutdown().await.unwrap();
    assert_eq!(broker.lease(shard), None, "released");
    tokio::time::sleep(TTL).await;
    assert_eq!(broker.lease(shard), None, "and not taken again");
    let terms: std::collections::BTreeSet<_> = broker.history(b.name()).iter().map(|(_, d)| d.id.term).collect();
    assert_eq!(terms.len(), 1, "stepping down never starts a new term: {terms:?}");
    assert_eq!(reg.breaker("payments", config()).await.unwrap_err(), RegistryError::ShutDown);
    assert_eq!(reg.breaker("other", config()).await.unwrap_err(), RegistryError::ShutDown);
    assert!(matches!(reg.subscribe(), Err(RegistryError::ShutDown)));
    assert_eq!(reg.breaker_names(), Err(RegistryError::ShutDown));
    assert_eq!(reg.shutdown().await, Err(RegistryError::ShutDown));
    assert!(matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::ShutDown));
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_node_applies_its_outage_policy_then_resyncs() {
    let broker = MemoryBroker::new();
    let (n1, n2) = (node(&broker, "n1").await, node(&broker, "n2").await);
    let b1 = n1.breaker("payments", config()).await.unwrap();
    wait_deciding(&n1, b1.name()).await;
    let b2 = n2.breaker("payments", config()).await.unwrap();

    broker.disconnect(n2.node());
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b2.state(), StateLabel::Closed, "a blip within the grace period changes nothing");
    eventually("fail-closed after the grace period", Duration::from_secs(1), || b2.state() == StateLabel::Open).await;
    assert!(cut_at.elapsed() >= Duration::from_millis(200));
    assert!(b2.hot_path().snapshot().outage);

    // The fleet trips while n2 is away; n2 learns it when it is back.
    fail(&b1, 10).await;
    eventually("n1 opens", Duration::from_secs(1), || b1.state() == StateLabel::Open).await;
    broker.reconnect(n2.node());
    eventually("n2 resyncs", Duration::from_secs(1), || {
        let s = b2.hot_path().snapshot();
        !s.outage && s.fleet == StateLabel::Open
    })
    .await;
    assert_eq!(b2.state(), StateLabel::Open);
}

#[tokio::test(start_paused = true)]
async fn a_report_flood_reaches_the_decider_through_a_bounded_inbox_without_loss() {
    const FLOOD: u64 = 3_000;
    let broker = MemoryBroker::new();
    let reg = node(&broker, "n1").await;
    let b = reg.breaker("payments", config()).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    let applied = broker.decision(b.name()).unwrap().id;
    let before = reg.machine(b.name()).await.unwrap().stats().reports_counted;

    // A foreign publisher floods the feed much faster than one inbox (256) holds.
    let publisher = broker.transport(NodeId::new("flood").unwrap());
    for seq in 1..=FLOOD {
        let report = Report {
            version: WIRE_VERSION,
            breaker: b.name().clone(),
            node: NodeId::new("flood").unwrap(),
            incarnation: 1,
            seq,
            applied,
            clock: VectorClock::new(applied.term),
            counts: OutcomeCounts { success: 1, ..OutcomeCounts::default() },
            longest_failure_streak: 0,
            local_open: false,
        };
        publisher.publish_report(report).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let counted = reg.machine(b.name()).await.unwrap().stats().reports_counted - before;
        if counted == FLOOD {
            break;
        }
        assert!(Instant::now() < deadline, "{counted} of {FLOOD} reports counted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(b.state(), StateLabel::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_decider_is_replaced_and_follows_when_it_is_back() {
    let broker = MemoryBroker::new();
    let (n1, n2) = (node(&broker, "n1").await, node(&broker, "n2").await);
    let b1 = n1.breaker("payments", config()).await.unwrap();
    wait_deciding(&n1, b1.name()).await;
    let b2 = n2.breaker("payments", config()).await.unwrap();
    let shard = n1.shard_of(b1.name());
    let old_term = broker.lease(shard).unwrap().revision;

    broker.disconnect(n1.node());
    eventually("n2 takes the lease after the TTL", 3 * TTL, || {
        broker.lease(shard).is_some_and(|l| &l.holder == n2.node())
    })
    .await;
    wait_deciding(&n2, b2.name()).await;
    assert!(!deciding(&n1, b1.name()).await, "the cut-off node stopped deciding by its own clock");
    fail(&b2, 10).await;
    eventually("n2 opens", Duration::from_secs(1), || b2.state() == StateLabel::Open).await;

    broker.reconnect(n1.node());
    eventually("n1 follows the new decider", Duration::from_secs(1), || {
        let s = b1.hot_path().snapshot();
        !s.outage && s.fleet == StateLabel::Open
    })
    .await;
    let history = broker.history(b1.name());
    assert!(history.windows(2).all(|w| w[0].1.id < w[1].1.id), "decisions only move forward: {history:?}");
    assert!(history.last().unwrap().1.id.term.0 > old_term);
    assert_eq!(broker.lease(shard).unwrap().holder, *n2.node());
}

fn manual(reason: &Reason) -> Option<(CommandKind, &str, &str)> {
    match reason {
        Reason::Manual { command, actor, reason } => Some((*command, actor.as_str(), reason.as_str())),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_command_from_any_node_reaches_the_decider_and_applies_everywhere() {
    let (broker, nodes, breakers, shard) = three_nodes_deciding().await;
    let holder = broker.lease(shard).unwrap().holder;
    let issuer = nodes.iter().find(|n| n.node() != &holder).unwrap();
    assert!(!deciding(issuer, &name("payments")).await);

    issuer.command("payments", CommandKind::ForceOpen, "alice", "INC-42: provider outage").await.unwrap();
    eventually("every node is forced open", Duration::from_secs(1), || {
        breakers.iter().all(|b| b.state() == StateLabel::ForcedOpen)
    })
    .await;
    for b in &breakers {
        assert!(
            matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::Open && r.state() == StateLabel::ForcedOpen)
        );
    }
    let decision = broker.decision(&name("payments")).unwrap();
    assert_eq!(decision.state, FleetState::ForcedOpen);
    assert_eq!(decision.decider, holder, "the decider applied it");
    assert_eq!(manual(&decision.reason), Some((CommandKind::ForceOpen, "alice", "INC-42: provider outage")));

    issuer.command("payments", CommandKind::Reset, "bob", "resolved").await.unwrap();
    eventually("every node is closed again", Duration::from_secs(1), || {
        breakers.iter().all(|b| b.state() == StateLabel::Closed)
    })
    .await;
    for b in &breakers {
        assert_eq!(succeed(b), Some(false), "admitted, not as a probe");
    }
    let decision = broker.decision(&name("payments")).unwrap();
    assert_eq!(manual(&decision.reason), Some((CommandKind::Reset, "bob", "resolved")));
    let manuals = broker.history(&name("payments")).iter().filter(|(_, d)| manual(&d.reason).is_some()).count();
    assert_eq!(manuals, 2, "each command applied once");
    assert_eq!(broker.pending_commands(&name("payments")), 0);
}

#[tokio::test(start_paused = true)]
async fn a_command_issued_while_nobody_decides_is_applied_by_the_next_decider() {
    let broker = MemoryBroker::new();
    let n1 = node(&broker, "n1").await;
    let b1 = n1.breaker("payments", config()).await.unwrap();
    wait_deciding(&n1, b1.name()).await;
    let shard = n1.shard_of(b1.name());
    n1.shutdown().await.unwrap();
    assert_eq!(broker.lease(shard), None, "released at shutdown: nobody decides");

    // A node without the breaker issues the command; it waits on the control stream.
    let n2 = node(&broker, "n2").await;
    n2.command("payments", CommandKind::ForceOpen, "carol", "maintenance window").await.unwrap();
    assert_eq!(broker.pending_commands(b1.name()), 1);
    assert_eq!(broker.decision(b1.name()).map(|d| d.state), Some(FleetState::Closed));

    let n3 = node(&broker, "n3").await;
    let b3 = n3.breaker("payments", config()).await.unwrap();
    eventually("the new decider applies it", 2 * TTL, || b3.state() == StateLabel::ForcedOpen).await;
    assert!(matches!(b3.try_acquire(), Err(r) if r.reason() == RejectReason::Open));
    let decision = broker.decision(b3.name()).unwrap();
    assert_eq!(&decision.decider, n3.node());
    assert_eq!(manual(&decision.reason), Some((CommandKind::ForceOpen, "carol", "maintenance window")));
    assert_eq!(broker.pending_commands(b3.name()), 0, "consumed");
    let manuals = broker.history(b3.name()).iter().filter(|(_, d)| manual(&d.reason).is_some()).count();
    assert_eq!(manuals, 1, "applied once");
}

#[tokio::test(start_paused = true)]
async fn invalid_commands_are_typed_errors() {
    let reg = Registry::local().await.unwrap();
    match reg.command("in.ventory", CommandKind::ForceOpen, "ops", "why").await {
        Err(RegistryError::InvalidName { name, error }) => {
            assert_eq!(name, "in.ventory");
            assert_eq!(error, NameError::InvalidChar { ch: '.', at: 2 });
        }
        other => panic!("expected an invalid name, got {other:?}"),
    }
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    assert_eq!(
        reg.command("inventory", CommandKind::ForceOpen, "ops", &long).await,
        Err(RegistryError::TextTooLong { field: "reason", len: MAX_TEXT_LEN + 1, max: MAX_TEXT_LEN })
    );
    assert_eq!(
        reg.command("inventory", CommandKind::ForceOpen, &long, "why").await,
        Err(RegistryError::TextTooLong { field: "actor", len: MAX_TEXT_LEN + 1, max: MAX_TEXT_LEN })
    );
    let at_limit = "x".repeat(MAX_TEXT_LEN);
    reg.command("inventory", CommandKind::ForceOpen, &at_limit, &at_limit).await.unwrap();
    reg.shutdown().await.unwrap();
    assert_eq!(reg.command("inventory", CommandKind::Reset, "ops", "why").await, Err(RegistryError::ShutDown));
}

#[tokio::test(start_paused = true)]
async fn a_time_boxed_command_returns_every_node_to_automatic_control_when_it_expires() {
    let (broker, nodes, breakers, shard) = three_nodes_deciding().await;
    let holder = broker.lease(shard).unwrap().holder;
    let issuer = nodes.iter().find(|n| n.node() != &holder).unwrap();
    let started = Instant::now();
    issuer.command_for("payments", CommandKind::ForceOpen, Duration::from_secs(2), "alice", "deploy").await.unwrap();
    eventually("every node is forced open", Duration::from_secs(1), || {
        breakers.iter().all(|b| b.state() == StateLabel::ForcedOpen)
    })
    .await;
    assert_eq!(
        broker.decision(&name("payments")).unwrap().expires_after_ms.map(std::num::NonZeroU64::get),
        Some(2_000)
    );
    eventually("every node is closed again", Duration::from_secs(3), || {
        breakers.iter().all(|b| b.state() == StateLabel::Closed)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(2), "not before its time: {:?}", started.elapsed());
    let decision = broker.decision(&name("payments")).unwrap();
    assert_eq!(decision.reason, Reason::OverrideExpired { command: CommandKind::ForceOpen, after_ms: 2_000 });
    assert_eq!((&decision.decider, decision.expires_after_ms), (&holder, None));
    let history = broker.history(&name("payments"));
    let forced =
        history.iter().position(|(_, d)| manual(&d.reason) == Some((CommandKind::ForceOpen, "alice", "deploy")));
    let expired = history.iter().position(|(_, d)| matches!(d.reason, Reason::OverrideExpired { .. }));
    assert!(forced.is_some() && forced < expired, "both steps, in order: {history:#?}");
}

#[tokio::test(start_paused = true)]
async fn impossible_time_boxes_are_typed_errors_and_nothing_is_published() {
    use breaker_actors::machine::{MAX_OVERRIDE_MS, OverrideError};
    let broker = MemoryBroker::new();
    let reg = node(&broker, "n1").await;
    let week = Duration::from_millis(MAX_OVERRIDE_MS);
    let cases = [
        (CommandKind::Reset, Duration::from_secs(1), OverrideError::ForReset),
        (CommandKind::Disable, Duration::ZERO, OverrideError::Zero),
        (
            CommandKind::ForceOpen,
            week + Duration::from_millis(1),
            OverrideError::TooLong { duration_ms: MAX_OVERRIDE_MS + 1 },
        ),
    ];
    for (kind, duration, error) in cases {
        let got = reg.command_for("payments", kind, duration, "ops", "why").await;
        assert_eq!(got, Err(RegistryError::BadOverride(error)));
        let source = std::error::Error::source(got.as_ref().unwrap_err()).map(ToString::to_string);
        assert_eq!(source, Some(error.to_string()), "the error wraps its cause");
    }
    assert_eq!(broker.pending_commands(&name("payments")), 0);
    reg.command_for("payments", CommandKind::ForceOpen, week, "ops", "why").await.unwrap();
    assert_eq!(broker.pending_commands(&name("payments")), 1);
}

#[tokio::test(start_paused = true)]
async fn describe_is_answered_by_the_decider_alone_with_its_window() {
    let (broker, nodes, breakers, shard) = three_nodes_deciding().await;
    let holder = broker.lease(shard).unwrap().holder;
    let (other, breaker) = nodes.iter().zip(&breakers).find(|(n, _)| n.node() != &holder).unwrap();
    // Below the window's minimum: evidence, not a trip.
    fail(breaker, 4).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let answer = loop {
        let answers = broker.describe(&name("payments")).await;
        assert!(answers.len() <= 1, "only the decider answers: {answers:#?}");
        if let Some(a) = answers.into_iter().next().filter(|a| a.view.window.failures == 4) {
            break a;
        }
        assert!(Instant::now() < deadline, "the decider never showed the 4 failures");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(answer.node, holder);
    assert_eq!((answer.view.window.calls, answer.view.window.slow), (4, 0));
    let mine: Vec<_> = answer.view.contributions.iter().filter(|c| &c.node == other.node()).collect();
    assert_eq!(mine.len(), 1, "{:#?}", answer.view.contributions);
    assert_eq!((mine[0].failed, mine[0].slow), (4, 0));
    assert_eq!(answer.view.state, FleetState::Closed);
    assert_eq!(answer.view.last_decided, broker.decision(&name("payments")).unwrap().id);
    assert_eq!(answer.config, config());
    assert_eq!(other.describe(&name("payments")).await.unwrap(), None, "a node that does not decide says nothing");
    assert_eq!(broker.describe(&name("refunds")).await, Vec::new(), "nobody has refunds");
}

/// How a test closes a tripped breaker without a half-open round.
#[derive(Debug, Clone, Copy)]
enum DirectClose {
    Reset,
    DisableThenReset,
    ForceClosedThenReset,
    HealthCheck,
}

/// Trips on two failures in a row (and on nothing else); open for a minute, so only a
/// command or a health check closes it; flushes every millisecond.
async fn streak_breaker(close: DirectClose) -> (Registry, Breaker) {
    let config = BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 100 },
            minimum_calls: 100,
            failure_rate: None,
            consecutive_failures: Some(2),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        health_check: matches!(close, DirectClose::HealthCheck).then_some(HealthCheckPolicy {
            initial_interval_ms: 50,
            max_interval_ms: 50,
            successes_required: 1,
            closes_directly: true,
        }),
        ..config()
    };
    let reg = Registry::builder()
        .flush_interval(Duration::from_millis(1))
        .health_check(Arc::new(|_| Box::pin(async { true })))
        .start()
        .await
        .unwrap();
    let b = reg.breaker("payments", config).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    (reg, b)
}

async fn command_applied(reg: &Registry, b: &Breaker, kind: CommandKind, state: StateLabel) {
    reg.command("payments", kind, "ops", "test").await.unwrap();
    eventually(&format!("{kind:?} applies"), Duration::from_secs(1), || b.state() == state).await;
}

/// Issue 12, item 2: a failure streak never crosses a phase. Tripped by two failures in a
/// row, then closed without a half-open round (a reset, possibly after a manual state, or a
/// health check that closes directly): the first call after that succeeds, and it must
/// leave the breaker closed. (The hot path's streak cells used to survive the close and
/// hand the old run of 2 to the first report after it: a trip on `failed: 0, streak: 2`.)
#[tokio::test(start_paused = true)]
async fn a_success_after_a_direct_close_leaves_it_closed() {
    let mut wrong = Vec::new();
    for close in
        [DirectClose::Reset, DirectClose::DisableThenReset, DirectClose::ForceClosedThenReset, DirectClose::HealthCheck]
    {
        let (reg, b) = streak_breaker(close).await;
        fail(&b, 2).await;
        eventually("two failures in a row trip it", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
        match close {
            DirectClose::DisableThenReset => {
                command_applied(&reg, &b, CommandKind::Disable, StateLabel::Disabled).await;
            }
            DirectClose::ForceClosedThenReset => {
                command_applied(&reg, &b, CommandKind::ForceClosed, StateLabel::ForcedClosed).await;
            }
            DirectClose::Reset | DirectClose::HealthCheck => {}
        }
        if let DirectClose::HealthCheck = close {
            eventually("the health check closes it", Duration::from_secs(1), || b.state() == StateLabel::Closed).await;
        } else {
            command_applied(&reg, &b, CommandKind::Reset, StateLabel::Closed).await;
        }
        let before = reg.machine(b.name()).await.unwrap().stats();
        assert_eq!(succeed(&b), Some(false), "{close:?}: closed admits the call, not as a probe");
        // Until the decider has judged the report carrying that success.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let machine = reg.machine(b.name()).await.unwrap();
            let stats = machine.stats();
            if stats.reports_counted > before.reports_counted && stats.recorded.success > before.recorded.success {
                if stats.decisions_made != before.decisions_made {
                    wrong.push(format!("{close:?}: one success made the decision {:?}", machine.applied()));
                }
                break;
            }
            assert!(Instant::now() < deadline, "{close:?}: the success was never judged");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        reg.shutdown().await.unwrap();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Issue 12, item 3: an ignored probe gives its slot back, so neutral outcomes never stall
/// a half-open round. One probe in the round, one success closes; the round would wait 30 s.
/// A node that has no grant yet is told so.
#[tokio::test(start_paused = true)]
async fn an_ignored_probe_gives_its_slot_back_and_the_round_goes_on() {
    let config = BreakerConfig {
        half_open: HalfOpenPolicy { probe_budget: 1, success_threshold: 1, max_wait_ms: 30_000, ramp: None },
        ..config()
    };
    let reg = Registry::builder().flush_interval(Duration::from_millis(1)).start().await.unwrap();
    let b = reg.breaker("payments", config).await.unwrap();
    wait_deciding(&reg, b.name()).await;
    fail(&b, 10).await;
    eventually("the breaker opens", Duration::from_secs(1), || b.state() == StateLabel::Open).await;
    // No call while open: no demand, so half-open grants this node nothing at first.
    eventually("half-open", Duration::from_secs(1), || b.state() == StateLabel::HalfOpen).await;
    let rejected = b.try_acquire().map(drop).expect_err("no grant yet");
    assert_eq!(rejected.reason(), RejectReason::NoProbeGranted, "{rejected}");
    assert!(rejected.to_string().contains("no probe granted to this node yet"), "{rejected}");

    // That rejection was demand: the decider grants the round's one probe.
    let granted = Instant::now();
    let probe = loop {
        if let Ok(permit) = b.try_acquire() {
            break permit;
        }
        assert!(granted.elapsed() < Duration::from_secs(1), "no probe was granted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert!(probe.is_probe());
    let taken = b.try_acquire().map(drop).expect_err("the one probe is out");
    assert_eq!(taken.reason(), RejectReason::NoProbeLeft, "{taken}");
    probe.ignore();

    // Neutral: the slot is back at once, well before the round's 30 s.
    let again = b.try_acquire().expect("the ignored probe's slot is back");
    assert!(again.is_probe());
    again.success();
    eventually("the probe's success closes it", Duration::from_secs(1), || b.state() == StateLabel::Closed).await;
    let machine = reg.machine(b.name()).await.unwrap();
    assert!(
        matches!(machine.applied().map(|d| &d.reason), Some(Reason::ProbesSucceeded { successes: 1 })),
        "{:?}",
        machine.applied()
    );
    reg.shutdown().await.unwrap();
}

/// Whether some node decides `breaker` and the bucket holds a decision of a term above
/// `above` (a decider that has restated, not just one holding a lease).
async fn decided_above(broker: &MemoryBroker, nodes: &[Registry], breaker: &BreakerName, above: u64) -> bool {
    let mut any = false;
    for n in nodes {
        any |= deciding(n, breaker).await;
    }
    any && broker.decision(breaker).is_some_and(|d| d.id.term.0 > above)
}

#[tokio::test(start_paused = true)]
async fn a_rebuilt_lease_store_under_high_terms_and_a_garbage_lease_value_each_get_a_decider_within_a_ttl() {
    let (broker, nodes, breakers, shard) = three_nodes_deciding().await;
    let payments = name("payments");
    // A decision of a fleet that has lived through 20,012 terms (written as its decider
    // would have): every node applies it, the decider is deposed by it.
    let (revision, current) = broker.history(&payments).last().cloned().unwrap();
    let old = breaker_actors::machine::Decision {
        id: breaker_actors::machine::DecisionId::new(20_012, 1),
        phase: breaker_actors::machine::DecisionId::new(20_012, 1),
        reason: Reason::TermStarted { previous: current.id },
        clock: VectorClock::new(breaker_actors::machine::Term(20_012)),
        ..current
    };
    let writer = broker.transport(NodeId::new("old-fleet").unwrap());
    assert!(matches!(
        writer.write_decision(old, revision).await,
        breaker_actors::transport::WriteOutcome::Written { .. }
    ));
    let mut i = 0;
    loop {
        if decided_above(&broker, &nodes, &payments, 20_012).await {
            break;
        }
        i += 1;
        assert!(i < 1_000, "no decider above the stored term within a second");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // The lease store rebuilt: revisions from 1, no term record.
    let stored = broker.decision(&payments).unwrap().id.term.0;
    broker.wipe_leases();
    let wiped_at = Instant::now();
    while !decided_above(&broker, &nodes, &payments, stored).await {
        assert!(wiped_at.elapsed() < TTL, "no decider within a TTL of the rebuilt lease store");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(broker.lease(shard).unwrap().term.0 > stored, "the lease records the new term");

    // A value that is no node's lease and never expires: replaced after about one TTL.
    let stored = broker.decision(&payments).unwrap().id.term.0;
    broker.put_garbage_lease(shard);
    let garbage_at = Instant::now();
    while !decided_above(&broker, &nodes, &payments, stored).await {
        assert!(garbage_at.elapsed() < 2 * TTL, "the garbage lease value was never replaced");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(garbage_at.elapsed() >= TTL, "not before the value stood still for a TTL: {:?}", garbage_at.elapsed());
    fail(&breakers[0], 10).await;
    eventually("the fleet still trips", TTL, || breakers.iter().all(|b| b.state() == StateLabel::Open)).await;
}

/// An idle breaker costs no timer wakeups: over 10 s its actor handles no flush and no
/// wake-up message. A breaker called every millisecond meanwhile, all successes while
/// closed, is drained at the lazy interval (100 ms: its reports would wait that long in the
/// batcher anyway), not every flush (5 ms): at most about 100 of the 2,000 flushes poke it,
/// and every one of its calls still reaches its machine. A failure is drained within one
/// flush interval, as before.
#[tokio::test(start_paused = true)]
async fn an_idle_breaker_handles_no_timer_messages_and_a_success_only_one_is_drained_lazily() {
    const CALLS: u64 = 10_000;
    let reg = Registry::local().await.unwrap();
    let _idle = reg.breaker("idle", config()).await.unwrap();
    let busy = reg.breaker("busy", config()).await.unwrap();
    // Leases and bootstrap first: what is measured is the steady state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, active) = (name("idle"), name("busy"));
    let before = (reg.timer_messages(&idle).unwrap(), reg.timer_messages(&active).unwrap());
    for _ in 0..CALLS {
        busy.try_acquire().unwrap().success();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let idle_messages = reg.timer_messages(&idle).unwrap() - before.0;
    let busy_messages = reg.timer_messages(&active).unwrap() - before.1;
    assert_eq!(idle_messages, 0, "the idle breaker's actor was woken {idle_messages} times in 10 s");
    // 100 lazy drains in 10 s, plus a few wake-ups of the machine's own deadlines.
    assert!(
        (50..=150).contains(&busy_messages),
        "the success-only breaker was poked {busy_messages} times in 10 s (2,000 flushes)"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let recorded = reg.machine(&active).await.unwrap().stats().recorded.success;
        if recorded == CALLS {
            break;
        }
        assert!(recorded < CALLS && Instant::now() < deadline, "{recorded} of {CALLS} calls reached the machine");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Successes waiting lazily, then a failure: drained within one flush interval (5 ms),
    // the successes with it.
    for _ in 0..3 {
        busy.try_acquire().unwrap().success();
    }
    busy.try_acquire().unwrap().failure();
    // One flush interval, and the poll's own millisecond.
    let deadline = Instant::now() + Duration::from_millis(5 + 1);
    loop {
        let recorded = reg.machine(&active).await.unwrap().stats().recorded;
        if recorded.failure == 1 {
            assert_eq!(recorded.success, CALLS + 3, "the waiting successes are drained with the failure");
            break;
        }
        assert!(Instant::now() < deadline, "the failure was not drained within one flush interval");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The in-process transport, but listing the config bucket takes `delay` (a NATS bucket
/// listed one key at a time under load).
struct SlowConfigs {
    inner: Arc<dyn Transport>,
    delay: Duration,
}

mod slow_configs {
    use std::sync::Arc;
    use std::time::Duration;

    use breaker_actors::machine::{BreakerConfig, BreakerName, Command, ConfigRecord, Decision, NodeId, Report, Term};
    use breaker_actors::transport::{
        BoxFuture, ConfigWrite, ConnState, DecisionRead, FleetConfig, Inbox, LeaseAcquire, LeaseRequest, LeaseShard,
        Revision, Subscription, Transport, TransportError, WriteOutcome,
    };
    use tokio::sync::{Notify, watch};

    impl Transport for super::SlowConfigs {
        fn node(&self) -> &NodeId {
            self.inner.node()
        }
        fn connection(&self) -> watch::Receiver<ConnState> {
            self.inner.connection()
        }
        fn publish_report(&self, report: Report) -> BoxFuture<Result<(), TransportError>> {
            self.inner.publish_report(report)
        }
        fn consume_reports(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
            self.inner.consume_reports(breaker, inbox)
        }
        fn publish_command(&self, command: Command) -> BoxFuture<Result<(), TransportError>> {
            self.inner.publish_command(command)
        }
        fn consume_commands(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
            self.inner.consume_commands(breaker, inbox)
        }
        fn watch_decision(&self, breaker: &BreakerName, inbox: Inbox) -> Subscription {
            self.inner.watch_decision(breaker, inbox)
        }
        fn write_decision(&self, decision: Decision, expected: Revision) -> BoxFuture<WriteOutcome> {
            self.inner.write_decision(decision, expected)
        }
        fn read_decision(&self, breaker: &BreakerName) -> BoxFuture<Result<DecisionRead, TransportError>> {
            self.inner.read_decision(breaker)
        }
        fn read_config(&self, breaker: &BreakerName) -> BoxFuture<Result<Option<FleetConfig>, TransportError>> {
            self.inner.read_config(breaker)
        }
        fn write_config(
            &self,
            breaker: &BreakerName,
            record: ConfigRecord,
            expected: Revision,
        ) -> BoxFuture<Result<ConfigWrite, TransportError>> {
            self.inner.write_config(breaker, record, expected)
        }
        fn configs(&self) -> BoxFuture<Result<Vec<(BreakerName, BreakerConfig)>, TransportError>> {
            let (listing, delay): (_, Duration) = (self.inner.configs(), self.delay);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                listing.await
            })
        }
        fn acquire_lease(
            &self,
            shard: LeaseShard,
            request: LeaseRequest,
        ) -> BoxFuture<Result<LeaseAcquire, TransportError>> {
            self.inner.acquire_lease(shard, request)
        }
        fn renew_lease(
            &self,
            shard: LeaseShard,
            revision: Revision,
            term: Term,
            ttl: Duration,
        ) -> BoxFuture<Result<Option<Revision>, TransportError>> {
            self.inner.renew_lease(shard, revision, term, ttl)
        }
        fn release_lease(&self, shard: LeaseShard, revision: Revision) -> BoxFuture<Result<bool, TransportError>> {
            self.inner.release_lease(shard, revision)
        }
        fn flush(&self, timeout: Duration) -> BoxFuture<bool> {
            self.inner.flush(timeout)
        }
        fn watch_leases(&self, notify: Arc<Notify>) -> Subscription {
            self.inner.watch_leases(notify)
        }

        fn serve_describe(&self, describer: breaker_actors::transport::Describer) -> Subscription {
            self.inner.serve_describe(describer)
        }
    }
}

/// Lease upkeep never waits for adoption's config listing: with a listing that takes two
/// TTLs, the node holds its lease throughout (one `LeaseGained`, no suspension, no
/// step-down) and an adopted breaker still comes in.
#[tokio::test(start_paused = true)]
async fn a_slow_config_listing_never_costs_the_lease() {
    let broker = MemoryBroker::new();
    // Another node registered "orders" in the fleet's config bucket: ours adopts it.
    let other = node(&broker, "n2").await;
    other.breaker("orders", config()).await.unwrap();
    other.crash().await;
    let slow = Arc::new(SlowConfigs { inner: broker.transport(NodeId::new("n1").unwrap()), delay: TTL * 2 });
    let reg = Registry::builder()
        .transport(slow)
        .lease_ttl(TTL)
        .lease_margin(Duration::from_millis(200))
        .lease_shards(1)
        .start()
        .await
        .unwrap();
    let mut events = reg.subscribe().unwrap();
    let _payments = reg.breaker("payments", config()).await.unwrap();
    tokio::time::sleep(TTL * 10).await;
    let (mut gained, mut troubles) = (0, Vec::new());
    while let Ok(e) = events.try_recv() {
        match e.event {
            Event::LeaseGained { .. } if e.breaker == name("payments") => gained += 1,
            Event::LeaseSuspended { .. } | Event::SteppedDown { .. } => troubles.push(e),
            _ => {}
        }
    }
    assert!(troubles.is_empty(), "the lease was suspended or lost: {troubles:?}");
    assert_eq!(gained, 1, "one term for the whole run");
    assert!(reg.breaker_names().unwrap().contains(&name("orders")), "the slow listing still adopts");
}
