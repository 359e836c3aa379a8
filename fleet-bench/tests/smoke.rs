//! The fleet bench's smoke, run by `make test`: 2 nodes x 200 breakers on one real
//! nats-server, every breaker called, a 200 ms flush, then one fixed window measured from
//! the outside. Its assertions are structural, never timings: `JetStream` consumers per node
//! (at most 3 plus one per lease shard the node holds), consumers on any one stream (bounded
//! by nodes and shards, not by nodes x breakers), messages into the outcome stream per node
//! (at most one per flush, plus the window's two edges), and resync gets on the state bucket
//! per node (at most one per second, plus one edge). Before the per-node transport these fail
//! by orders of magnitude: the figures are printed either way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use fleet_bench::fleet::{Fleet, FleetSpec, Load};
use fleet_bench::tap::Tap;
use fleet_bench::window::{self, Scope};
use fusebox_testkit::servers::NatsServer;

const NODES: usize = 2;
const BREAKERS: usize = 200;
const FLUSH: Duration = Duration::from_millis(200);
const SHARDS: u32 = 4;
const WINDOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_nats_cost_is_bounded_by_the_node_not_its_breakers() {
    let server = NatsServer::start().unwrap();
    let spec = FleetSpec {
        urls: vec![server.url()],
        nodes: NODES,
        breakers: BREAKERS,
        flush: FLUSH,
        lease_ttl: Duration::from_secs(5),
        lease_shards: SHARDS,
        replicas: 1,
        create_deadline: Duration::from_secs(15),
    };
    let fleet = Fleet::start(spec, &[]).await.unwrap();
    assert_eq!(fleet.failed, 0, "breakers not created: {:?}", fleet.first_error);
    let tap_client = async_nats::ConnectOptions::new().name("fleet-bench-tap").connect(server.url()).await.unwrap();
    let tap = Tap::start(&tap_client, "fusebox").await.unwrap();
    let load = Load::start(fleet.breakers.concat(), 50.0, Instant::now() + Duration::from_secs(25)).unwrap();

    // Settled: every breaker has a decider and the lease shards are all held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (fleet.book.decided() < BREAKERS || fleet.shards_held().await.iter().sum::<u32>() < SHARDS)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let scope = Scope {
        nodes: fleet.nodes.iter().map(|n| n.id.clone()).collect(),
        prefix: "fusebox".to_owned(),
        ports: vec![server.monitor_port()],
    };
    let start = window::mark(&scope, &tap).await.unwrap();
    tokio::time::sleep(WINDOW).await;
    let figures = window::finish(&scope, &tap, &start).await.unwrap();
    let held = fleet.shards_held().await;
    drop(load);

    let flushes = figures.elapsed.as_millis().div_ceil(FLUSH.as_millis());
    let seconds = u64::try_from(figures.elapsed.as_millis().div_ceil(1000)).unwrap();
    let mut failures = Vec::new();
    for (i, node) in figures.nodes.iter().enumerate() {
        eprintln!(
            "{}: outcome msgs {} over {flushes} flushes, consumers {} (holds {} shards), resync gets {} in {:?}, subscriptions {}, jetstream msgs {}",
            scope.nodes[i],
            node.outcome_msgs,
            node.consumers,
            held[i],
            node.resync_gets,
            figures.elapsed,
            node.subscriptions,
            node.jetstream_msgs
        );
        if u128::from(node.outcome_msgs) > flushes + 2 {
            failures.push(format!(
                "{}: {} outcome messages over {flushes} flushes (at most {})",
                scope.nodes[i],
                node.outcome_msgs,
                flushes + 2
            ));
        }
        if node.consumers > 3 + u64::from(held[i]) {
            failures.push(format!(
                "{}: {} consumers holding {} shards (at most {})",
                scope.nodes[i],
                node.consumers,
                held[i],
                3 + held[i]
            ));
        }
        if node.resync_gets > seconds + 1 {
            failures.push(format!(
                "{}: {} resync gets in {seconds} s (at most {})",
                scope.nodes[i],
                node.resync_gets,
                seconds + 1
            ));
        }
    }
    let per_stream_bound = 3 * NODES as u64 + u64::from(SHARDS);
    for (stream, consumers) in &figures.consumers_per_stream {
        eprintln!("stream {stream}: {consumers} consumers");
        if *consumers > per_stream_bound {
            failures.push(format!("stream {stream}: {consumers} consumers (at most {per_stream_bound})"));
        }
    }
    eprintln!(
        "consumers unattributed {}, tapped messages unattributed {}",
        figures.consumers_unattributed, figures.tapped_unattributed
    );
    fleet.shutdown(Duration::from_secs(5)).await;
    assert!(failures.is_empty(), "structural bounds exceeded:\n{}", failures.join("\n"));
}
