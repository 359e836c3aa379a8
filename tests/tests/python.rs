//! The Python examples (`examples/python`, command lines on the `fusebox-client` package)
//! against a real nats-server and Rust nodes: the publisher's JSON reports trip a Rust fleet,
//! the follower applies the fleet's decisions, a Python service alone trips, probes and closes
//! a breaker, and under the example auth config the foreign user may report as `py1` and
//! nothing else. The package's own rules are tested by its suite (`python_client.rs`); this
//! file checks the command lines the documentation shows.
//!
//! The interpreter is `FUSEBOX_PYTHON`, else `.tools/venv/bin/python` with the pinned nats-py
//! and `fusebox-client` that `scripts/install-tools.sh` installs. Scripts run as child processes with their own
//! timeouts; the test also holds a deadline on each and kills whatever is left when it ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker_actors::Registry;
use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerConfig, BreakerName, CommandKind, NodeId, StateLabel};
use fusebox_testkit::config::config_open;
use fusebox_testkit::servers::NatsServer;
use fusebox_testkit::servers::credentials::Pki;
use fusebox_tests::workspace_root;
use serde_json::Value;
use transport_nats::nats::{Auth, NatsConfig, NatsTransport, Tls};

const WAIT: Duration = Duration::from_secs(10);

/// The shared fleet-test config (`fusebox_testkit::config`), but open long enough that
/// "open" is still the state whenever the test looks.
fn config() -> BreakerConfig {
    config_open(60_000)
}

/// The interpreter with nats-py and fusebox-client.
fn python() -> PathBuf {
    if let Some(explicit) = std::env::var_os("FUSEBOX_PYTHON") {
        let path = PathBuf::from(explicit);
        assert!(path.is_file(), "FUSEBOX_PYTHON={} is not a file", path.display());
        return path;
    }
    let venv = workspace_root().join(".tools/venv/bin/python");
    assert!(
        venv.is_file(),
        "no Python with nats-py and fusebox-client at {}: run `bash scripts/install-tools.sh` (or point \
         FUSEBOX_PYTHON at a python that has `pip install ./clients/python`)",
        venv.display()
    );
    venv
}

/// What `fusebox_client.ConnectSettings.from_env()` reads (every example connects with it):
/// the caller's must not leak into a test.
const CONNECTION_VARIABLES: [&str; 10] = [
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
];

/// An environment variable of a child process.
type Var<'a> = (&'a str, &'a str);

/// `env` with each of `changes` set to its value or, for `None`, left out.
fn changed<'a>(env: &[Var<'a>], changes: &[(&'a str, Option<&'a str>)]) -> Vec<Var<'a>> {
    let mut out: Vec<Var<'a>> = env.iter().copied().filter(|(n, _)| changes.iter().all(|(c, _)| c != n)).collect();
    out.extend(changes.iter().filter_map(|(name, value)| value.map(|v| (*name, v))));
    out
}

/// A running example script: its stdout lines as they come, its stderr in the end.
struct Script {
    what: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Script {
    fn spawn(script: &str, args: &[&str]) -> Self {
        Self::spawn_with(script, args, &[])
    }

    /// [`Script::spawn`] with `env` as the only connection variables (`ConnectSettings.from_env()`).
    fn spawn_with(script: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let path = workspace_root().join("examples/python").join(script);
        let mut command = Command::new(python());
        for var in CONNECTION_VARIABLES {
            command.env_remove(var);
        }
        let mut child = command
            .arg(&path)
            .args(args)
            .envs(env.iter().copied())
            // No __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python().display(), path.display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            *sink.lock().unwrap() = text;
        });
        Self { what: format!("{script} {}", args.join(" ")), child, lines, seen: Vec::new(), stderr }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for the next stdout line (a JSON object) after the ones already taken.
    async fn next_json(&mut self, taken: &mut usize) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(line) = self.seen.get(*taken) {
                *taken += 1;
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.what));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                assert!(
                    self.seen.len() > *taken,
                    "{} exited with {status} before printing a line; stderr: {}",
                    self.what,
                    self.stderr()
                );
                continue;
            }
            assert!(Instant::now() < deadline, "{}: no line within {WAIT:?}", self.what);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to end; returns its status, every stdout line and stderr.
    async fn exit(&mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads end with the pipes; give them a moment to hand over the rest.
                let settle = Instant::now() + Duration::from_secs(2);
                loop {
                    self.drain();
                    let done = Arc::strong_count(&self.stderr) == 1;
                    if done || Instant::now() >= settle {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                self.drain();
                return (status, self.seen.clone(), self.stderr());
            }
            assert!(Instant::now() < deadline, "{} still running after {WAIT:?}; stderr so far unknown", self.what);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Gone already is fine: the point is that nothing outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a script to the end and insists it succeeded; returns its stdout lines as JSON.
async fn run_ok(script: &str, args: &[&str]) -> Vec<Value> {
    let mut run = Script::spawn(script, args);
    let (status, lines, stderr) = run.exit().await;
    assert!(status.success(), "{script} {} exited with {status}; stderr:\n{stderr}", args.join(" "));
    lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

struct Node {
    reg: Registry,
    transport: Arc<NatsTransport>,
}

/// Rust nodes `n1`, `n2`, ... holding `breaker`, once one decides and all applied its decision.
async fn fleet(url: &str, count: usize, breaker: &str, credentials: bool) -> (Vec<Node>, Vec<Breaker>) {
    fleet_with(url, count, breaker, credentials, config()).await
}

async fn fleet_with(
    url: &str,
    count: usize,
    breaker: &str,
    credentials: bool,
    config: BreakerConfig,
) -> (Vec<Node>, Vec<Breaker>) {
    let mut nodes = Vec::new();
    let mut breakers = Vec::new();
    for i in 1..=count {
        let id = format!("n{i}");
        let mut nats = NatsConfig::new(vec![url.to_owned()], NodeId::new(&id).unwrap());
        if credentials {
            nats.connection.auth = Auth::user_password(format!("node-{id}"), format!("{id}-secret"));
        }
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

fn acked(lines: &[Value]) {
    assert!(!lines.is_empty(), "no ack printed");
    for ack in lines {
        assert_eq!(ack["stream"], "FUSEBOX_OUTCOMES", "{ack}");
        assert_eq!(ack["duplicate"], false, "{ack}");
    }
}

// (a) A batch of failures published from Python as `py1` trips both Rust nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_failures_trip_the_rust_fleet() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (nodes, breakers) = fleet(&url, 2, "payments", false).await;

    let args = ["--url", &url, "--breaker", "payments", "--node", "py1", "--failures", "10", "--successes", "2"];
    acked(&run_ok("fusebox_publish.py", &args).await);
    all_in(&breakers, StateLabel::Open).await;
    for n in &nodes {
        assert_eq!(n.transport.stats().rejected_outcomes, 0, "the JSON decoded");
    }
}

// The connection settings the examples read with `ConnectSettings.from_env()`: a token over mutual
// TLS with the test's CA and a client certificate, and the server from `NATS_URL`; without
// the CA the server is not trusted, without the client certificate the server refuses the
// handshake, with a wrong token it refuses the connection, and an unreadable file is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_connects_with_a_token_over_mutual_tls_from_the_environment() {
    let pki = Pki::generate().unwrap();
    let config = format!("{}authorization {{ token: \"py-t0ken\" }}\n", pki.server_tls(true, false));
    let server = NatsServer::start_with(&config).unwrap();
    let url = server.url();
    let mut nats = NatsConfig::new(vec![url.clone()], NodeId::new("n1").unwrap());
    nats.connection.auth = Auth::Token("py-t0ken".into());
    nats.connection.tls = Tls {
        ca: Some(pki.ca.clone()),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
        ..Tls::default()
    };
    // Connecting provisions the outcome stream the publisher needs.
    let _node = NatsTransport::connect(nats).await.unwrap();

    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca, cert, key) = (text(&pki.ca), text(&pki.client_cert), text(&pki.client_key));
    let missing = text(&pki.dir.path().join("missing.pem"));
    let args = ["--breaker", "payments", "--node", "py1", "--failures", "1"];
    let good: [Var; 5] =
        [("NATS_URL", &url), ("NATS_TOKEN", "py-t0ken"), ("NATS_CA", &ca), ("NATS_CERT", &cert), ("NATS_KEY", &key)];
    let mut run = Script::spawn_with("fusebox_publish.py", &args, &good);
    let (status, lines, stderr) = run.exit().await;
    assert!(status.success(), "exited with {status}; stderr:\n{stderr}");
    acked(&lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>());

    // (the environment, the exit code, what stderr says)
    let cases: [(Vec<Var>, i32, &str); 4] = [
        (changed(&good, &[("NATS_CA", None)]), 1, "CERTIFICATE_VERIFY_FAILED"),
        (changed(&good, &[("NATS_TOKEN", Some("guess"))]), 1, "uthorization"),
        (changed(&good, &[("NATS_CERT", None), ("NATS_KEY", None)]), 1, "fusebox_publish: "),
        (changed(&good, &[("NATS_CA", Some(&missing))]), 2, "NATS_CA="),
    ];
    for (env, code, says) in cases {
        let mut run = Script::spawn_with("fusebox_publish.py", &args, &env);
        let (status, _, stderr) = run.exit().await;
        assert_eq!(status.code(), Some(code), "{env:?}: stderr:\n{stderr}");
        assert!(stderr.contains(says), "{env:?}: stderr lacks {says:?}:\n{stderr}");
    }
}

// (b) The follower applies the fleet's decisions as they come: open after a trip, closed after
// a reset; and the publisher reports the decision it follows as `applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_follower_applies_the_fleets_decisions() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (nodes, breakers) = fleet(&url, 2, "payments", false).await;
    let follow = |until: &'static str| {
        let args = ["--url", &url, "--breaker", "payments", "--node", "py1", "--until", until, "--timeout", "15"];
        Script::spawn("fusebox_follow.py", &args)
    };

    let mut open = follow("open");
    let mut taken = 0;
    let first = open.next_json(&mut taken).await;
    assert_eq!((&first["state"], &first["allow"]), (&"closed".into(), &true.into()), "{first}");
    for _ in 0..10 {
        let _ = breakers[1].call(async { Err::<(), _>("boom") }).await;
    }
    let (status, lines, stderr) = open.exit().await;
    assert!(status.success(), "follower --until open exited with {status}; stderr:\n{stderr}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!((&last["state"], &last["allow"], &last["reason"]), (&"open".into(), &false.into(), &"tripped".into()));
    let open_id = (last["term"].as_u64().unwrap(), last["seq"].as_u64().unwrap());
    all_in(&breakers, StateLabel::Open).await;

    let mut closed = follow("closed");
    let mut taken = 0;
    let first = closed.next_json(&mut taken).await;
    assert_eq!(first["state"], "open", "starts from the decision in force: {first}");
    nodes[0].reg.command("payments", CommandKind::Reset, "alice", "python test").await.unwrap();
    let (status, lines, stderr) = closed.exit().await;
    assert!(status.success(), "follower --until closed exited with {status}; stderr:\n{stderr}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!((&last["state"], &last["allow"], &last["reason"]), (&"closed".into(), &true.into(), &"manual".into()));
    assert!((last["term"].as_u64().unwrap(), last["seq"].as_u64().unwrap()) > open_id, "newer: {last}");
    all_in(&breakers, StateLabel::Closed).await;

    // Reported under the decision in force, the failures count and trip the fleet again.
    let payments = BreakerName::new("payments").unwrap();
    let current = nodes[0].transport.decision(&payments).await.unwrap().decision.unwrap();
    let args = ["--url", &url, "--breaker", "payments", "--node", "py1", "--failures", "10", "--follow"];
    let acks = run_ok("fusebox_publish.py", &args).await;
    acked(&acks);
    let applied = &acks[0]["applied"];
    assert_eq!((applied["term"].as_u64(), applied["seq"].as_u64()), (Some(current.id.term.0), Some(current.id.seq)));
    all_in(&breakers, StateLabel::Open).await;
}

// (c), (d) Under the example auth config the foreign user reports as `py1`, and a report as
// any other node is refused with a clear message and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_example_auth_config_python_reports_as_py1_only() {
    let server = NatsServer::start_with(include_str!("../../docs/nats-accounts.conf")).unwrap();
    let url = server.url();
    let (_nodes, breakers) = fleet(&url, 2, "payments", true).await;
    let publish = |node: &'static str| {
        let args = [
            "--url",
            &url,
            "--user",
            "foreign",
            "--password",
            "foreign-secret",
            "--breaker",
            "payments",
            "--node",
            node,
            "--failures",
            "10",
            "--ack-timeout",
            "1",
        ];
        Script::spawn("fusebox_publish.py", &args)
    };

    let (status, lines, stderr) = publish("py1").exit().await;
    assert!(status.success(), "foreign as py1 exited with {status}; stderr:\n{stderr}");
    acked(&lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>());
    all_in(&breakers, StateLabel::Open).await;

    let started = Instant::now();
    let (status, lines, stderr) = publish("other").exit().await;
    assert!(!status.success(), "foreign as other was not refused: {lines:?}");
    assert!(lines.is_empty(), "nothing acked: {lines:?}");
    assert!(
        stderr.contains("refused by the server") && stderr.contains("fusebox.out.payments.other"),
        "the refusal names itself and the subject; stderr:\n{stderr}"
    );
    eprintln!("refused publish reported in {:?}", started.elapsed());
    assert!(server.log().contains("Publish Violation"), "the server logged the violation");
}

// (e) A Python service on its own trips the fleet, reports the calls it holds back while open
// (its demand for probes), is granted the half-open round's probes, and closes the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_trips_is_granted_probes_and_recovers() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (_nodes, breakers) = fleet_with(&url, 2, "payments", false, config_open(500)).await;

    let args = ["--url", &url, "--breaker", "payments", "--node", "py1", "--timeout", "15"];
    let (status, lines, stderr) = Script::spawn("fusebox_demo.py", &args).exit().await;
    assert!(status.success(), "demo exited with {status}; stdout: {lines:?}; stderr:\n{stderr}");
    let decisions: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let labels: Vec<&str> = decisions.iter().map(|d| d["state"].as_str().unwrap()).collect();
    let open = labels.iter().position(|s| *s == "open").unwrap_or_else(|| panic!("never open: {labels:?}"));
    let half = decisions[open..].iter().find(|d| d["state"] == "half_open").expect("a half-open round");
    assert_eq!(half["grants"]["py1"], 2, "the whole budget to the only node that asked: {half}");
    assert_eq!(decisions.last().unwrap()["reason"], "probes_succeeded", "{decisions:?}");
    all_in(&breakers, StateLabel::Closed).await;
}
