//! The lease-loss scenario of the fleet bench, run by `make test` with its assertions made
//! structural: while a ghost holds the leases of half the shards, nobody decides their
//! breakers; of those, the ones with the local overlay (the default config) end up
//! rejecting the failing calls and the ones without it admit every call. Which call is the
//! first rejected is timing, printed by the bench, not asserted here; the 2,000 calls (2 s)
//! leave the overlay's local trip, a drain within a few flushes, a wide margin; the 8 s gap
//! leaves the calls, after the node notices the loss (about a second), as wide a one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fleet_bench::fleet::{Fleet, FleetSpec};
use fleet_bench::lease_loss;
use fusebox_testkit::servers::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_lease_keeps_protecting_calls_through_its_overlay() {
    let server = NatsServer::start().unwrap();
    let spec = FleetSpec {
        urls: vec![server.url()],
        nodes: 1,
        breakers: 0,
        flush: Duration::from_millis(5),
        lease_ttl: Duration::from_secs(3),
        lease_shards: 16,
        replicas: 1,
        create_deadline: Duration::from_secs(15),
    };
    let fleet = Fleet::start(spec, &[]).await.unwrap();
    let run = lease_loss::run(&fleet, &[server.url()], Duration::from_secs(8), 2_000).await.unwrap();
    eprintln!("{run:#?}");
    for kind in &run.kinds {
        if kind.kind.lease_lost {
            assert_eq!(kind.decided_at_end, 0, "nobody decides a lost shard's breakers: {kind:?}");
            if kind.kind.overlay {
                assert!(kind.admitted.iter().all(|&a| a < kind.calls), "the overlay protects: {kind:?}");
            } else {
                assert!(kind.admitted.iter().all(|&a| a == kind.calls), "nothing else can: {kind:?}");
            }
        } else {
            assert_eq!(kind.decided_at_end, kind.breakers, "the held shards keep their decider: {kind:?}");
        }
    }
    assert!(run.back_in.is_some(), "the node wins the leases back once the ghost's run out");
    fleet.shutdown(Duration::from_secs(10)).await;
}
