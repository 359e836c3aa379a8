//! The example accounts and permissions of `docs/nats-accounts.conf` (included by
//! `docs/nats-auth.conf`) against a real nats-server running that very text: every service
//! node can do its whole job (provision, report on its own subjects, leases, decisions and
//! configs in KV, consume both streams, send commands) and cannot report as another node or
//! administer streams; an operator sends commands and reads, and writes no bucket; a foreign
//! publisher reports outcomes under its own id and can do nothing else, not even through the
//! reply subject of a publish, which is why it and the operator have accounts of their own.
//!
//! A refusal is observed three ways, each asserted: the `-ERR 'Permissions Violation for
//! Publish to "<subject>"'` the server sends the connection (an async-nats
//! `Event::ServerError(ServerError::Other(..))` through the event callback), the
//! `Publish Violation` line the server logs for that user, and the stream or bucket not
//! changing (a refused `JetStream` publish or API request also gets no reply).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, HeaderMap, ServerError};
use breaker_actors::machine::{BreakerName, NodeId};
use fusebox_testkit::servers::NatsServer;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::timeout;
use transport_nats::layout::Layout;

/// The documented accounts, users and permissions, verbatim.
const ACCOUNTS: &str = include_str!("../../docs/nats-accounts.conf");

/// The users of the doc, their example passwords and node ids.
const NODES: [(&str, &str, &str); 3] =
    [("node-n1", "n1-secret", "n1"), ("node-n2", "n2-secret", "n2"), ("node-n3", "n3-secret", "n3")];
const OPERATOR: (&str, &str) = ("operator", "operator-secret");
const FOREIGN: (&str, &str) = ("foreign", "foreign-secret");
/// How the doc's operators reach the fleet's `JetStream` API, and their inbox prefix.
const OPERATOR_API_PREFIX: &str = "$JS.fusebox.API";
const OPERATOR_INBOX_PREFIX: &str = "_INBOX_fusebox_ops";

/// How long something that must happen may take.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long a refused request or publish is given to (wrongly) get a reply.
const NO_REPLY: Duration = Duration::from_millis(400);

fn breaker() -> BreakerName {
    BreakerName::new("payments").unwrap()
}

fn node_id(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

/// One user's connection, with the server errors it has been sent.
struct Conn {
    user: &'static str,
    client: async_nats::Client,
    js: jetstream::Context,
    events: mpsc::UnboundedReceiver<Event>,
    /// Permission violations received but not yet claimed by [`Conn::refused`].
    violations: Vec<String>,
}

async fn connect(server: &NatsServer, (user, password): (&'static str, &str)) -> Conn {
    let (tx, events) = mpsc::unbounded_channel();
    let mut options =
        ConnectOptions::with_user_and_password(user.into(), password.into()).event_callback(move |event| {
            let tx = tx.clone();
            async move {
                // The receiver is gone only when the test is over.
                let _ = tx.send(event);
            }
        });
    if user == OPERATOR.0 {
        options = options.custom_inbox_prefix(OPERATOR_INBOX_PREFIX);
    }
    let client = options.connect(server.url()).await.unwrap_or_else(|e| panic!("{user} connecting: {e}"));
    let js = if user == OPERATOR.0 {
        jetstream::with_prefix(client.clone(), OPERATOR_API_PREFIX)
    } else {
        jetstream::new(client.clone())
    };
    Conn { user, client, js, events, violations: Vec::new() }
}

/// The server log lines about this user. A refused publish is logged (nats-server 2.15.1) on
/// one line as
///
/// ```text
/// [ERR] 127.0.0.1:46102 - cid:5 - "v0.51.0:rust" - "FUSEBOX/user:node-n1"
///     - Publish Violation - Subject "fusebox.out.payments.n2"
/// ```
fn logged_about(server: &NatsServer, user: &str) -> Vec<String> {
    let who = format!("/user:{user}\"");
    server.log().lines().filter(|l| l.contains(&who)).map(str::to_owned).collect()
}

impl Conn {
    /// Waits until the server has told this connection that publishing on `subject` is not
    /// allowed, and checks that the server logged it for this user.
    async fn refused(&mut self, server: &NatsServer, subject: &str) {
        let expected = format!("Permissions Violation for Publish to \"{subject}\"");
        let waited = timeout(DEADLINE, async {
            loop {
                if let Some(i) = self.violations.iter().position(|v| *v == expected) {
                    self.violations.remove(i);
                    return;
                }
                match self.events.recv().await {
                    Some(Event::ServerError(ServerError::Other(e))) if e.contains("Permissions Violation") => {
                        self.violations.push(e);
                    }
                    Some(_) => {}
                    None => panic!("{}: event channel closed", self.user),
                }
            }
        })
        .await;
        let user = self.user;
        assert!(waited.is_ok(), "{user}: no {expected:?} within {DEADLINE:?}; others: {:?}", self.violations);
        // The server sends the error before it logs it.
        let what = format!("Publish Violation - Subject \"{subject}\"");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let logged = logged_about(server, user);
            if logged.iter().any(|l| l.contains(&what)) {
                break;
            }
            assert!(Instant::now() < deadline, "{user}: the server did not log {what:?}: {logged:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails if the server refused anything this user did. Call it after a request that got
    /// its reply: the server handles a connection's messages in order and logs a violation
    /// before it handles the next message.
    fn assert_no_violations(&mut self, server: &NatsServer) {
        let logged: Vec<String> =
            logged_about(server, self.user).into_iter().filter(|l| l.contains("Violation")).collect();
        assert!(logged.is_empty(), "{}: the server refused {logged:#?}", self.user);
        while let Ok(event) = self.events.try_recv() {
            if let Event::ServerError(ServerError::Other(e)) = event {
                self.violations.push(e);
            }
        }
        assert!(self.violations.is_empty(), "{}: violations {:?}", self.user, self.violations);
    }

    /// A core publish the server must refuse.
    async fn publish_refused(&mut self, server: &NatsServer, subject: &str) {
        self.client.publish(subject.to_owned(), "forged".into()).await.unwrap();
        self.client.flush().await.unwrap();
        self.refused(server, subject).await;
    }
}

/// What a fleet needs, created by whoever calls it (a node, in the doc's design). Idempotent:
/// creating what exists with the same configuration succeeds.
async fn provision(js: &jetstream::Context) {
    let layout = Layout::default();
    js.create_key_value(kv::Config { bucket: layout.state_bucket(), history: 16, ..Default::default() }).await.unwrap();
    js.create_key_value(kv::Config {
        bucket: layout.lease_bucket(),
        history: 1,
        limit_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_key_value(kv::Config { bucket: layout.config_bucket(), history: 8, ..Default::default() }).await.unwrap();
    js.create_stream(stream::Config {
        name: layout.outcome_stream(),
        subjects: vec![layout.outcome_subjects()],
        max_age: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_stream(stream::Config {
        name: layout.control_stream(),
        subjects: vec![layout.control_subjects()],
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A server running the doc's accounts, provisioned by node n1.
async fn fleet() -> (NatsServer, Conn) {
    let server = NatsServer::start_with(ACCOUNTS).unwrap();
    let n1 = connect(&server, (NODES[0].0, NODES[0].1)).await;
    provision(&n1.js).await;
    (server, n1)
}

async fn messages_in(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

/// The first message on `subject` of `stream`, read by an ordered pull consumer.
async fn first_message(js: &jetstream::Context, stream: &str, subject: &str) -> jetstream::Message {
    let stream = js.get_stream(stream).await.unwrap();
    let ordered = pull::OrderedConfig { filter_subject: subject.to_owned(), ..Default::default() };
    let mut messages = stream.create_consumer(ordered).await.unwrap().messages().await.unwrap();
    timeout(DEADLINE, messages.next()).await.expect("no message within the deadline").unwrap().unwrap()
}

/// A durable pull consumer with explicit ack on `subject` of `stream`, as a decider uses it:
/// created, bound again by name, its last message read and acked (the ack floor moves), and
/// deleted when done (a decider that loses its lease).
async fn durable_reads(js: &jetstream::Context, stream: &str, subject: &str, name: &str, payload: &str) {
    let stream = js.get_stream(stream).await.unwrap();
    let config = pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: subject.to_owned(),
        deliver_policy: DeliverPolicy::Last,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    stream.create_consumer(config).await.unwrap();
    let mut durable = stream.get_consumer::<pull::Config>(name).await.unwrap();
    let mut batch = durable.fetch().max_messages(1).expires(DEADLINE).messages().await.unwrap();
    let message = timeout(DEADLINE, batch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(message.payload, payload);
    message.double_ack().await.unwrap();
    let sequence = message.info().unwrap().stream_sequence;
    assert_eq!(durable.info().await.unwrap().ack_floor.stream_sequence, sequence);
    assert!(stream.delete_consumer(name).await.unwrap().success);
}

/// Everything a service node does, as `user` reporting as node `node`.
async fn node_does_its_job(server: &NatsServer, user: (&'static str, &str), node: &str) {
    let layout = Layout::default();
    let mut c = connect(server, user).await;
    provision(&c.js).await;

    // Report an outcome on its own subject; read it back with an ordered pull consumer.
    let subject = layout.outcome_subject(&breaker(), &node_id(node));
    let ack = c.js.publish(subject.clone(), format!("outcome from {node}").into()).await.unwrap().await.unwrap();
    assert_eq!(ack.stream, layout.outcome_stream());
    let message = first_message(&c.js, &layout.outcome_stream(), &subject).await;
    assert_eq!(message.payload, format!("outcome from {node}"));
    assert_eq!(message.info().unwrap().stream_sequence, ack.sequence);

    // Decisions: create, watch (current value, then changes), CAS update, get, put.
    let state = c.js.get_key_value(layout.state_bucket()).await.unwrap();
    let key = format!("{node}-breaker");
    let first = state.create(&key, "closed".into()).await.unwrap();
    let mut watch = state.watch_with_history(&key).await.unwrap();
    let seen = timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.value.as_ref(), seen.revision), (b"closed".as_ref(), first));
    let second = state.update(&key, "open".into(), first).await.unwrap();
    let seen = timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.value.as_ref(), seen.revision), (b"open".as_ref(), second));
    let outdated = state.update(&key, "half-open".into(), first).await.unwrap_err();
    assert_eq!(outdated.kind(), UpdateErrorKind::WrongLastRevision);
    assert_eq!(state.get(&key).await.unwrap().unwrap(), "open");
    state.put(&key, "half-open".into()).await.unwrap();
    assert_eq!(state.entry(&key).await.unwrap().unwrap().value, "half-open");

    // A lease: acquire with a TTL, renew by CAS, refuse a second acquire, release.
    let leases = c.js.get_key_value(layout.lease_bucket()).await.unwrap();
    let shard = format!("shard-{node}");
    let holder = bytes::Bytes::from(node.to_owned());
    let term = leases.create_with_ttl(&shard, holder.clone(), Duration::from_secs(30)).await.unwrap();
    let mut standby = leases.watch_with_history(&shard).await.unwrap();
    let seen = timeout(DEADLINE, standby.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.revision, seen.operation), (term, kv::Operation::Put));
    let renewed = leases.update(&shard, holder, term).await.unwrap();
    // (With `history: 1` a watcher that lags behind the next write skips this one.)
    let seen = timeout(DEADLINE, standby.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.revision, seen.operation), (renewed, kv::Operation::Put));
    let taken = leases.create(&shard, "other".into()).await.unwrap_err();
    assert_eq!(taken.kind(), CreateErrorKind::AlreadyExists);
    leases.delete_expect_revision(&shard, Some(renewed)).await.unwrap();
    assert_eq!(leases.get(&shard).await.unwrap(), None);
    let seen = timeout(DEADLINE, standby.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.operation, kv::Operation::Delete);

    // A breaker config.
    let configs = c.js.get_key_value(layout.config_bucket()).await.unwrap();
    let version = configs.put(&key, r#"{"version":1}"#.into()).await.unwrap();
    assert_eq!(configs.entry(&key).await.unwrap().unwrap().revision, version);
    let mut watch = configs.watch_with_history(&key).await.unwrap();
    assert_eq!(timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap().revision, version);

    // A command (Registry::command); an ordered consumer reads the first one in the stream,
    // n1's.
    let command = format!("open, by {node}");
    let control_subject = layout.control_subject(&breaker());
    let ack = c.js.publish(control_subject.clone(), command.clone().into()).await.unwrap().await.unwrap();
    assert_eq!(ack.stream, layout.control_stream());
    assert_eq!(first_message(&c.js, &layout.control_stream(), &control_subject).await.payload, "open, by n1");

    // Durable pull consumers with explicit ack, on both streams: the last message is this
    // node's own, and the acks reach the server.
    for (stream, subject, payload) in [
        (layout.control_stream(), control_subject, command),
        (layout.outcome_stream(), subject, format!("outcome from {node}")),
    ] {
        durable_reads(&c.js, &stream, &subject, &format!("decider-{node}"), &payload).await;
    }

    c.assert_no_violations(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_provisions_reports_and_uses_the_buckets_and_streams() {
    let (server, mut n1) = fleet().await;
    for (user, password, node) in NODES {
        Box::pin(node_does_its_job(&server, (user, password), node)).await;
    }
    assert_eq!(messages_in(&n1.js, &Layout::default().outcome_stream()).await, 3);
    n1.assert_no_violations(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_report_as_another_node_nor_administer_streams() {
    let layout = Layout::default();
    let (server, mut n1) = fleet().await;
    let outcomes = layout.outcome_stream();
    let n2_subject = layout.outcome_subject(&breaker(), &node_id("n2"));

    // As n2, through JetStream: refused, no ack, nothing stored.
    let before = messages_in(&n1.js, &outcomes).await;
    let pending = n1.js.publish(n2_subject.clone(), "forged".into()).await.unwrap();
    n1.refused(&server, &n2_subject).await;
    assert!(!matches!(timeout(NO_REPLY, pending).await, Ok(Ok(_))), "a refused publish was acked");
    assert_eq!(messages_in(&n1.js, &outcomes).await, before);
    // The count does move when n1 reports as itself.
    n1.js.publish(layout.outcome_subject(&breaker(), &node_id("n1")), "real".into()).await.unwrap().await.unwrap();
    assert_eq!(messages_in(&n1.js, &outcomes).await, before + 1);

    // Every node is held to its own id, not only n1.
    for (i, (user, password, _)) in NODES.into_iter().enumerate() {
        let mut c = connect(&server, (user, password)).await;
        let other = NODES[(i + 1) % NODES.len()].2;
        c.publish_refused(&server, &layout.outcome_subject(&breaker(), &node_id(other))).await;
    }
    assert_eq!(messages_in(&n1.js, &outcomes).await, before + 1);

    // No stream administration beyond an idempotent create: no delete, purge or new stream.
    let state = n1.js.get_key_value(layout.state_bucket()).await.unwrap();
    let decided = state.put("payments", "open".into()).await.unwrap();
    let state_stream = format!("KV_{}", layout.state_bucket());
    let deleted = timeout(NO_REPLY, n1.js.delete_stream(&state_stream)).await;
    assert!(!matches!(deleted, Ok(Ok(_))), "a node deleted the state bucket");
    n1.refused(&server, &format!("$JS.API.STREAM.DELETE.{state_stream}")).await;
    let purged = timeout(NO_REPLY, n1.js.get_stream(&outcomes).await.unwrap().purge()).await;
    assert!(!matches!(purged, Ok(Ok(_))), "a node purged the outcome stream");
    n1.refused(&server, &format!("$JS.API.STREAM.PURGE.{outcomes}")).await;
    let elsewhere =
        stream::Config { name: "ELSEWHERE".into(), subjects: vec!["elsewhere.>".into()], ..Default::default() };
    let created = timeout(NO_REPLY, n1.js.create_stream(elsewhere)).await;
    assert!(!matches!(created, Ok(Ok(_))), "a node created a stream outside the fleet");
    n1.refused(&server, "$JS.API.STREAM.CREATE.ELSEWHERE").await;
    assert_eq!(state.entry("payments").await.unwrap().unwrap().revision, decided);
    assert_eq!(messages_in(&n1.js, &outcomes).await, before + 1);
}

/// The doc writes each node's permissions out in full (a config variable cannot splice
/// arrays); the node tests exercise every node's list, but flow control only n1's: the lists
/// must not drift apart, differing only in the user name, the password and the node id.
#[test]
fn the_node_users_differ_only_in_their_name_password_and_node_id() {
    let blocks: Vec<&str> = ACCOUNTS
        .split("{ user: node-")
        .skip(1)
        .map(|rest| &rest[..rest.find("] } } }").expect("a node block ends with `] } } }`")])
        .collect();
    assert_eq!(blocks.len(), NODES.len());
    let normalized: Vec<String> = blocks
        .iter()
        .zip(NODES)
        .map(|(block, (user, password, node))| {
            let header = format!("{}, password: \"{password}\",", user.trim_start_matches("node-"));
            assert!(block.starts_with(&header), "{user}: {block}");
            let own = format!("\"fusebox.out.*.{node}\"");
            assert_eq!(block.matches(&own).count(), 1, "{user}: {block}");
            block.replacen(&header, "", 1).replacen(&own, "OWN", 1)
        })
        .collect();
    assert!(normalized.iter().all(|b| *b == normalized[0]), "the node users drifted apart: {normalized:#?}");
}

/// Past 1 MiB in flight the server asks a push consumer (every KV watch) for flow control,
/// and past 2 MiB it stops until the client answers on `$JS.FC.<stream>.>`: watches of all
/// three buckets, by a node and by an operator, must get through 3 MiB (a node booting into
/// a fleet with many breakers watches that much).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_watches_get_past_flow_control() {
    const KEYS: usize = 48;
    let layout = Layout::default();
    let (server, mut n1) = fleet().await;
    let mut op = connect(&server, OPERATOR).await;
    let value = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    for bucket in [layout.state_bucket(), layout.lease_bucket(), layout.config_bucket()] {
        let kv = n1.js.get_key_value(&bucket).await.unwrap();
        for i in 0..KEYS {
            kv.put(format!("k{i}"), value.clone()).await.unwrap();
        }
        for c in [&n1, &op] {
            let mut watch = c.js.get_key_value(&bucket).await.unwrap().watch_with_history(">").await.unwrap();
            let all = timeout(DEADLINE, async {
                for _ in 0..KEYS {
                    assert_eq!(watch.next().await.unwrap().unwrap().value.len(), value.len());
                }
            })
            .await;
            assert!(all.is_ok(), "{}: a watch of {bucket} stalled", c.user);
        }
    }
    n1.assert_no_violations(&server);
    op.assert_no_violations(&server);
}

/// The premise of the doc's accounts: nats-server checks the subject of a publish, never its
/// reply subject, and `JetStream` answers on the reply subject in the requester's account. So
/// within the fleet's account a node can have the server store its publish ack on another
/// node's outcome subject. If this starts failing, a server release checks reply subjects:
/// re-read the "Why three accounts" comment of the doc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_one_account_a_reply_subject_is_not_checked() {
    let layout = Layout::default();
    let (server, mut n1) = fleet().await;
    let own = layout.outcome_subject(&breaker(), &node_id("n1"));
    let n2_subject = layout.outcome_subject(&breaker(), &node_id("n2"));
    n1.client.publish_with_reply(own, n2_subject.clone(), "real".into()).await.unwrap();
    let relayed = first_message(&n1.js, &layout.outcome_stream(), &n2_subject).await;
    let ack: serde_json::Value = serde_json::from_slice(&relayed.payload).unwrap();
    assert_eq!(ack["stream"], layout.outcome_stream());
    assert_eq!(ack["seq"], 1);
    n1.assert_no_violations(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_publisher_reports_outcomes_and_nothing_else() {
    let layout = Layout::default();
    let (server, n1) = fleet().await;
    let state = n1.js.get_key_value(layout.state_bucket()).await.unwrap();
    let leases = n1.js.get_key_value(layout.lease_bucket()).await.unwrap();
    let configs = n1.js.get_key_value(layout.config_bucket()).await.unwrap();
    let decided = state.put("payments", r#"{"state":"closed"}"#.into()).await.unwrap();
    let term = leases.create("shard-0", "n1".into()).await.unwrap();
    let config = configs.put("payments", r#"{"version":1}"#.into()).await.unwrap();
    let (outcomes, control) = (layout.outcome_stream(), layout.control_stream());
    let state_key = format!("$KV.{}.payments", layout.state_bucket());
    let lease_key = format!("$KV.{}.shard-0", layout.lease_bucket());

    let mut foreign = connect(&server, FOREIGN).await;

    // Reports JSON as its own id, gets the JetStream ack, and a decider reads it as sent.
    let own = layout.outcome_subject(&breaker(), &node_id("py1"));
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers.insert("Nats-Msg-Id", "py1:1:1");
    let json = r#"{"v":1,"breaker":"payments","node":"py1","ok":3,"failed":1}"#;
    let ack = foreign.js.publish_with_headers(own.clone(), headers, json.into()).await.unwrap().await.unwrap();
    assert_eq!((ack.stream.as_str(), ack.duplicate), (outcomes.as_str(), false));
    let message = first_message(&n1.js, &outcomes, &own).await;
    assert_eq!(message.payload, json);
    let content_type = message.headers.as_ref().and_then(|h| h.get("Content-Type")).map(|v| v.as_str().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let control_before = messages_in(&n1.js, &control).await;

    // Reply subjects lead nowhere: acks of its reports, sent to a bucket or to the control
    // subject, come back to its own account instead (the next ack is the barrier).
    for reply in [state_key.clone(), lease_key.clone(), layout.control_subject(&breaker())] {
        foreign.client.publish_with_reply(own.clone(), reply, json.into()).await.unwrap();
    }
    foreign.js.publish(own.clone(), json.into()).await.unwrap().await.unwrap();
    assert_eq!(messages_in(&n1.js, &outcomes).await, 5);

    // Cannot even bind to a bucket: the JetStream API is closed to it.
    let bound = timeout(NO_REPLY, foreign.js.get_key_value(layout.state_bucket())).await;
    assert!(!matches!(bound, Ok(Ok(_))), "a foreign publisher bound to the state bucket");
    foreign.refused(&server, &format!("$JS.API.STREAM.INFO.KV_{}", layout.state_bucket())).await;

    // Raw KV writes: refused, and no ack for a JetStream one.
    foreign.publish_refused(&server, &state_key).await;
    foreign.publish_refused(&server, &lease_key).await;
    foreign.publish_refused(&server, &format!("$KV.{}.payments", layout.config_bucket())).await;
    let pending = foreign.js.publish(lease_key.clone(), "forged".into()).await.unwrap();
    assert!(!matches!(timeout(NO_REPLY, pending).await, Ok(Ok(_))), "a refused KV write was acked");
    foreign.refused(&server, &lease_key).await;

    // No commands, no reporting as a node.
    foreign.publish_refused(&server, &layout.control_subject(&breaker())).await;
    foreign.publish_refused(&server, &layout.outcome_subject(&breaker(), &node_id("n1"))).await;

    // No consumers.
    let consumers_before = n1.js.get_stream(&outcomes).await.unwrap().get_info().await.unwrap().state.consumer_count;
    let create = format!("$JS.API.CONSUMER.CREATE.{outcomes}");
    let request = format!(r#"{{"stream_name":"{outcomes}","config":{{"ack_policy":"none"}}}}"#);
    let reply = timeout(NO_REPLY, foreign.client.request(create.clone(), request.into())).await;
    assert!(!matches!(reply, Ok(Ok(_))), "a foreign publisher got a consumer-create reply");
    foreign.refused(&server, &create).await;
    let consumers = n1.js.get_stream(&outcomes).await.unwrap().get_info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, consumers_before);

    // Nothing it tried changed anything: CAS on the revisions of before succeeds.
    state.update("payments", r#"{"state":"open"}"#.into(), decided).await.unwrap();
    leases.update("shard-0", "n1".into(), term).await.unwrap();
    configs.update("payments", r#"{"version":2}"#.into(), config).await.unwrap();
    assert_eq!(messages_in(&n1.js, &outcomes).await, 5);
    assert_eq!(messages_in(&n1.js, &control).await, control_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sends_commands_and_reads_but_writes_no_bucket() {
    let layout = Layout::default();
    let (server, n1) = fleet().await;
    let state = n1.js.get_key_value(layout.state_bucket()).await.unwrap();
    let leases = n1.js.get_key_value(layout.lease_bucket()).await.unwrap();
    let configs = n1.js.get_key_value(layout.config_bucket()).await.unwrap();
    let decided = state.put("payments", r#"{"state":"open"}"#.into()).await.unwrap();
    let term = leases.create("shard-0", "n1".into()).await.unwrap();
    let config = configs.put("payments", r#"{"version":1}"#.into()).await.unwrap();
    let own = layout.outcome_subject(&breaker(), &node_id("n1"));
    n1.js.publish(own.clone(), "outcome".into()).await.unwrap().await.unwrap();
    let state_key = format!("$KV.{}.payments", layout.state_bucket());
    let lease_key = format!("$KV.{}.shard-0", layout.lease_bucket());

    let mut op = connect(&server, OPERATOR).await;

    // A command, acked by the control stream.
    let ack = op.js.publish(layout.control_subject(&breaker()), "close".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.stream, layout.control_stream());

    // Reads decisions (get, then watch: current value and a change), leases and configs.
    let op_state = op.js.get_key_value(layout.state_bucket()).await.unwrap();
    assert_eq!(op_state.entry("payments").await.unwrap().unwrap().revision, decided);
    let mut watch = op_state.watch_with_history("payments").await.unwrap();
    let seen = timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.revision, decided);
    let changed = state.put("payments", r#"{"state":"half-open"}"#.into()).await.unwrap();
    let seen = timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.revision, changed);
    let op_leases = op.js.get_key_value(layout.lease_bucket()).await.unwrap();
    assert_eq!(op_leases.get("shard-0").await.unwrap().unwrap(), "n1");
    let op_configs = op.js.get_key_value(layout.config_bucket()).await.unwrap();
    assert_eq!(op_configs.entry("payments").await.unwrap().unwrap().revision, config);

    // Reads both streams: info, and tailing with an ordered pull consumer.
    let mut outcomes = op.js.get_stream(layout.outcome_stream()).await.unwrap();
    assert_eq!(outcomes.info().await.unwrap().state.messages, 1);
    let message = first_message(&op.js, &layout.outcome_stream(), &layout.outcome_subjects()).await;
    assert_eq!((message.subject.as_str(), message.info().unwrap().stream_sequence), (own.as_str(), 1));
    let command = first_message(&op.js, &layout.control_stream(), &layout.control_subjects()).await;
    assert_eq!(command.payload, "close");
    op.assert_no_violations(&server);

    // Writes through its bucket handles are refused, with no ack (a handle bound through an
    // API prefix writes to `<prefix>.$KV.<bucket>.<key>`), and so are raw KV writes.
    let put = timeout(NO_REPLY, op_state.put("payments", "forged".into())).await;
    assert!(!matches!(put, Ok(Ok(_))), "an operator wrote a decision");
    op.refused(&server, &format!("{OPERATOR_API_PREFIX}.{state_key}")).await;
    let put = timeout(NO_REPLY, op_leases.put("shard-0", "operator".into())).await;
    assert!(!matches!(put, Ok(Ok(_))), "an operator wrote a lease");
    op.refused(&server, &format!("{OPERATOR_API_PREFIX}.{lease_key}")).await;
    let put = timeout(NO_REPLY, op_configs.put("payments", "forged".into())).await;
    assert!(!matches!(put, Ok(Ok(_))), "an operator wrote a config");
    op.refused(&server, &format!("{OPERATOR_API_PREFIX}.$KV.{}.payments", layout.config_bucket())).await;
    op.publish_refused(&server, &state_key).await;
    op.publish_refused(&server, &lease_key).await;

    // Nor through reply subjects: the answers to its commands and API requests, and the
    // messages of a pull request, stay in its own account.
    op.client.publish_with_reply(layout.control_subject(&breaker()), state_key.clone(), "close".into()).await.unwrap();
    let info = format!("{OPERATOR_API_PREFIX}.STREAM.INFO.{}", layout.outcome_stream());
    op.client.publish_with_reply(info, lease_key.clone(), "".into()).await.unwrap();
    let puller = pull::Config { name: Some("puller".into()), ..Default::default() };
    outcomes.create_consumer(puller).await.unwrap();
    let next = format!("{OPERATOR_API_PREFIX}.CONSUMER.MSG.NEXT.{}.puller", layout.outcome_stream());
    op.client.publish_with_reply(next, lease_key.clone(), r#"{"batch":1}"#.into()).await.unwrap();
    op.js.publish(layout.control_subject(&breaker()), "close".into()).await.unwrap().await.unwrap();

    // Reports no outcomes and administers nothing.
    op.publish_refused(&server, &own).await;
    let deleted = timeout(NO_REPLY, op.js.delete_stream(layout.outcome_stream())).await;
    assert!(!matches!(deleted, Ok(Ok(_))), "an operator deleted the outcome stream");
    op.refused(&server, &format!("{OPERATOR_API_PREFIX}.STREAM.DELETE.{}", layout.outcome_stream())).await;

    // Nothing it tried changed a bucket: CAS on the revisions of before succeeds.
    state.update("payments", r#"{"state":"closed"}"#.into(), changed).await.unwrap();
    leases.update("shard-0", "n1".into(), term).await.unwrap();
    configs.update("payments", r#"{"version":2}"#.into(), config).await.unwrap();
    assert_eq!(messages_in(&n1.js, &layout.outcome_stream()).await, 1);
    assert_eq!(messages_in(&n1.js, &layout.control_stream()).await, 3);
}
