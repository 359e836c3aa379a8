//! The Python client package (`clients/python`, `fusebox-client`) against a real
//! nats-server and Rust nodes: each test starts the server and a Rust fleet holding the
//! breaker its scenario needs, runs one pytest module of `clients/python/tests` with the
//! venv's interpreter (`FUSEBOX_PYTHON`, else `.tools/venv/bin/python`), with the server's
//! URL in `FUSEBOX_TEST_NATS_URL`, insists that pytest passed, and checks the Rust side.
//!
//! pytest runs the sources (`PYTHONPATH=clients/python/src`); `the_installed_package_is_the_source`
//! checks that the venv's `pip install ./clients/python` (scripts/install-tools.sh) is
//! the same code, with its `py.typed` marker.

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
use transport_nats::nats::{NatsConfig, NatsTransport};

const WAIT: Duration = Duration::from_secs(15);
/// How long one pytest run may take before it is killed.
const PYTEST_DEADLINE: Duration = Duration::from_secs(90);

/// [`fusebox_testkit::config::config_open`] with 10 s for the half-open round (a Python
/// process is slower to answer).
fn config_open(duration_ms: u64) -> BreakerConfig {
    let base = fusebox_testkit::config::config_open(duration_ms);
    BreakerConfig { half_open: HalfOpenPolicy { max_wait_ms: 10_000, ..base.half_open }, ..base }
}

fn python() -> PathBuf {
    if let Some(explicit) = std::env::var_os("FUSEBOX_PYTHON") {
        return PathBuf::from(explicit);
    }
    let venv = workspace_root().join(".tools/venv/bin/python");
    assert!(venv.is_file(), "no Python at {}: run `bash scripts/install-tools.sh`", venv.display());
    venv
}

/// Runs `python args` in the workspace with `env`, killed after [`PYTEST_DEADLINE`];
/// returns (success, stdout + stderr).
fn run_python(args: &[&str], env: &[(&str, &str)], source: bool) -> (bool, String) {
    let root = workspace_root();
    let mut command = Command::new(python());
    for var in [
        "NATS_URL",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CREDS",
        "NATS_NKEY",
        "NATS_CA",
        "NATS_CERT",
        "NATS_KEY",
        "NATS_TLS_FIRST",
        "PYTHONPATH",
    ] {
        command.env_remove(var);
    }
    if source {
        command.env("PYTHONPATH", root.join("clients/python/src"));
    }
    let mut child = command
        .current_dir(&root)
        .args(args)
        .envs(env.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", python().display()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let mut more = String::new();
        let _ = err.read_to_string(&mut more);
        text + &more
    });
    let deadline = Instant::now() + PYTEST_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap();
    (status.is_some_and(|s| s.success()), output)
}

/// Runs pytest on `target` (a module or node id under clients/python/tests).
async fn pytest(target: &str, env: Vec<(String, String)>) -> String {
    let target = format!("clients/python/tests/{target}");
    let handle = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_python(&["-m", "pytest", "-q", "-p", "no:cacheprovider", &target], &env, true)
    });
    let (ok, output) = handle.await.unwrap();
    assert!(ok, "pytest failed:\n{output}");
    assert!(output.contains(" passed"), "pytest ran no test:\n{output}");
    eprintln!("{output}");
    output
}

struct Node {
    _reg: Registry,
    transport: Arc<NatsTransport>,
}

/// `count` Rust nodes holding `breaker`, once one decides and the decision is written.
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
        nodes.push(Node { _reg: reg, transport });
    }
    let name = BreakerName::new(breaker).unwrap();
    let deadline = Instant::now() + WAIT;
    while nodes[0].transport.decision(&name).await.ok().and_then(|r| r.decision).is_none() {
        assert!(Instant::now() < deadline, "no decision of {breaker} written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (nodes, breakers)
}

async fn all_in(breakers: &[Breaker], state: StateLabel) {
    let deadline = Instant::now() + WAIT;
    while !breakers.iter().all(|b| b.state() == state) {
        let states: Vec<StateLabel> = breakers.iter().map(Breaker::state).collect();
        assert!(Instant::now() < deadline, "timed out waiting for every breaker {state:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn env(url: &str, breaker: &str) -> Vec<(String, String)> {
    vec![("FUSEBOX_TEST_NATS_URL".into(), url.into()), ("FUSEBOX_TEST_BREAKER".into(), breaker.into())]
}

// The pure parts (messages against the JSON Schema, admission, the bounded buffer, bad
// decisions) and the connection settings that must fail before or while connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_unit_and_connection_errors() {
    let server = NatsServer::start_with("authorization { token: \"py-t0ken\" }\n").unwrap();
    let mut vars = env(&server.url(), "unused");
    vars.push(("FUSEBOX_TEST_TOKEN".into(), "py-t0ken".into()));
    pytest("test_unit.py", vec![]).await;
    pytest("test_connect.py", vars).await;
}

// Python's reports (through the reporter, with message ids) trip a Rust fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reports_trip_the_fleet() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (nodes, breakers) = fleet(&url, 2, "payments", config_open(60_000)).await;
    pytest("test_fleet.py::test_reports_trip_the_fleet", env(&url, "payments")).await;
    all_in(&breakers, StateLabel::Open).await;
    for n in &nodes {
        assert_eq!(n.transport.stats().rejected_outcomes, 0, "every JSON message decoded");
    }
}

// The follower rejects while open (reported as demand), lets exactly its granted probes
// through in half-open, and its probes' successes close the fleet's breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_follows_and_probes_exactly_its_grant() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (_nodes, breakers) = fleet(&url, 2, "inventory", config_open(500)).await;
    pytest("test_fleet.py::test_follower_rejects_while_open_and_probes_exactly_its_grant", env(&url, "inventory"))
        .await;
    all_in(&breakers, StateLabel::Closed).await;
}

// nkeys, operator-mode creds and mutual TLS, each against a server of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_connects_with_nkeys_creds_and_mutual_tls() {
    let dir = TestDir::new("py-auth").unwrap();
    let user = NKeyUser::generate().unwrap();
    let nkey_server = NatsServer::start_with(&NKeyUser::server_authorization(&[&user])).unwrap();
    let seed = dir.write("user.nk", &user.seed).unwrap();
    let operator = Operator::generate().unwrap();
    let creds_server = NatsServer::start_with(&operator.server_config()).unwrap();
    let creds = dir.write("py.creds", operator.user_creds("py").unwrap()).unwrap();
    let stranger = dir.write("stranger.creds", Operator::stranger_creds("x").unwrap()).unwrap();
    let pki = Pki::generate().unwrap();
    let tls_server = NatsServer::start_with(&pki.server_tls(true, false)).unwrap();
    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let vars = vec![
        ("FUSEBOX_TEST_NKEY_URL".into(), nkey_server.url()),
        ("FUSEBOX_TEST_NKEY_FILE".into(), text(&seed)),
        ("FUSEBOX_TEST_CREDS_URL".into(), creds_server.url()),
        ("FUSEBOX_TEST_CREDS_FILE".into(), text(&creds)),
        ("FUSEBOX_TEST_STRANGER_CREDS".into(), text(&stranger)),
        ("FUSEBOX_TEST_TLS_URL".into(), tls_server.url()),
        ("FUSEBOX_TEST_TLS_CA".into(), text(&pki.ca)),
        ("FUSEBOX_TEST_TLS_CERT".into(), text(&pki.client_cert)),
        ("FUSEBOX_TEST_TLS_KEY".into(), text(&pki.client_key)),
    ];
    pytest("test_auth_modes.py", vars).await;
}

// A lost acknowledgement (the server stopped mid-publish) is retried with the same message
// id, and the stream keeps the message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_retries_keep_the_message_id() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    // Connecting provisions the outcome stream.
    let _node = NatsTransport::connect(NatsConfig::new(vec![url.clone()], NodeId::new("n1").unwrap())).await.unwrap();
    let mut vars = env(&url, "orders");
    vars.push(("FUSEBOX_TEST_NATS_PID".into(), server.pid().unwrap().to_string()));
    pytest("test_fleet.py::test_a_lost_ack_is_retried_with_the_same_id", vars).await;
    assert!(server.is_healthy(), "the server runs again");
}

// The synchronous, thread-backed API does the same from plain threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sync_api_trips_and_recovers() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (_nodes, breakers) = fleet(&url, 1, "search", config_open(500)).await;
    pytest("test_fleet.py::test_sync_api_trips_and_recovers", env(&url, "search")).await;
    all_in(&breakers, StateLabel::Closed).await;
}

// `pip install ./clients/python` into the venv (scripts/install-tools.sh) installed these
// very sources, and the py.typed marker.
#[test]
fn the_installed_package_is_the_source() {
    let code = "import pathlib, fusebox_client as f; p = pathlib.Path(f.__file__).parent; \
                print(p); print(sorted(x.name for x in p.glob('*.py'))); print((p / 'py.typed').exists())";
    let (ok, output) = run_python(&["-c", code], &[], false);
    assert!(ok, "fusebox_client is not installed in the venv (run scripts/install-tools.sh):\n{output}");
    let mut lines = output.lines();
    let installed = PathBuf::from(lines.next().unwrap());
    assert!(installed.components().any(|c| c.as_os_str() == "site-packages"), "not an installed copy: {output}");
    assert_eq!(lines.nth(1), Some("True"), "no py.typed: {output}");
    let source = workspace_root().join("clients/python/src/fusebox_client");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py") {
            let name = path.file_name().unwrap();
            let copy = std::fs::read(installed.join(name)).unwrap_or_default();
            assert!(
                copy == std::fs::read(&path).unwrap(),
                "{} differs from the installed copy: run scripts/install-tools.sh",
                path.display()
            );
        }
    }
}
