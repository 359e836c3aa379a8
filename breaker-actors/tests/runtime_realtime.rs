//! The runtime on a multi-threaded tokio runtime and the real clock: the paused-time suite
//! in `runtime.rs` runs everything on one thread, this checks that nothing depends on it.
//! Short durations keep it under a second or two.

// The runtime is not built under loom (see lib.rs).
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use breaker_actors::hot::Breaker;
use breaker_actors::machine::{
    BreakerConfig, HalfOpenPolicy, NodeId, OpenPolicy, StateLabel, TripPolicy, WindowConfig,
};
use breaker_actors::transport::memory::MemoryBroker;
use breaker_actors::{Registry, RegistryError};
use tokio::time::Instant;

fn config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 10 },
            minimum_calls: 10,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 200 },
        half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: 1_000, ramp: None },
        local: None,
        ..BreakerConfig::default()
    }
}

async fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_trip_and_recover_on_the_real_clock() {
    let broker = MemoryBroker::new();
    let mut nodes = Vec::new();
    let mut breakers: Vec<Breaker> = Vec::new();
    for id in ["r1", "r2", "r3"] {
        let reg = Registry::builder()
            .transport(broker.transport(NodeId::new(id).unwrap()))
            .lease_ttl(Duration::from_secs(1))
            .lease_margin(Duration::from_millis(200))
            .start()
            .await
            .unwrap();
        breakers.push(reg.breaker("payments", config()).await.unwrap());
        nodes.push(reg);
    }
    until("a first decision", Duration::from_secs(2), || broker.decision(breakers[0].name()).is_some()).await;
    for _ in 0..10 {
        let _ = breakers[1].call(async { Err::<(), _>("boom") }).await;
    }
    until("all open", Duration::from_secs(2), || breakers.iter().all(|b| b.state() == StateLabel::Open)).await;
    until("all closed again", Duration::from_secs(3), || {
        for b in &breakers {
            if let Ok(permit) = b.try_acquire() {
                permit.success();
            }
        }
        breakers.iter().all(|b| b.state() == StateLabel::Closed)
    })
    .await;
    for reg in &nodes {
        reg.shutdown().await.unwrap();
    }
    assert_eq!(nodes[0].breaker("payments", config()).await.unwrap_err(), RegistryError::ShutDown);
}
