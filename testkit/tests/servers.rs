//! The nats-server test harness against the real binary: a single server comes up healthy on
//! loopback and is gone by PID after drop; one whose extra configuration the server refuses is
//! an error at once, naming the server's complaint; a 3-node cluster agrees on a `JetStream`
//! meta leader, keeps one after a node is killed, and takes the node back after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use fusebox_testkit::servers::{NatsCluster, NatsServer, READY_DEADLINE, ServerError};
use fusebox_testkit::wait::eventually_blocking;

/// Whether a process with this PID still exists (a reaped child has no /proc entry).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_single_server_is_healthy_on_loopback_and_gone_after_drop() {
    let server = NatsServer::start().unwrap();
    assert!(server.url().starts_with("nats://127.0.0.1:"), "{}", server.url());
    assert!(server.is_healthy());
    let pid = server.pid().unwrap();
    assert!(alive(pid));
    drop(server);
    eventually_blocking("the server process exiting", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    let pid = std::panic::catch_unwind(|| {
        let server = NatsServer::start().unwrap();
        let pid = server.pid().unwrap();
        std::panic::panic_any(pid);
    })
    .unwrap_err()
    .downcast::<u32>()
    .map(|pid| *pid)
    .unwrap();
    eventually_blocking("the server process exiting after the panic", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn extra_configuration_is_used_and_a_refused_one_is_an_error_at_once() {
    let server = NatsServer::start_with("authorization { user: a, password: b }").unwrap();
    assert!(server.is_healthy());
    assert!(server.log().contains("Plaintext passwords detected"), "{}", server.log());
    drop(server);

    // An array variable spliced into a permission list: refused (nats-server 2.15.1), which is
    // why docs/nats-accounts.conf writes each node's list out in full.
    let spliced = r#"authorization {
  COMMON = ["fusebox.ctl.>"]
  users = [ { user: a, password: b, permissions: { publish: { allow: [$COMMON, "fusebox.out.*.a"] } } } ]
}"#;
    let started = Instant::now();
    let refused = NatsServer::start_with(spliced).unwrap_err();
    assert!(started.elapsed() < READY_DEADLINE / 2, "waited {:?} for a server that had exited", started.elapsed());
    match refused {
        ServerError::NotReady { last, .. } => assert!(last.contains("cannot be cast to string"), "{last}"),
        other => panic!("expected NotReady, got {other}"),
    }
}

#[test]
fn a_cluster_keeps_a_meta_leader_through_a_killed_node_and_takes_it_back() {
    let mut cluster = NatsCluster::start(3).unwrap();
    assert_eq!(cluster.urls().len(), 3);
    let leader = cluster.nodes()[0].meta_leader().unwrap();
    assert!(cluster.nodes().iter().all(|n| n.meta_leader().as_deref() == Some(leader.as_str())));

    // Kill the meta leader itself: the other two must elect a new one between them.
    let victim = cluster.nodes().iter().position(|n| n.name() == leader).unwrap();
    let pid = cluster.nodes()[victim].pid().unwrap();
    cluster.kill(victim);
    assert!(!alive(pid));
    assert_eq!(cluster.urls().len(), 2);
    cluster.wait_ready().unwrap();
    let survivors: Vec<_> = (0..3).filter(|&i| i != victim).collect();
    let new_leader = cluster.nodes()[survivors[0]].meta_leader().unwrap();
    assert_ne!(new_leader, leader, "a dead node cannot stay meta leader");

    cluster.restart(victim).unwrap();
    assert!(cluster.nodes()[victim].is_healthy());
    assert_eq!(cluster.urls().len(), 3);
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.pid().unwrap()).collect();
    drop(cluster);
    eventually_blocking("every cluster process exiting", READY_DEADLINE, || pids.iter().all(|p| !alive(*p)));
}
