//! The Node client (`clients/node`, `@fusebox/client`) against a real nats-server and Rust
//! nodes: its unit tests, then one fleet scenario per test — Node's reports trip the Rust
//! fleet, its follower rejects while open and lets exactly its granted probes through (whose
//! results close the round), malformed bucket values are counted and skipped, and it
//! connects with a token over mutual TLS (bad settings failing clearly), with an nkey seed
//! file and with operator-mode creds.
//!
//! Each scenario runs `node --test clients/node/test/fleet/<scenario>.test.js` with the
//! server's URL, the breaker and the node id in `FUSEBOX_TEST_*` variables, asserts its exit
//! status, and then asserts what the Rust side saw. Node is `FUSEBOX_NODE`, else `node` on
//! the path; `scripts/install-tools.sh` runs `npm ci` in `clients/node`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use breaker_actors::Registry;
use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerConfig, BreakerName, HalfOpenPolicy, NodeId, StateLabel};
use fusebox_testkit::servers::NatsServer;
use fusebox_testkit::servers::credentials::{NKeyUser, Operator, Pki, TestDir};
use fusebox_tests::workspace_root;
use transport_nats::nats::{Auth, NatsConfig, NatsTransport, Tls};

const WAIT: Duration = Duration::from_secs(10);
/// How long one `node --test` run may take before it is killed.
const NODE_DEADLINE: Duration = Duration::from_secs(60);
/// The half-open probe budget of [`config_open`].
const BUDGET: u32 = 2;

/// [`fusebox_testkit::config::config_open`] with [`BUDGET`] probes in total, all of which
/// must succeed, and 10 s for the round (a Node or Python process is slower to answer).
fn config_open(duration_ms: u64) -> BreakerConfig {
    let base = fusebox_testkit::config::config_open(duration_ms);
    let half_open =
        HalfOpenPolicy { probe_budget: BUDGET, success_threshold: BUDGET, max_wait_ms: 10_000, ..base.half_open };
    BreakerConfig { half_open, ..base }
}

fn client_dir() -> PathBuf {
    workspace_root().join("clients/node")
}

/// Runs `node --test <files>` in `clients/node` with `env` (and no NATS_* variables of the
/// caller's); panics with its output unless it passed. Returns its stdout.
fn node_test(files: &[&str], env: &[(&str, &str)]) -> String {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/@nats-io/transport-node").is_dir(),
        "{} has no node_modules: run `bash scripts/install-tools.sh` (npm ci in clients/node)",
        dir.display()
    );
    let node = std::env::var_os("FUSEBOX_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let mut command = Command::new(&node);
    for (name, _) in std::env::vars() {
        if name.starts_with("NATS_") || name.starts_with("FUSEBOX_TEST_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = command
        .current_dir(&dir)
        .arg("--test")
        .args(files)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} (set FUSEBOX_NODE to Node 20+): {e}", node.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > NODE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node --test {files:?} still running after {NODE_DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    eprintln!("node --test {files:?}: {status} in {:?}", started.elapsed());
    assert!(status.success(), "node --test {files:?} exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("# fail 0"), "no test summary:\n{stdout}");
    assert!(!stdout.contains("# pass 0\n"), "node ran no test:\n{stdout}");
    stdout
}

struct Node {
    reg: Registry,
    transport: Arc<NatsTransport>,
}

/// Rust nodes `n1`, `n2`, ... holding `breaker`, once one decides and all applied its decision.
async fn fleet(url: &str, count: usize, breaker: &str, config: BreakerConfig) -> (Vec<Node>, Vec<Breaker>) {
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for i in 1..=count {
        let nats = NatsConfig::new(vec![url.to_owned()], NodeId::new(&format!("n{i}")).unwrap());
        let transport = NatsTransport::connect(nats).await.unwrap();
        let reg = Registry::builder()
            .transport(transport.clone())
            .lease_ttl(Duration::from_secs(2))
            .lease_margin(Duration::from_millis(500))
            .lease_shards(4)
            .start()
            .await
            .unwrap();
        breakers.push(reg.breaker(breaker, config.clone()).await.unwrap());
        nodes.push(Node { reg, transport });
    }
    let name = BreakerName::new(breaker).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut deciding = false;
        let mut applied = true;
        let current = nodes[0].transport.decision(&name).await.ok().and_then(|r| r.decision);
        for n in &nodes {
            let machine = n.reg.machine(&name).await;
            deciding |= machine.as_ref().is_some_and(breaker_actors::machine::Machine::is_deciding);
            applied &= machine.zip(current.as_ref()).is_some_and(|(m, d)| m.applied_id() == d.id);
        }
        if deciding && applied {
            return (nodes, breakers);
        }
        assert!(Instant::now() < deadline, "nobody became the decider of {breaker}, or its decision is not applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn all_in(breakers: &[Breaker], state: StateLabel) {
    let deadline = Instant::now() + WAIT;
    while !breakers.iter().all(|b| b.state() == state) {
        let states: Vec<StateLabel> = breakers.iter().map(Breaker::state).collect();
        assert!(Instant::now() < deadline, "timed out waiting for every breaker {state:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `node --test` in a blocking thread, so the Rust nodes keep running meanwhile.
async fn run_scenario(file: &'static str, env: Vec<(String, String)>) -> String {
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        node_test(&[file], &env)
    })
    .await
    .unwrap()
}

fn scenario_env(url: &str, breaker: &str) -> Vec<(String, String)> {
    vec![
        ("FUSEBOX_TEST_URL".into(), url.into()),
        ("FUSEBOX_TEST_BREAKER".into(), breaker.into()),
        ("FUSEBOX_TEST_NODE".into(), "js1".into()),
        ("FUSEBOX_TEST_BUDGET".into(), BUDGET.to_string()),
    ]
}

// The client's own unit tests (no server): wire format and schema, decisions and admission,
// permits, the reporter's batching, retries and bounded buffer, the follower's refusals,
// connection settings.
#[test]
fn node_client_unit_tests_pass() {
    let out = node_test(&["test/unit/"], &[]);
    assert!(out.contains("# pass "), "{out}");
}

// `index.d.ts` types the README's usage (test/types/usage.ts), and misuse fails to compile
// (`@ts-expect-error` lines that compiled would fail the check).
#[test]
fn node_client_types_check() {
    let dir = client_dir();
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    assert!(tsc.is_file(), "no {}: run `bash scripts/install-tools.sh`", tsc.display());
    let node = std::env::var_os("FUSEBOX_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let out = Command::new(node)
        .current_dir(&dir)
        .arg(&tsc)
        .args(["-p", "test/types/tsconfig.json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tsc: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Node's failures, reported through `wrap()`, trip both Rust nodes; the JSON decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reports_trip_the_rust_fleet() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (nodes, breakers) = fleet(&url, 2, "payments", config_open(60_000)).await;
    run_scenario("test/fleet/trip.test.js", scenario_env(&url, "payments")).await;
    all_in(&breakers, StateLabel::Open).await;
    for n in &nodes {
        assert_eq!(n.transport.stats().rejected_outcomes, 0, "every JSON message decoded");
    }
}

// Node alone trips the fleet, its rejected calls while open are the demand, it is granted the
// whole budget and lets exactly that many probes through, and their results close the round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_follower_probes_only_as_granted() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (nodes, breakers) = fleet(&url, 2, "payments", config_open(1_000)).await;
    run_scenario("test/fleet/probe.test.js", scenario_env(&url, "payments")).await;
    all_in(&breakers, StateLabel::Closed).await;
    let name = BreakerName::new("payments").unwrap();
    let current = nodes[0].transport.decision(&name).await.unwrap().decision.unwrap();
    assert_eq!(current.state.label(), StateLabel::Closed, "{current:?}");
    for n in &nodes {
        assert_eq!(n.transport.stats().rejected_outcomes, 0, "every JSON message decoded");
    }
}

// Garbage in the state bucket is counted and skipped by the Node follower, which still
// applies the fleet's next decision; the Rust nodes trip on Node's reports as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_follower_skips_malformed_values() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (_nodes, breakers) = fleet(&url, 2, "payments", config_open(60_000)).await;
    run_scenario("test/fleet/malformed.test.js", scenario_env(&url, "payments")).await;
    all_in(&breakers, StateLabel::Open).await;
}

// A token over mutual TLS with the test's CA and a client certificate, from the
// environment; the Node test also checks that each wrong setting fails clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connects_with_a_token_over_mutual_tls() {
    let pki = Pki::generate().unwrap();
    let config = format!("{}authorization {{ token: \"js-t0ken\" }}\n", pki.server_tls(true, false));
    let server = NatsServer::start_with(&config).unwrap();
    let url = server.url();
    let mut nats = NatsConfig::new(vec![url.clone()], NodeId::new("n1").unwrap());
    nats.connection.auth = Auth::Token("js-t0ken".into());
    nats.connection.tls = Tls {
        ca: Some(pki.ca.clone()),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
        ..Tls::default()
    };
    // Connecting provisions the outcome stream and the buckets the client needs.
    let _node = NatsTransport::connect(nats).await.unwrap();
    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let mut env = scenario_env(&url, "payments");
    env.extend([
        ("NATS_URL".to_owned(), url.clone()),
        ("NATS_TOKEN".to_owned(), "js-t0ken".to_owned()),
        ("NATS_CA".to_owned(), text(&pki.ca)),
        ("NATS_CERT".to_owned(), text(&pki.client_cert)),
        ("NATS_KEY".to_owned(), text(&pki.client_key)),
    ]);
    run_scenario("test/fleet/connect.test.js", env).await;
}

// An nkey seed file and an operator-mode `.creds` file (each server provisioned by a Rust node
// with the same kind of credentials); a stranger's creds are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connects_with_an_nkey_seed_and_with_creds() {
    let dir = TestDir::new("node-auth").unwrap();
    let (rust, js) = (NKeyUser::generate().unwrap(), NKeyUser::generate().unwrap());
    let nkey_server = NatsServer::start_with(&NKeyUser::server_authorization(&[&rust, &js])).unwrap();
    let mut nats = NatsConfig::new(vec![nkey_server.url()], NodeId::new("n1").unwrap());
    nats.connection.auth = Auth::NKeySeed(rust.seed.clone());
    let _nkey_node = NatsTransport::connect(nats).await.unwrap();
    let seed_file = dir.write("js1.nk", format!("{}\n", js.seed)).unwrap();

    let operator = Operator::generate().unwrap();
    let creds_server = NatsServer::start_with(&operator.server_config()).unwrap();
    let mut nats = NatsConfig::new(vec![creds_server.url()], NodeId::new("n2").unwrap());
    nats.connection.auth = Auth::Creds(operator.user_creds("node-n2").unwrap());
    let _creds_node = NatsTransport::connect(nats).await.unwrap();
    let creds = dir.write("js1.creds", operator.user_creds("js1").unwrap()).unwrap();
    let stranger = dir.write("stranger.creds", Operator::stranger_creds("stranger").unwrap()).unwrap();

    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let mut env = scenario_env(&nkey_server.url(), "payments");
    env.extend([
        ("FUSEBOX_TEST_NKEY_URL".to_owned(), nkey_server.url()),
        ("FUSEBOX_TEST_NKEY_FILE".to_owned(), text(&seed_file)),
        ("FUSEBOX_TEST_CREDS_URL".to_owned(), creds_server.url()),
        ("FUSEBOX_TEST_CREDS_FILE".to_owned(), text(&creds)),
        ("FUSEBOX_TEST_STRANGER_FILE".to_owned(), text(&stranger)),
    ]);
    run_scenario("test/fleet/auth.test.js", env).await;
}
