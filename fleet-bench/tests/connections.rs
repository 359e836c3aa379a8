//! A node's connections, seen from the server (`/connz`): a transport holds exactly two
//! (everything else, and lease upkeep alone) whatever its breakers, and, dropped, leaves
//! none behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use breaker_actors::machine::NodeId;
use breaker_actors::{BreakerConfig, Registry};
use fleet_bench::monitor::ServerView;
use fusebox_testkit::servers::NatsServer;
use transport_nats::nats::{NatsConfig, NatsTransport};

async fn names(port: u16, node: &str) -> Vec<String> {
    let view = ServerView::read_all_async(vec![port]).await.unwrap();
    let own = format!("fusebox-{node}");
    let mut names: Vec<String> = view
        .connections
        .into_iter()
        .map(|c| c.name)
        .filter(|n| *n == own || n.starts_with(&format!("{own}-")))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_holds_two_connections_and_drops_them_all() {
    let server = NatsServer::start().unwrap();
    let transport =
        NatsTransport::connect(NatsConfig::new(vec![server.url()], NodeId::new("conns").unwrap())).await.unwrap();
    let registry = Registry::builder().transport(transport.clone()).start().await.unwrap();
    let mut breakers = Vec::new();
    for i in 0..50 {
        breakers.push(registry.breaker(&format!("conn-{i}"), BreakerConfig::default()).await.unwrap());
    }
    assert_eq!(
        names(server.monitor_port(), "conns").await,
        ["fusebox-conns", "fusebox-conns-leases"],
        "one connection for everything else, one for lease upkeep, with 50 breakers"
    );
    registry.shutdown().await.unwrap();
    drop((breakers, registry, transport));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = names(server.monitor_port(), "conns").await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "connections left behind by a dropped transport: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
