//! The fleet over real NATS: registries (nodes) connected through `NatsTransport` to
//! nats-server processes that each test starts on free loopback ports and stops by PID
//! (`fusebox_testkit::servers`). No mocks. Waits are polls against a deadline.
//!
//! The test command installs the pinned nats-server and points `FUSEBOX_NATS_SERVER` at it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use breaker_actors::hot::{Breaker, RejectReason};
use breaker_actors::machine::{
    BreakerConfig, BreakerName, CommandKind, Decision, DecisionId, FleetState, HalfOpenPolicy, Judge,
    LocalOverlayPolicy, NodeId, OpenPolicy, OutageConfig, OutagePolicy, Reason, StateLabel, Term, TripPolicy,
    WindowConfig,
};
use breaker_actors::transport::{LeaseAcquire, LeaseRequest, LeaseShard, Transport, TransportError, WriteOutcome};
use breaker_actors::{Registry, RegistryError};
use fusebox_testkit::config::config;
use fusebox_testkit::servers::{NatsCluster, NatsServer};
use fusebox_testkit::wait::eventually;
use transport_nats::layout::Layout;
use transport_nats::nats::{Auth, ConnectError, NatsConfig, NatsTransport};
use transport_nats::provision::{LeaseExpiry, ProvisionError};

const TTL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(10);

fn name(n: &str) -> BreakerName {
    BreakerName::new(n).unwrap()
}

/// Like [`eventually`], but on timeout prints what every node's machine and transport
/// know about `breaker`, and the bucket's history.
async fn eventually_fleet(what: &str, nodes: &[Node], breaker: &BreakerName, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            for n in nodes {
                let m = n.reg.machine(breaker).await;
                eprintln!(
                    "{}: deciding {:?} phase {:?} applied {:?} {:?} {:?} {:?}",
                    n.reg.node(),
                    m.as_ref().map(breaker_actors::machine::Machine::is_deciding),
                    m.as_ref().and_then(breaker_actors::machine::Machine::decider_phase),
                    m.as_ref().map(breaker_actors::machine::Machine::applied_id),
                    m.as_ref().map(breaker_actors::machine::Machine::stats),
                    n.transport.stats(),
                    *n.transport.connection().borrow(),
                );
            }
            if let Some(n) = nodes.first() {
                for (revision, d) in n.transport.history(breaker).await.unwrap_or_default() {
                    eprintln!("  {revision}: {:?} {:?} {:?} by {}", d.id, d.state, d.reason, d.decider);
                }
            }
            panic!("timed out after {WAIT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Node {
    reg: Registry,
    transport: Arc<NatsTransport>,
}

impl Node {
    async fn join(urls: &[String], id: &str) -> Self {
        Self::join_with(urls, id, |_| {}).await
    }

    async fn join_with(urls: &[String], id: &str, tune: impl FnOnce(&mut NatsConfig)) -> Self {
        let mut nats = NatsConfig::new(urls.to_vec(), NodeId::new(id).unwrap());
        nats.store.replicas = urls.len().min(3);
        tune(&mut nats);
        Self::on(NatsTransport::connect(nats).await.unwrap()).await
    }

    /// A node over `transport`.
    async fn on(transport: Arc<NatsTransport>) -> Self {
        let reg = Registry::builder()
            .transport(transport.clone())
            .lease_ttl(TTL)
            .lease_margin(Duration::from_millis(500))
            .lease_shards(4)
            .start()
            .await
            .unwrap();
        Self { reg, transport }
    }

    async fn deciding(&self, breaker: &BreakerName) -> bool {
        self.reg.machine(breaker).await.is_some_and(|m| m.is_deciding())
    }
}

/// Waits until one of `nodes` decides `breaker` and every node has applied the decision in
/// the bucket (calls made before a node applied the current decision count for nothing);
/// returns the decider's index.
async fn wait_deciding(nodes: &[Node], breaker: &BreakerName) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut decider = None;
        for (i, n) in nodes.iter().enumerate() {
            if n.deciding(breaker).await {
                decider = Some(i);
            }
        }
        if let (Some(i), Some(current)) = (decider, decision(&nodes[0], breaker).await) {
            let mut applied = true;
            for n in nodes {
                applied &= n.reg.machine(breaker).await.is_some_and(|m| m.applied_id() == current.id);
            }
            if applied {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "nobody became the decider of {breaker}, or its decision is not applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn decision(node: &Node, breaker: &BreakerName) -> Option<Decision> {
    node.transport.decision(breaker).await.ok().and_then(|r| r.decision)
}

/// `count` nodes on `urls`, each holding `breaker`, once one decides and its first decision is out.
async fn fleet(urls: &[String], count: usize, breaker: &str) -> (Vec<Node>, Vec<Breaker>) {
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for i in 1..=count {
        let node = Node::join(urls, &format!("n{i}")).await;
        breakers.push(node.reg.breaker(breaker, config()).await.unwrap());
        nodes.push(node);
    }
    wait_deciding(&nodes, &name(breaker)).await;
    (nodes, breakers)
}

async fn fail(b: &Breaker, calls: usize) {
    for _ in 0..calls {
        let _ = b.call(async { Err::<(), _>("boom") }).await;
    }
}

fn succeed(b: &Breaker) -> Option<bool> {
    let permit = b.try_acquire().ok()?;
    let probe = permit.is_probe();
    permit.success();
    Some(probe)
}

fn all_in(breakers: &[Breaker], state: StateLabel) -> bool {
    breakers.iter().all(|b| b.state() == state)
}

fn manual(reason: &Reason) -> Option<(CommandKind, &str, &str)> {
    match reason {
        Reason::Manual { command, actor, reason } => Some((*command, actor.as_str(), reason.as_str())),
        _ => None,
    }
}

// 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_node_trip_the_breaker_on_all_three() {
    let server = NatsServer::start().unwrap();
    let (_nodes, breakers) = fleet(&[server.url()], 3, "payments").await;

    fail(&breakers[2], 10).await;
    let tripped_at = Instant::now();
    eventually("all three open", WAIT, || all_in(&breakers, StateLabel::Open)).await;
    let propagation = tripped_at.elapsed();
    for b in &breakers {
        assert!(matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::Open));
    }
    // The first figure the issue asks for; the benchmark will follow.
    eprintln!("propagation: last failing call on n3 -> open on all three nodes in {propagation:?}");
}

// 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_share_a_probe_budget_of_two_and_close_together() {
    let server = NatsServer::start().unwrap();
    let (nodes, breakers) = fleet(&[server.url()], 5, "ledger").await;
    fail(&breakers[0], 10).await;
    eventually("all open", WAIT, || all_in(&breakers, StateLabel::Open)).await;

    // Every node keeps calling: demand everywhere, probes only where granted.
    let mut probes = 0;
    let deadline = Instant::now() + WAIT;
    while !all_in(&breakers, StateLabel::Closed) {
        assert!(Instant::now() < deadline, "the fleet never closed");
        for b in &breakers {
            if succeed(b) == Some(true) {
                probes += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let history = nodes[0].transport.history(&name("ledger")).await.unwrap();
    let rounds: BTreeSet<DecisionId> =
        history.iter().filter(|(_, d)| matches!(d.state, FleetState::HalfOpen { .. })).map(|(_, d)| d.phase).collect();
    assert_eq!(rounds.len(), 1, "one half-open round: {history:?}");
    assert!((1..=2).contains(&probes), "{probes} probes admitted fleet-wide; the budget is 2");
    assert!(matches!(history.last().map(|(_, d)| &d.state), Some(FleetState::Closed)));
}

// 3a.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decider_dropped_without_stepping_down_is_replaced_after_the_ttl() {
    let server = NatsServer::start().unwrap();
    let (mut nodes, mut breakers) = fleet(&[server.url()], 3, "payments").await;
    let payments = name("payments");
    let shard = nodes[0].reg.shard_of(&payments);
    let dead = wait_deciding(&nodes, &payments).await;
    let (first_holder, first_term) = nodes[0].transport.lease_holder(shard).await.unwrap().unwrap();
    assert_eq!(&first_holder, nodes[dead].reg.node());

    // Gone without a word: actors killed, lease not released, connection dropped.
    nodes[dead].reg.crash().await;
    let crashed_at = Instant::now();
    drop(nodes.remove(dead));
    breakers.remove(dead);

    let deadline = Instant::now() + 3 * TTL + WAIT;
    let (holder, term) = loop {
        if let Some((holder, term)) = nodes[0].transport.lease_holder(shard).await.unwrap() {
            if holder != first_holder {
                break (holder, term);
            }
        }
        assert!(Instant::now() < deadline, "nobody took over the lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The last renewal went out at most a third of the TTL before the crash.
    assert!(crashed_at.elapsed() >= TTL * 2 / 3, "not before the TTL: {:?}", crashed_at.elapsed());
    assert!(term > first_term, "a new term: {term} after {first_term}");
    let next = wait_deciding(&nodes, &payments).await;
    assert_eq!(nodes[next].reg.node(), &holder);

    fail(&breakers[0], 10).await;
    eventually("the survivors open", WAIT, || all_in(&breakers, StateLabel::Open)).await;
    assert_eq!(decision(&nodes[0], &payments).await.unwrap().id.term.0, term, "decided in the new term");
}

// 3b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_over_without_waiting_for_the_ttl() {
    let server = NatsServer::start().unwrap();
    let (nodes, breakers) = fleet(&[server.url()], 2, "payments").await;
    let payments = name("payments");
    let shard = nodes[0].reg.shard_of(&payments);
    let leaving = wait_deciding(&nodes, &payments).await;
    let staying = 1 - leaving;

    nodes[leaving].reg.shutdown().await.unwrap();
    let left_at = Instant::now();
    let deadline = Instant::now() + WAIT;
    loop {
        let holder = nodes[staying].transport.lease_holder(shard).await.unwrap();
        if holder.is_some_and(|(h, _)| &h == nodes[staying].reg.node()) {
            break;
        }
        assert!(Instant::now() < deadline, "the other node never took over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handover = left_at.elapsed();
    assert!(handover < TTL / 2, "handed over in {handover:?}, the TTL is {TTL:?}");
    wait_deciding(&nodes[staying..=staying], &payments).await;
    fail(&breakers[staying], 10).await;
    eventually("the remaining node still decides", WAIT, || breakers[staying].state() == StateLabel::Open).await;
}

// 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_decider_is_fenced_by_cas_and_followers_never_apply_its_decisions() {
    let server = NatsServer::start().unwrap();
    let (mut nodes, mut breakers) = fleet(&[server.url()], 3, "payments").await;
    let payments = name("payments");
    let old = wait_deciding(&nodes, &payments).await;
    let old_read = nodes[old].transport.decision(&payments).await.unwrap();
    let old_decision = old_read.decision.clone().unwrap();

    // The old decider dies without stepping down, keeping its connection (a paused process):
    // another node takes over in a newer term and decides.
    nodes[old].reg.crash().await;
    let old_node = nodes.remove(old);
    breakers.remove(old);
    let next = wait_deciding(&nodes, &payments).await;
    fail(&breakers[next], 10).await;
    eventually("the new decider opened the breaker", WAIT, || all_in(&breakers, StateLabel::Open)).await;
    let current = nodes[0].transport.decision(&payments).await.unwrap();
    let newer = current.decision.clone().unwrap();
    assert!(newer.id.term > old_decision.id.term);

    // The old decider wakes up and writes what it believes: closed, next in its term, CAS on
    // the revision it last read.
    let mut stale = old_decision.clone();
    stale.id = DecisionId::new(old_decision.id.term.0, old_decision.id.seq + 1);
    stale.phase = stale.id;
    stale.state = FleetState::Closed;
    let outcome = old_node.transport.write_decision(stale.clone(), old_read.revision).await;
    assert!(
        matches!(&outcome, WriteOutcome::Rejected { current: Some(d), revision } if d.id == newer.id && *revision == current.revision),
        "{outcome:?}"
    );
    assert_eq!(nodes[0].transport.decision(&payments).await.unwrap(), current, "the bucket is unchanged");

    // Even if such a decision reached the bucket (a writer bypassing CAS), followers refuse a
    // decision of an older term than the one they applied.
    let stale_before: u64 = stats_stale(&nodes, &payments).await;
    let raw = async_nats::connect(server.url()).await.unwrap();
    let kv = async_nats::jetstream::new(raw).get_key_value("fusebox_state").await.unwrap();
    kv.put("payments", transport_nats::codec::encode_decision(&stale).unwrap().into()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while stats_stale(&nodes, &payments).await < stale_before + 2 {
        assert!(Instant::now() < deadline, "followers never saw the stale decision");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(all_in(&breakers, StateLabel::Open), "nobody applied the old term's decision");
    for n in &nodes {
        assert_eq!(n.reg.machine(&payments).await.unwrap().applied_id().term, newer.id.term);
    }
}

async fn stats_stale(nodes: &[Node], breaker: &BreakerName) -> u64 {
    let mut total = 0;
    for n in nodes {
        total += n.reg.machine(breaker).await.map_or(0, |m| m.stats().stale_decisions);
    }
    total
}

// 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_while_breakers_trip_and_recover_loses_no_acknowledged_decision() {
    let mut cluster = NatsCluster::start(3).unwrap();
    let urls = cluster.urls();
    let (nodes, breakers) = fleet(&urls, 3, "payments").await;
    let payments = name("payments");

    fail(&breakers[0], 10).await;
    eventually("open everywhere", WAIT, || all_in(&breakers, StateLabel::Open)).await;
    let before = nodes[0].transport.history(&payments).await.unwrap();

    // Kill a server (with clients and stream replicas on it) while the breaker recovers.
    cluster.kill(0);
    let deadline = Instant::now() + 3 * WAIT;
    while !all_in(&breakers, StateLabel::Closed) {
        if Instant::now() >= deadline {
            for n in &nodes {
                let m = n.reg.machine(&payments).await.unwrap();
                eprintln!(
                    "{} deciding={} applied={:?} stats={:?} transport={:?} conn={:?}",
                    n.reg.node(),
                    m.is_deciding(),
                    m.applied_id(),
                    m.stats(),
                    n.transport.stats(),
                    *n.transport.connection().borrow()
                );
            }
            eprintln!(
                "history: {:?}",
                nodes[1]
                    .transport
                    .history(&payments)
                    .await
                    .map(|h| h.into_iter().map(|(r, d)| (r, d.id, d.state, d.reason)).collect::<Vec<_>>())
            );
            panic!("the fleet never recovered with a server down");
        }
        // Only where not closed yet: a node that applied the close early and kept
        // succeeding would fill the window with successes that outweigh the failures below
        // (a node whose watch died with the server learns the close up to a resync period
        // later than the others).
        for b in breakers.iter().filter(|b| b.state() != StateLabel::Closed) {
            let _ = succeed(b);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("every node is connected", WAIT, || nodes.iter().all(|n| n.transport.connection().borrow().connected))
        .await;
    // A decider whose lease renewals are overdue (the lease bucket's stream may still be
    // electing a leader after the kill) suspends itself and judges nothing meanwhile, by
    // design: the failures below must reach a decider that is deciding.
    wait_deciding(&nodes, &payments).await;
    let settled = decision(&nodes[1], &payments).await.map_or(DecisionId::NONE, |d| d.id);
    fail(&breakers[1], 10).await;
    // Every node learns the new trip. Not "every node open at once": the open period is
    // 500 ms, and a node whose decision watch died with the server learns decisions by its
    // resync until the watch is back, so it may apply the trip late, or only the half-open
    // decision after it (seen failing this way under load on CI: two nodes open, the third
    // one resync behind, at every cycle).
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let history = nodes[1].transport.history(&payments).await.unwrap_or_default();
        let trip =
            history.iter().map(|(_, d)| d).find(|d| d.id > settled && matches!(d.reason, Reason::Tripped { .. }));
        if let Some(trip) = trip {
            let mut learnt = true;
            for n in &nodes {
                learnt &= n.reg.machine(&payments).await.is_some_and(|m| m.applied_id() >= trip.id);
            }
            if learnt {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the fleet did not trip again, or not every node learnt it: {history:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    cluster.restart(0).unwrap();
    cluster.wait_ready().unwrap();
    let after = nodes[1].transport.history(&payments).await.unwrap();
    for (revision, d) in &before {
        assert!(after.iter().any(|(r, a)| r == revision && a == d), "decision {:?} at {revision} lost", d.id);
    }
    let ids: Vec<DecisionId> = after.iter().map(|(_, d)| d.id).collect();
    // Never backwards. The same decision twice in a row is allowed: a write whose reply was
    // lost with the server is retried, and lands again if the watch had already shown it to
    // the machine (the retry expects the newer revision); the machine rewrites a decision
    // the bucket lost the same way (`Decider::bucket_went_back`). Harmless: nodes apply a
    // decision once.
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "decisions in (term, seq) order: {ids:?}");
    // After the kill: recovered (closed), then tripped again (open).
    let states: Vec<&FleetState> = after[before.len()..].iter().map(|(_, d)| &d.state).collect();
    let closed = states.iter().position(|s| matches!(s, FleetState::Closed));
    assert!(closed.is_some_and(|c| states[c..].iter().any(|s| matches!(s, FleetState::Open { .. }))), "{states:?}");
}

/// A transport for node `id` given every URL of the cluster (as a deployment would), that the
/// client happened to connect to the server named `server`: connects again until it is.
async fn transport_landing_on(urls: &[String], id: &str, server: &str) -> Arc<NatsTransport> {
    for _ in 0..50 {
        let mut nats = NatsConfig::new(urls.to_vec(), NodeId::new(id).unwrap());
        nats.store.replicas = urls.len().min(3);
        let transport = NatsTransport::connect(nats).await.unwrap();
        if transport.client().server_info().server_name == server {
            return transport;
        }
    }
    panic!("the client never connected to {server}");
}

/// The leader of stream `name`, as the stream reports it.
async fn stream_leader(js: &async_nats::jetstream::Context, name: &str) -> Option<String> {
    let info = js.get_stream(name).await.ok()?.get_info().await.ok()?;
    info.cluster.and_then(|c| c.leader)
}

/// Steps stream `name`'s leader down until `wanted` holds of the leader (each step-down
/// elects one of the other replicas).
async fn lead_stream(client: &async_nats::Client, name: &str, wanted: impl Fn(&str) -> bool) {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + WAIT;
    loop {
        match stream_leader(&js, name).await {
            Some(leader) if wanted(&leader) => return,
            Some(_) => {
                let _ = client.request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), "".into()).await;
            }
            None => {}
        }
        assert!(Instant::now() < deadline, "{name} never got the leader wanted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `breaker` registered on `node`, retried while the cluster's servers do not all know the
/// streams just created yet ("no stream found").
async fn registered(node: &Node, breaker: &str) -> Breaker {
    let deadline = Instant::now() + WAIT;
    loop {
        match node.reg.breaker(breaker, config()).await {
            Ok(breaker) => return breaker,
            Err(e) => assert!(Instant::now() < deadline, "registering {breaker} on {}: {e}", node.reg.node()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a node's server is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerLoss {
    /// SIGKILL: its sockets close, the client notices at once.
    Killed,
    /// SIGSTOP: a hung server, noticed only by unanswered pings.
    Frozen,
}

/// Issue 12, item 9: a node whose server is lost must be back on a live one with the current
/// decisions applied within about a second (the demo measures the typical figure); the
/// bound here is generous for a loaded machine. The follower is given every server (as a
/// deployment would) and landed on the doomed one; the decider is connected to the other two
/// (its streams and buckets have three replicas, which keep a quorum). Every stream is led
/// elsewhere, so the decider keeps its lease, except that a killed server leads the state
/// bucket's stream, the worst one to lose: until the other two replicas elect a leader
/// (seconds) no decision can be written and no watch created.
async fn the_next_decision_is_applied_within_three_seconds_of_being_stored(loss: ServerLoss) {
    const BOUND: Duration = Duration::from_secs(3);
    let mut cluster = NatsCluster::start(3).unwrap();
    let urls = cluster.urls();
    let orders = name("orders");
    let victim = 0;
    let doomed = cluster.nodes()[victim].name().to_owned();
    let decider = Node::join_with(&urls[1..], "decider", |nats| nats.store.replicas = 3).await;
    let _on_decider = registered(&decider, "orders").await;
    wait_deciding(std::slice::from_ref(&decider), &orders).await;
    let follower = Node::on(transport_landing_on(&urls, "follower", &doomed).await).await;
    let _on_follower = registered(&follower, "orders").await;
    let nodes = [decider, follower];
    assert_eq!(wait_deciding(&nodes, &orders).await, 0, "the decider decides");
    let client = nodes[0].transport.client();
    let js = async_nats::jetstream::new(client.clone());
    let streams: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
    assert!(streams.len() >= 5, "the fleet's streams and buckets: {streams:?}");
    for stream in &streams {
        if stream == "KV_fusebox_state" && loss == ServerLoss::Killed {
            lead_stream(client, stream, |leader| leader == doomed).await;
        } else {
            lead_stream(client, stream, |leader| leader != doomed).await;
        }
    }

    let current = nodes[0].transport.read_decision(&orders).await.unwrap();
    match loss {
        ServerLoss::Killed => cluster.kill(victim),
        ServerLoss::Frozen => cluster.freeze(victim).unwrap(),
    }
    // The store moves on as soon as it can: a decision written straight into the bucket (a
    // CAS on the current revision, as the decider's own write). The decider refuses it (its
    // own term, a seq it never wrote); the follower must apply it like any newer decision.
    let mut next = current.decision.clone().unwrap();
    next.id = DecisionId::new(next.id.term.0, next.id.seq + 1);
    next.phase = next.id;
    next.state = FleetState::Open { duration_ms: 60_000 };
    let deadline = Instant::now() + WAIT;
    loop {
        match nodes[0].transport.write_decision(next.clone(), current.revision).await {
            WriteOutcome::Written { .. } => break,
            outcome => assert!(Instant::now() < deadline, "the bucket never took the decision: {outcome:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = Instant::now();
    let deadline = stored + BOUND;
    loop {
        let applied = nodes[1].reg.machine(&orders).await.map(|m| m.applied_id());
        if applied.is_some_and(|id| id >= next.id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{loss:?}: the follower had not applied {:?} {BOUND:?} after it was stored: applied {applied:?}, \
             connection {:?}, transport {:?}",
            next.id,
            *nodes[1].transport.connection().borrow(),
            nodes[1].transport.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("{loss:?}: the follower applied the decision {:?} after it was stored", stored.elapsed());
    let connection = *nodes[1].transport.connection().borrow();
    assert!(connection.connected && connection.losses >= 1, "it moved to another server: {connection:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_server_is_killed_applies_the_next_decision_within_three_seconds() {
    the_next_decision_is_applied_within_three_seconds_of_being_stored(ServerLoss::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_server_hangs_applies_the_next_decision_within_three_seconds() {
    the_next_decision_is_applied_within_three_seconds_of_being_stored(ServerLoss::Frozen).await;
}

// 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_gone_the_outage_policy_and_local_overlay_apply_then_nodes_reconcile() {
    let mut server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let mut local_only = config();
    local_only.open = OpenPolicy::Fixed { duration_ms: 60_000 };
    local_only.outage = OutageConfig { policy: OutagePolicy::LocalOnly, grace_ms: 300 };
    local_only.local = Some(LocalOverlayPolicy {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 5 },
            minimum_calls: 5,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        half_open: HalfOpenPolicy { probe_budget: 1, success_threshold: 1, max_wait_ms: 5_000, ramp: None },
    });
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for id in ["n1", "n2"] {
        let node = Node::join(&urls, id).await;
        breakers.push(node.reg.breaker("payments", local_only.clone()).await.unwrap());
        nodes.push(node);
    }
    let payments = name("payments");
    wait_deciding(&nodes, &payments).await;
    fail(&breakers[0], 10).await;
    eventually("the fleet opens", WAIT, || all_in(&breakers, StateLabel::Open)).await;
    let open = decision(&nodes[0], &payments).await.unwrap();

    let killed_at = Instant::now();
    server.kill();
    eventually("both nodes see the outage", WAIT, || {
        nodes.iter().all(|n| !n.transport.connection().borrow().connected)
    })
    .await;
    // Local-only after the grace period: the fleet's open is set aside, the overlay decides.
    eventually("the outage policy applies", WAIT, || breakers.iter().all(|b| b.hot_path().snapshot().outage)).await;
    assert!(killed_at.elapsed() >= Duration::from_millis(300), "not before the grace period");
    assert!(breakers.iter().all(|b| succeed(b).is_some()), "calls flow on local judgement");
    fail(&breakers[1], 5).await;
    eventually("the local overlay still trips", WAIT, || breakers[1].try_acquire().is_err()).await;
    assert!(succeed(&breakers[0]).is_some(), "only where the failures were");

    server.restart().unwrap();
    eventually("both nodes reconnect and leave the outage", 3 * WAIT, || {
        breakers.iter().all(|b| !b.hot_path().snapshot().outage)
    })
    .await;
    // Reconciled: every node applies what the bucket holds, the decider's state (open).
    let deadline = Instant::now() + WAIT;
    loop {
        let current = decision(&nodes[0], &payments).await;
        let mut agreed = current.is_some();
        for n in &nodes {
            let applied = n.reg.machine(&payments).await.unwrap().applied_id();
            agreed &= current.as_ref().is_some_and(|d| d.id == applied);
        }
        if agreed && all_in(&breakers, StateLabel::Open) {
            assert!(current.unwrap().id >= open.id);
            break;
        }
        assert!(Instant::now() < deadline, "nodes never reconciled to the bucket");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_while_the_breaker_is_open_starts_open() {
    let server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let mut open_long = config();
    open_long.open = OpenPolicy::Fixed { duration_ms: 60_000 };
    let n1 = Node::join(&urls, "n1").await;
    let b1 = n1.reg.breaker("payments", open_long.clone()).await.unwrap();
    wait_deciding(std::slice::from_ref(&n1), &name("payments")).await;
    fail(&b1, 10).await;
    eventually("open", WAIT, || b1.state() == StateLabel::Open).await;

    let n2 = Node::join(&urls, "n2").await;
    let b2 = n2.reg.breaker("payments", open_long).await.unwrap();
    assert_eq!(b2.state(), StateLabel::Open);
    assert!(matches!(b2.try_acquire(), Err(r) if r.reason() == RejectReason::Open), "not even one call goes out");
}

// 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_unknown_version_outcomes_are_counted_and_skipped() {
    let server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let node = Node::join_with(&urls, "n1", |c| c.limits.max_payload = 4096).await;
    let b = node.reg.breaker("payments", config()).await.unwrap();
    wait_deciding(std::slice::from_ref(&node), &name("payments")).await;

    let raw = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    let publish = |subject: &'static str, content_type: &'static str, payload: Vec<u8>| {
        let js = js.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Content-Type", content_type);
            js.publish_with_headers(subject, headers, payload.into()).await.unwrap().await.unwrap();
        }
    };
    let bad: Vec<(&str, &str, Vec<u8>)> = vec![
        ("fusebox.out.payments.x1", "application/x-fusebox-postcard", b"\x01\xff\xff\xff garbage".to_vec()),
        ("fusebox.out.payments.x1", "application/json", b"{not json".to_vec()),
        ("fusebox.out.payments.x1", "application/json", vec![b' '; 10_000]),
        ("fusebox.out.payments.x1", "application/x-fusebox-postcard", vec![2, 0, 0, 0]),
        ("fusebox.out.payments.x1", "application/json", br#"{"version":2,"outcome":"failure"}"#.to_vec()),
        (
            "fusebox.out.payments.x1",
            "application/json",
            br#"{"version":1,"breaker":"other","outcome":"failure"}"#.to_vec(),
        ),
    ];
    let count = bad.len() as u64;
    for (subject, content_type, payload) in bad {
        publish(subject, content_type, payload).await;
    }
    eventually("every bad message counted", WAIT, || node.transport.stats().rejected_outcomes >= count).await;
    assert_eq!(node.transport.stats().rejected_outcomes, count);

    // The breaker keeps working: its own failures still trip it.
    fail(&b, 10).await;
    eventually("still trips", WAIT, || b.state() == StateLabel::Open).await;
}

// 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_from_a_foreign_app_counts() {
    let server = NatsServer::start().unwrap();
    let (_nodes, breakers) = fleet(&[server.url()], 2, "payments").await;

    // What a Python or Go service would do: plain NATS, JSON, its own node id.
    let raw = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    let batch = br#"{"version":1,"breaker":"payments","events":[
        {"outcome":"success","count":2},{"outcome":"failure","count":6},{"outcome":"slow"},{"outcome":"failure","count":2}]}"#;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers.insert("Nats-Msg-Id", "py-worker-1:batch-1");
    js.publish_with_headers("fusebox.out.payments.py-worker-1", headers, batch.as_slice().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("the foreign failures trip every node", WAIT, || all_in(&breakers, StateLabel::Open)).await;
}

// 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_open_command_opens_every_node_and_is_in_the_history() {
    let server = NatsServer::start().unwrap();
    let (nodes, breakers) = fleet(&[server.url()], 3, "payments").await;
    let payments = name("payments");
    let decider = wait_deciding(&nodes, &payments).await;
    let issuer = &nodes[(decider + 1) % 3];

    issuer.reg.command("payments", CommandKind::ForceOpen, "alice", "INC-42: provider outage").await.unwrap();
    eventually("every node is forced open", WAIT, || all_in(&breakers, StateLabel::ForcedOpen)).await;
    for b in &breakers {
        assert!(
            matches!(b.try_acquire(), Err(r) if r.reason() == RejectReason::Open && r.state() == StateLabel::ForcedOpen)
        );
    }
    let history = issuer.transport.history(&payments).await.unwrap();
    let (_, last) = history.last().unwrap();
    assert_eq!(last.state, FleetState::ForcedOpen);
    assert_eq!(&last.decider, nodes[decider].reg.node(), "the decider applied it");
    assert_eq!(manual(&last.reason), Some((CommandKind::ForceOpen, "alice", "INC-42: provider outage")));
    let manuals = history.iter().filter(|(_, d)| manual(&d.reason).is_some()).count();
    assert_eq!(manuals, 1, "applied once");
}

// Provisioning: an existing stream with a setting Fusebox cannot work with is a typed error
// naming it, and is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_existing_stream_is_a_typed_error_naming_the_setting() {
    let server = NatsServer::start().unwrap();
    let raw = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "FUSEBOX_CONTROL".into(),
        subjects: vec!["fusebox.ctl.>".into()],
        retention: async_nats::jetstream::stream::RetentionPolicy::Limits,
        ..Default::default()
    })
    .await
    .unwrap();

    let nats = NatsConfig::new(vec![server.url()], NodeId::new("n1").unwrap());
    let err = NatsTransport::connect(nats.clone()).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::Provision(ProvisionError::Incompatible { resource, setting: "retention", .. })
            if resource == "FUSEBOX_CONTROL"),
        "{err}"
    );
    let info = js.get_stream("FUSEBOX_CONTROL").await.unwrap().cached_info().config.retention;
    assert_eq!(info, async_nats::jetstream::stream::RetentionPolicy::Limits, "left as it was");

    // Another prefix is a fleet of its own, and provisioning twice is a no-op.
    let mut other = nats;
    other.layout = Layout::new("acme").unwrap();
    NatsTransport::connect(other.clone()).await.unwrap();
    NatsTransport::connect(other).await.unwrap();
    assert!(js.get_stream("ACME_CONTROL").await.is_ok());
}

// Leases expire by the bucket's max_age where per-key TTL is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bucket_max_age_leases_a_crashed_decider_is_replaced_too() {
    let server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let max_age = |c: &mut NatsConfig| c.store.lease_expiry = LeaseExpiry::BucketMaxAge(TTL);
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for id in ["n1", "n2"] {
        let node = Node::join_with(&urls, id, max_age).await;
        assert_eq!(node.transport.lease_expiry(), LeaseExpiry::BucketMaxAge(TTL));
        breakers.push(node.reg.breaker("payments", config()).await.unwrap());
        nodes.push(node);
    }
    let payments = name("payments");
    let dead = wait_deciding(&nodes, &payments).await;
    nodes[dead].reg.crash().await;
    drop(nodes.remove(dead));
    breakers.remove(dead);
    let deadline = Instant::now() + 3 * TTL + WAIT;
    while !nodes[0].deciding(&payments).await {
        assert!(Instant::now() < deadline, "the survivor never took over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fail(&breakers[0], 10).await;
    eventually("the survivor decides", WAIT, || breakers[0].state() == StateLabel::Open).await;

    // A TTL longer than the bucket's max_age would let two nodes decide at once: refused.
    let request = LeaseRequest { ttl: TTL * 2, known: Term(0), over: None };
    let long = nodes[0].transport.acquire_lease(LeaseShard(99), request).await;
    assert!(matches!(long, Err(TransportError::Backend(e)) if e.contains("max_age")));
}

// While NATS is unreachable, reports wait in a bounded outbox, merged; what grows too old to
// matter is given up and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_wait_while_nats_is_away_and_what_is_given_up_is_counted() {
    let mut server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let node = Node::join_with(&urls, "n1", |c| c.store.report_max_age = Duration::from_secs(1)).await;
    let mut long_outage = config();
    long_outage.outage = OutageConfig { policy: OutagePolicy::FailOpen, grace_ms: 60_000 };
    let b = node.reg.breaker("payments", long_outage).await.unwrap();
    wait_deciding(std::slice::from_ref(&node), &name("payments")).await;
    let published = node.transport.stats().reports_published;

    server.kill();
    eventually("disconnected", WAIT, || !node.transport.connection().borrow().connected).await;
    // Calls until two drains' reports wait together and merge: successes of a closed breaker
    // are drained once per lazy interval (100 ms), so this takes a few of them.
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.transport.stats().reports_coalesced == 0 {
        assert!(tokio::time::Instant::now() < deadline, "queued reports never merged");
        assert!(succeed(&b).is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("and are given up once older than the stream keeps them", WAIT, || {
        node.transport.stats().reports_lost >= 1
    })
    .await;
    assert_eq!(node.transport.stats().reports_published, published, "nothing went out");

    server.restart().unwrap();
    eventually("reconnected", 3 * WAIT, || node.transport.connection().borrow().connected).await;
    assert!(succeed(&b).is_some());
    eventually("new reports go out", WAIT, || node.transport.stats().reports_published > published).await;
    assert!(node.transport.flush(WAIT).await);
}

// Registering a breaker while NATS is away is a typed error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_while_nats_is_away_is_a_typed_error() {
    let mut server = NatsServer::start().unwrap();
    let node = Node::join_with(&[server.url()], "n1", |c| c.request_timeout = Duration::from_millis(500)).await;
    server.kill();
    eventually("disconnected", WAIT, || !node.transport.connection().borrow().connected).await;
    let err = node.reg.breaker("payments", config()).await.unwrap_err();
    assert_eq!(err, RegistryError::Transport(TransportError::Disconnected));
}

// 11 (the fleet's side; `transport-nats/tests/auth.rs` has the refusals): with the example
// auth config, nodes that hold nothing but their own credentials provision, decide, follow and
// hand over, and a foreign publisher's report counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_example_auth_config_node_credentials_are_enough_to_run_the_fleet() {
    let server = NatsServer::start_with(include_str!("../../docs/nats-accounts.conf")).unwrap();
    let urls = [server.url()];
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let node = Node::join_with(&urls, id, |c| {
            c.connection.auth = Auth::user_password(format!("node-{id}"), format!("{id}-secret"));
        })
        .await;
        breakers.push(node.reg.breaker("payments", config()).await.unwrap());
        nodes.push(node);
    }
    let payments = name("payments");
    let decider = wait_deciding(&nodes, &payments).await;

    // A foreign app, in its own account, reports failures as `py1`.
    let foreign = async_nats::ConnectOptions::with_user_and_password("foreign".into(), "foreign-secret".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let ack = foreign
        .request_with_headers(
            "fusebox.out.payments.py1",
            headers,
            br#"{"version":1,"outcome":"failure","count":10}"#.as_slice().into(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&ack.payload).contains("FUSEBOX_OUTCOMES"), "acked by the stream");
    eventually_fleet("the foreign failures trip every node", &nodes, &payments, || all_in(&breakers, StateLabel::Open))
        .await;

    // Commands and a graceful hand-over work with node rights too.
    nodes[(decider + 1) % 3].reg.command("payments", CommandKind::Reset, "alice", "drill").await.unwrap();
    eventually_fleet("reset everywhere", &nodes, &payments, || all_in(&breakers, StateLabel::Closed)).await;
    nodes[decider].reg.shutdown().await.unwrap();
    let rest: Vec<Node> = nodes.into_iter().enumerate().filter(|(i, _)| *i != decider).map(|(_, n)| n).collect();
    wait_deciding(&rest, &payments).await;
    for n in &rest {
        assert_eq!(n.transport.stats().rejected_outcomes, 0);
    }
    // Nothing a node does on its own needs more than its rights: the resync's direct reads
    // included, which run beside the watch (their failure alone would go unnoticed).
    let deadline = Instant::now() + 2 * TTL;
    while Instant::now() < deadline {
        let refused: Vec<String> = server
            .log()
            .lines()
            .filter(|l| l.contains("/user:node-") && l.contains("Violation"))
            .map(str::to_owned)
            .collect();
        assert!(refused.is_empty(), "a node was refused: {refused:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// On a cluster, CAS writes that race each other are answered "wrong last sequence" or "wrong
// last sequence constant" (10164): both are a lost race, never a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lease_acquisitions_on_a_cluster_have_one_winner_and_no_errors() {
    let cluster = NatsCluster::start(3).unwrap();
    let mut transports = Vec::new();
    for i in 0..6 {
        let mut nats = NatsConfig::new(cluster.urls(), NodeId::new(&format!("n{i}")).unwrap());
        nats.store.replicas = 3;
        transports.push(NatsTransport::connect(nats).await.unwrap());
    }
    for round in 0..5 {
        let shard = LeaseShard(round);
        let request = LeaseRequest { ttl: TTL, known: Term(0), over: None };
        let attempts: Vec<_> = transports.iter().map(|t| t.acquire_lease(shard, request)).collect();
        let results = futures_util::future::join_all(attempts).await;
        let winners = results.iter().filter(|r| matches!(r, Ok(LeaseAcquire::Granted { .. }))).count();
        assert!(results.iter().all(Result::is_ok), "round {round}: {results:?}");
        assert_eq!(winners, 1, "round {round}: {results:?}");
    }
}

// A graceful shutdown sees the last reports out before it returns: the process may exit
// right after (here: the transport is dropped at once, which stops its publishers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_publishes_the_last_reports() {
    let server = NatsServer::start().unwrap();
    let node = Node::join(&[server.url()], "n1").await;
    let b = node.reg.breaker("payments", config()).await.unwrap();
    wait_deciding(std::slice::from_ref(&node), &name("payments")).await;
    fail(&b, 3).await;
    node.reg.shutdown().await.unwrap();
    drop(b);
    drop(node);

    let raw = async_nats::connect(server.url()).await.unwrap();
    let stream = async_nats::jetstream::new(raw).get_stream("FUSEBOX_OUTCOMES").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "fusebox.out.~batch.n1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let (breaker, node_id) = (name("payments"), NodeId::new("n1").unwrap());
    let mut failures = 0;
    while failures < 3 {
        let message = tokio::time::timeout(WAIT, messages.next()).await.expect("all three failures reported");
        let message = message.unwrap().unwrap();
        let (batch, refused) =
            transport_nats::codec::decode_batch(&node_id, &message.payload, &transport_nats::codec::Limits::default())
                .unwrap();
        assert!(refused.is_empty());
        failures += batch.reports.iter().filter(|r| r.breaker == breaker).map(|r| r.counts.failure).sum::<u64>();
    }
    assert_eq!(failures, 3);
}

// Hardening 1: what a report claims to have applied never deposes a decider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_claiming_a_decision_from_the_future_deposes_nobody_and_counts_for_nothing() {
    let server = NatsServer::start().unwrap();
    let (nodes, breakers) = fleet(&[server.url()], 2, "inventory").await;
    let breaker = name("inventory");
    let decider = wait_deciding(&nodes, &breaker).await;
    let term = nodes[decider].reg.machine(&breaker).await.unwrap().decider_term().unwrap();
    let decisions_before = nodes[0].transport.history(&breaker).await.unwrap().len();

    // Schema-valid JSON from any authorised publisher: ten failures (enough to trip the
    // breaker if they counted), claiming decisions nobody made.
    let raw = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    let claims = [(u64::MAX, 0), (term.0 + 200, 1), (term.0, 999)];
    for (i, (claimed_term, claimed_seq)) in claims.iter().enumerate() {
        let body = format!(
            r#"{{"version":1,"outcome":"failure","count":10,"applied":{{"term":{claimed_term},"seq":{claimed_seq}}}}}"#
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        headers.insert("Nats-Msg-Id", format!("py-1:future-{i}").as_str());
        js.publish_with_headers("fusebox.out.inventory.py-1", headers, body.into_bytes().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let refused = |m: &breaker_actors::machine::Machine| m.stats().refused_inputs;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = nodes[decider].reg.machine(&breaker).await.unwrap();
        if refused(&m) >= claims.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the decider never refused the claims: {:?}", m.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = nodes[decider].reg.machine(&breaker).await.unwrap();
    assert_eq!(m.decider_term(), Some(term), "the decider kept its term");
    assert!(m.is_deciding());
    assert_eq!(m.stats().refused_inputs, claims.len() as u64);
    assert_eq!(nodes[0].transport.history(&breaker).await.unwrap().len(), decisions_before, "no extra decision");
    assert!(all_in(&breakers, StateLabel::Closed), "the claimed failures did not count");

    // A real failure burst inside the stream's retention window still trips at once.
    let started = Instant::now();
    fail(&breakers[1], 10).await;
    eventually_fleet("honest failures trip every node", &nodes, &breaker, || all_in(&breakers, StateLabel::Open)).await;
    eprintln!("tripped {:?} after the burst began", started.elapsed());
    let m = nodes[decider].reg.machine(&breaker).await.unwrap();
    assert_eq!(m.decider_term(), Some(term), "the same decider tripped it");
}

/// A raw `JetStream` context on `url`, as an operator with direct bucket access has one.
async fn raw_js(url: &str) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(url).await.unwrap())
}

/// The time until some node of `nodes` decides `breaker` and a decision of a term above
/// `above` is in the bucket: the decider is deciding, not just holding a lease.
async fn time_to_decide(nodes: &[Node], breaker: &BreakerName, above: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut deciding = false;
        for n in nodes {
            deciding |= n.deciding(breaker).await;
        }
        if deciding && decision(&nodes[0], breaker).await.is_some_and(|d| d.id.term.0 > above) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "no decider within {within:?} (decisions of terms up to {above} persist)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// 6. The lease bucket deleted and recreated while the decisions persist: revisions restart
// at 1, far below the stored terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_lease_bucket_under_decisions_of_high_terms_has_a_decider_within_a_ttl() {
    const STORED: u64 = 20_012;
    let server = NatsServer::start().unwrap();
    let payments = name("payments");
    let (nodes, breakers) = fleet(&[server.url()], 2, "payments").await;
    let current = decision(&nodes[0], &payments).await.unwrap();
    for n in &nodes {
        n.reg.shutdown().await.unwrap();
    }
    drop(breakers);
    drop(nodes);

    // A fleet that has lived through 20,012 terms: its last restatement is in the bucket.
    let js = raw_js(&server.url()).await;
    let state = js.get_key_value("fusebox_state").await.unwrap();
    let entry = state.entry("payments").await.unwrap().unwrap();
    let old = Decision {
        id: DecisionId::new(STORED, 1),
        phase: DecisionId::new(STORED, 1),
        reason: Reason::TermStarted { previous: current.id },
        clock: breaker_actors::machine::VectorClock::new(Term(STORED)),
        ..current
    };
    let payload = transport_nats::codec::encode_decision(&old).unwrap();
    state.update("payments", payload.into(), entry.revision).await.unwrap();
    // The operator's mistake: the lease bucket deleted; the next node to connect recreates it.
    js.delete_key_value("fusebox_leases").await.unwrap();

    let started = Instant::now();
    let (n1, n2) = (Node::join(&[server.url()], "n1").await, Node::join(&[server.url()], "n2").await);
    let b1 = n1.reg.breaker("payments", config()).await.unwrap();
    let _b2 = n2.reg.breaker("payments", config()).await.unwrap();
    let nodes = [n1, n2];
    let took = time_to_decide(&nodes, &payments, STORED, TTL + Duration::from_secs(2)).await;
    eprintln!("a decider {took:?} after the nodes started ({:?} after the first connect)", started.elapsed());
    // Fenced as ever: one term, recorded in the lease value, above every stored one.
    let shard = nodes[0].reg.shard_of(&payments);
    let (holder, term) = nodes[0].transport.lease_holder(shard).await.unwrap().unwrap();
    let now = decision(&nodes[0], &payments).await.unwrap();
    assert_eq!(now.id.term.0, term, "the decision is of the lease's term");
    assert_eq!(&now.decider, &holder);
    assert!(term > STORED);

    // Again under the running fleet: deleted, then recreated by the next node to connect.
    let stored = now.id.term.0;
    js.delete_key_value("fusebox_leases").await.unwrap();
    let _provisions = NatsTransport::connect(NatsConfig::new(vec![server.url()], NodeId::new("n3").unwrap())).await;
    let took = time_to_decide(&nodes, &payments, stored, TTL + Duration::from_secs(2)).await;
    eprintln!("a decider {took:?} after the lease bucket was recreated under the running fleet");
    fail(&b1, 10).await;
    eventually_fleet("the fleet trips in the new term", &nodes, &payments, || b1.state() == StateLabel::Open).await;
}

// 7. A value in the lease key that is no node's lease, written without a TTL (what a hand
// edit can leave): it never expires by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_lease_value_without_a_ttl_is_replaced_after_one_ttl() {
    let server = NatsServer::start().unwrap();
    let payments = name("payments");
    let (nodes, breakers) = fleet(&[server.url()], 2, "payments").await;
    let shard = nodes[0].reg.shard_of(&payments);
    let before = decision(&nodes[0], &payments).await.unwrap().id.term.0;
    let js = raw_js(&server.url()).await;
    let leases = js.get_key_value("fusebox_leases").await.unwrap();
    leases.put(shard.to_string(), "\u{1}garbage, no TTL".into()).await.unwrap();
    let written = Instant::now();

    let took = time_to_decide(&nodes, &payments, before, TTL * 2 + Duration::from_secs(2)).await;
    eprintln!("garbage lease value replaced: a decider {took:?} after it was written");
    assert!(written.elapsed() >= TTL / 2, "not before the garbage stood for a while: {:?}", written.elapsed());
    assert!(nodes[0].transport.lease_holder(shard).await.unwrap().is_some(), "a node's lease again");
    fail(&breakers[0], 10).await;
    eventually_fleet("the fleet trips again", &nodes, &payments, || all_in(&breakers, StateLabel::Open)).await;
}

/// Publishes foreign JSON outcomes of `breaker` as `py-1`, one message per entry, each
/// acknowledged before the next.
async fn publish_foreign(url: &str, breaker: &str, outcomes: &[(&str, u64)]) {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    for (i, (outcome, count)) in outcomes.iter().enumerate() {
        let body = format!(r#"{{"version":1,"outcome":"{outcome}","count":{count}}}"#);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        headers.insert("Nats-Msg-Id", format!("py-1:replay-{breaker}-{i}").as_str());
        let subject = format!("fusebox.out.{breaker}.py-1");
        js.publish_with_headers(subject, headers, body.into_bytes().into()).await.unwrap().await.unwrap();
    }
}

// Hardening 5: a new decider judges the replayed window as it stands now, and only evidence
// younger than the age bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_decider_judges_the_replay_as_it_stands_now_and_never_on_old_evidence() {
    let server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let aged = BreakerConfig { trip: TripPolicy { max_evidence_age_ms: 3_000, ..config().trip }, ..config() };
    let breakers = ["recovered", "failing", "stale"];
    // A first decider decides each breaker once, then leaves: nobody decides for a while.
    let first = Node::join(&urls, "n0").await;
    for b in breakers {
        first.reg.breaker(b, aged.clone()).await.unwrap();
        wait_deciding(std::slice::from_ref(&first), &name(b)).await;
    }
    first.reg.shutdown().await.unwrap();
    drop(first);
    // Failures that will be older than the bound by the time anyone decides again (the
    // sleep is the scenario's time passing, not a wait for something to happen).
    publish_foreign(&server.url(), "stale", &[("failure", 10)]).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    // An outage that ended while nobody decided: its failures, then the recovery.
    publish_foreign(&server.url(), "recovered", &[("failure", 10), ("success", 20)]).await;
    // Failures with nothing after them: a dependency still failing.
    publish_foreign(&server.url(), "failing", &[("failure", 10)]).await;

    let node = Node::join(&urls, "n1").await;
    let mut handles = Vec::new();
    for b in breakers {
        handles.push(node.reg.breaker(b, aged.clone()).await.unwrap());
    }
    let nodes = std::slice::from_ref(&node);
    eventually_fleet("the replayed failures with nothing after them trip", nodes, &name("failing"), || {
        handles[1].state() == StateLabel::Open
    })
    .await;
    for (b, handle, replayed) in [("recovered", &handles[0], 2), ("stale", &handles[2], 1)] {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = node.reg.machine(&name(b)).await.unwrap();
            // Judged: every replayed report reached the decider (counted, or too old).
            let judged = m.stats().reports_counted + m.fleet_judge().map_or(0, Judge::aged_out);
            if m.is_deciding() && judged >= replayed {
                break;
            }
            assert!(Instant::now() < deadline, "{b}: the replay never reached the decider: {:?}", m.stats());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(handle.state(), StateLabel::Closed, "{b}: judged on a replayed past, not on the window as it is");
    }
    let m = node.reg.machine(&name("stale")).await.unwrap();
    assert_eq!(m.fleet_judge().map(Judge::aged_out), Some(1), "the stale failures were too old to be evidence");
}

/// The tuning lifecycle (`docs/tuning.md`) on a real server: three nodes on version 1 are
/// restarted one by one with version 2 (other thresholds). No node fails to register (the
/// old code refused each new pod with `ConfigConflict`: seen failing), the fleet ends on
/// version 2 on every node, old and new, and the decisions record the switch: made under
/// version 1 before, under version 2 at the end. Then an operator's config set (version 3
/// in the config bucket, and the `reconfigure` command) reaches every node, and the decider
/// records it as a `reconfigured` decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_retune_moves_the_whole_fleet_to_the_new_version() {
    use breaker_actors::machine::{ConfigRecord, ConfigSource};
    use breaker_actors::transport::ConfigWrite;

    let server = NatsServer::start().unwrap();
    let urls = [server.url()];
    let payments = name("payments");
    let (mut nodes, _) = fleet(&urls, 3, "payments").await;
    let v2 = BreakerConfig {
        version: 2,
        trip: TripPolicy { minimum_calls: 8, failure_rate: Some(0.8), ..config().trip },
        ..config()
    };
    let on = |nodes: &[Node], version: u64| {
        nodes.iter().all(|n| n.reg.config_of(&payments).is_some_and(|c| c.version == version))
    };
    for (i, slot) in nodes.iter_mut().enumerate() {
        slot.reg.shutdown().await.unwrap();
        let node = Node::join(&urls, &format!("n{}", i + 1)).await;
        let breaker = node.reg.breaker("payments", v2.clone()).await;
        assert!(breaker.is_ok(), "a new pod registers the retuned breaker: {breaker:?}");
        assert_eq!(node.reg.config_of(&payments).as_ref(), Some(&v2), "the newer version wins");
        *slot = node;
    }
    eventually_fleet("every node on version 2", &nodes, &payments, || on(&nodes, 2)).await;
    let settled = async {
        loop {
            if decision(&nodes[0], &payments).await.is_some_and(|d| d.config_version == 2) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, settled).await.expect("the current decision is made under version 2");
    let history = nodes[0].transport.history(&payments).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|(_, d)| d.config_version).collect();
    assert_eq!(versions.first(), Some(&1), "decisions before the rollout were made under version 1: {versions:?}");
    assert_eq!(versions.last(), Some(&2), "{versions:?}");

    // The operator's set, as `fusebox config set` writes it.
    let current = nodes[0].transport.read_config(&payments).await.unwrap().expect("the fleet's config");
    assert_eq!(current.record.config, v2);
    assert_eq!(current.record.source, ConfigSource::Deployed { node: NodeId::new("n1").unwrap() }, "the first new pod");
    let v3 = BreakerConfig { version: 3, quorum: 2, ..v2.clone() };
    let record = ConfigRecord {
        config: v3.clone(),
        source: ConfigSource::Operator { actor: "alice".into(), reason: "INC-7: fewer trips".into() },
    };
    let written = nodes[1].transport.write_config(&payments, record, current.revision).await.unwrap();
    assert!(matches!(written, ConfigWrite::Written(_)), "{written:?}");
    nodes[1].reg.command("payments", CommandKind::Reconfigure, "alice", "INC-7: fewer trips").await.unwrap();
    eventually_fleet("every node on version 3", &nodes, &payments, || on(&nodes, 3)).await;
    let switched = async {
        loop {
            let history = nodes[0].transport.history(&payments).await.unwrap();
            if history.iter().any(|(_, d)| d.reason == Reason::Reconfigured { from: 2, to: 3 }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, switched).await.expect("the decider records the switch to version 3");
    // A node restarted with version 2 now follows the operator's version 3.
    nodes[0].reg.shutdown().await.unwrap();
    nodes[0] = Node::join(&urls, "n1").await;
    nodes[0].reg.breaker("payments", v2).await.unwrap();
    assert_eq!(nodes[0].reg.config_of(&payments), Some(v3));
}
