//! The `fusebox` binary against a real nats-server started by each test, with a real Fusebox
//! node in the test process deciding `payments` over `NatsTransport`: status, publishing
//! outcomes that trip the breaker, history with the trip's evidence, operator commands the
//! node applies, watch, and the errors an operator meets (unknown breaker, no fleet,
//! unreachable server, permissions under the example auth config). Waits are polls against
//! deadlines.
//!
//! The test command installs the pinned nats-server and points `FUSEBOX_NATS_SERVER` at it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::{config, lines};

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use breaker_actors::Registry;
use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerName, NodeId, StateLabel};
use fusebox_testkit::servers::NatsServer;
use serde_json::Value;
use transport_nats::nats::{Auth, NatsConfig, NatsTransport};

const BIN: &str = env!("CARGO_BIN_EXE_fusebox");
const WAIT: Duration = Duration::from_secs(10);
const ACCOUNTS: &str = include_str!("../../docs/nats-accounts.conf");
/// The operator of `docs/nats-accounts.conf`, as the CLI connects.
const OPERATOR: [&str; 8] = [
    "--user",
    "operator",
    "--password",
    "operator-secret",
    "--js-api-prefix",
    "$JS.fusebox.API",
    "--inbox-prefix",
    "_INBOX_fusebox_ops",
];

fn payments() -> BreakerName {
    BreakerName::new("payments").unwrap()
}

/// One node, `n1`, deciding `payments` on `server`.
struct Fleet {
    server: NatsServer,
    breaker: Breaker,
    registry: Registry,
    transport: Arc<NatsTransport>,
}

impl Fleet {
    async fn start(server: NatsServer, credentials: Option<(&str, &str)>) -> Self {
        let mut nats = NatsConfig::new(vec![server.url()], NodeId::new("n1").unwrap());
        if let Some((user, password)) = credentials {
            nats.connection.auth = Auth::user_password(user, password);
        }
        let transport: Arc<NatsTransport> = NatsTransport::connect(nats).await.unwrap();
        let registry = Registry::builder()
            .transport(transport.clone())
            .lease_ttl(Duration::from_secs(2))
            .lease_margin(Duration::from_millis(500))
            .start()
            .await
            .unwrap();
        let breaker = registry.breaker("payments", config()).await.unwrap();
        // The CLI reads the bucket: wait for the decider's first decision there.
        let deadline = Instant::now() + WAIT;
        while transport.decision(&payments()).await.ok().and_then(|r| r.decision).is_none() {
            assert!(Instant::now() < deadline, "no decision for payments");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { server, breaker, registry, transport }
    }

    async fn plain() -> Self {
        Self::start(NatsServer::start().unwrap(), None).await
    }

    /// Runs `fusebox --server <url> args...`.
    async fn cli(&self, args: &[&str]) -> Run {
        let mut all = vec!["--server".to_owned(), self.server.url()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(all).await
    }

    async fn wait_for(&self, state: StateLabel) {
        let deadline = Instant::now() + WAIT;
        while self.breaker.state() != state {
            assert!(Instant::now() < deadline, "the node's breaker is {:?}, not {state:?}", self.breaker.state());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "fusebox failed: {self:#?}");
        self
    }

    fn failed(self, message: &str) -> Self {
        assert_eq!(self.code, Some(1), "fusebox did not fail as expected: {self:#?}");
        assert!(self.stderr.contains(message), "stderr lacks {message:?}: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

fn command(args: &[String]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    // The caller's environment must not point the CLI elsewhere.
    for var in [
        "FUSEBOX_NATS_URL",
        "FUSEBOX_NATS_USER",
        "FUSEBOX_NATS_PASSWORD",
        "FUSEBOX_NATS_TOKEN",
        "NATS_URL",
        "NATS_CONTEXT",
    ] {
        command.env_remove(var);
    }
    // Nor a nats CLI context of the caller's.
    command.env("XDG_CONFIG_HOME", std::env::temp_dir().join("fusebox-cli-test-no-config"));
    command
}

async fn run(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command(&args).stdin(Stdio::null()).output().unwrap();
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            took: started.elapsed(),
        }
    })
    .await
    .unwrap()
}

/// `args` after the operator's credentials and prefixes.
fn operator<'a>(args: &[&'a str]) -> Vec<&'a str> {
    OPERATOR.iter().chain(args).copied().collect()
}

/// The object of `breaker` in `status --json`.
fn row<'a>(status: &'a Value, breaker: &str) -> &'a Value {
    let rows = status.as_array().unwrap();
    rows.iter().find(|r| r["breaker"] == breaker).unwrap_or_else(|| panic!("no {breaker} in {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_breaker_closed_with_its_decider() {
    let fleet = Fleet::plain().await;
    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    let payments = row(&status, "payments");
    assert_eq!(payments["state"], "closed", "{payments:#}");
    assert_eq!(payments["decider"], "n1");
    assert_eq!(payments["configured"], true);
    assert!(payments["term"].as_u64().is_some_and(|t| t > 0), "{payments:#}");
    assert!(payments["seq"].as_u64().is_some_and(|s| s > 0), "{payments:#}");
    assert!(payments["age_ms"].as_u64().is_some(), "{payments:#}");
    assert_eq!(payments["decision"]["breaker"], "payments");

    let table = fleet.cli(&["status"]).await.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("BREAKER") && lines[0].contains("REASON"), "{table:#?}");
    assert!(lines.iter().any(|l| l.starts_with("payments") && l.contains("closed") && l.contains("n1")), "{table:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_failures_trip_the_breaker_and_history_shows_the_evidence() {
    let fleet = Fleet::plain().await;
    let published = fleet.cli(&["publish", "payments", "--failures", "10"]).await.ok();
    assert!(published.stdout.contains("published 10 failures on fusebox.out.payments.cli"), "{published:#?}");
    fleet.wait_for(StateLabel::Open).await;

    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    let payments = row(&status, "payments");
    assert_eq!((&payments["state"], &payments["reason_kind"]), (&"open".into(), &"tripped".into()), "{payments:#}");
    assert_eq!(payments["reason"], "tripped: failure_rate 10/10 from 1 node");
    let table = fleet.cli(&["status"]).await.ok();
    assert!(table.stdout.contains("tripped: failure_rate 10/10 from 1 node"), "{table:#?}");

    let history = fleet.cli(&["history", "payments", "--json"]).await.ok().json();
    let rows = history.as_array().unwrap();
    assert!(rows.len() >= 2, "the first decision and the trip: {history:#}");
    let trip = rows.last().unwrap();
    assert_eq!((&trip["state"], &trip["operation"]), (&"open".into(), &"put".into()), "{history:#}");
    let evidence = &trip["evidence"];
    assert_eq!(evidence["rule"], "failure_rate");
    assert_eq!((evidence["decisive"].as_u64(), evidence["failed"].as_u64()), (Some(10), Some(10)), "{trip:#}");
    assert_eq!((evidence["slow"].as_u64(), evidence["nodes"].as_u64()), (Some(0), Some(1)), "{trip:#}");
    assert_eq!(evidence["rate"].as_f64(), Some(1.0));
    let top = &evidence["top"][0];
    assert_eq!((&top["node"], top["failed"].as_u64()), (&"cli".into(), Some(10)), "{trip:#}");
    assert!(rows.windows(2).all(|w| w[0]["revision"].as_u64() < w[1]["revision"].as_u64()), "oldest first");

    let table = fleet.cli(&["history", "payments"]).await.ok();
    assert!(table.stdout.starts_with("REV"), "{table:#?}");
    assert!(
        table.stdout.contains("tripped: failure_rate (decisive 10, failed 10, slow 0, rate 100.0%, nodes 1)"),
        "{table:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_open_is_applied_by_the_node_and_reset_closes() {
    let fleet = Fleet::plain().await;
    let forced = fleet.cli(&["force-open", "payments", "--reason", "INC-42", "--actor", "alice"]).await.ok();
    assert!(forced.stdout.starts_with("applied: "), "{forced:#?}");
    assert!(forced.stdout.contains("forced-open") && forced.stdout.contains("by n1"), "{forced:#?}");
    assert!(forced.stdout.contains("manual force_open by alice: INC-42"), "{forced:#?}");
    assert!(forced.stderr.contains("published force_open for payments (FUSEBOX_CONTROL seq"), "{forced:#?}");
    fleet.wait_for(StateLabel::ForcedOpen).await;

    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    assert_eq!(row(&status, "payments")["reason"], "manual force_open by alice: INC-42");

    let reset = fleet.cli(&["reset", "payments", "--reason", "INC-42 resolved", "--actor", "alice"]).await.ok();
    assert!(
        reset.stdout.contains("closed") && reset.stdout.contains("manual reset by alice: INC-42 resolved"),
        "{reset:#?}"
    );
    fleet.wait_for(StateLabel::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_decision_a_command_makes_until_its_count_or_ctrl_c() {
    let fleet = Fleet::plain().await;
    let (one, one_out) = watcher(&fleet, &["watch", "payments", "--count", "1", "--timeout", "10s"], "payments");
    let (all, all_out) = watcher(&fleet, &["watch", "--json"], ">");

    fleet.cli(&["disable", "payments", "--reason", "load test", "--actor", "bob"]).await.ok();
    let line = one_out.recv_timeout(WAIT).expect("watch printed nothing");
    assert!(line.contains("payments  disabled") && line.contains("manual disable by bob: load test"), "{line}");
    let json: Value = serde_json::from_str(&all_out.recv_timeout(WAIT).expect("watch --json printed nothing")).unwrap();
    assert_eq!(
        (&json["breaker"], &json["state"], &json["reason_kind"]),
        (&"payments".into(), &"disabled".into(), &"manual".into())
    );
    fleet.wait_for(StateLabel::Disabled).await;

    // The first exits after its one decision; the other runs until Ctrl-C.
    assert_eq!(tokio::task::spawn_blocking(move || finish(one)).await.unwrap(), Some(0));
    let interrupted = Command::new("kill").args(["-INT", &all.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    assert_eq!(tokio::task::spawn_blocking(move || finish(all)).await.unwrap(), Some(0));
    assert!(one_out.try_recv().is_err() && all_out.try_recv().is_err(), "one decision, one line");
}

/// `fusebox watch ...` running, once it has said (on stderr) that it is subscribed: every
/// decision after that shows. Returns it and its stdout lines.
fn watcher(fleet: &Fleet, args: &[&str], key: &str) -> (Child, mpsc::Receiver<String>) {
    let mut all = vec!["--server".to_owned(), fleet.server.url()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let mut child = command(&all).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let said = lines(child.stderr.take().unwrap()).recv_timeout(WAIT).expect("the watcher never said it was watching");
    assert!(said.starts_with(&format!("watching fusebox_state/{key} ")), "{said:?}");
    let stdout = lines(child.stdout.take().unwrap());
    (child, stdout)
}

/// Waits for `child` to exit (killing it after [`WAIT`]) and returns its exit code.
fn finish(mut child: Child) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            return child.wait().unwrap().code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_breakers_missing_fleets_and_unapplied_commands_are_reported() {
    let fleet = Fleet::plain().await;
    let unknown = r#"unknown breaker "refunds" (no config or decision under prefix fusebox)"#;
    fleet.cli(&["history", "refunds"]).await.failed(unknown);
    fleet.cli(&["force-open", "refunds", "--reason", "x"]).await.failed(unknown);
    fleet
        .cli(&["--prefix", "acme", "status"])
        .await
        .failed("no Fusebox fleet under prefix acme: bucket acme_state not found");
    // A bad name is a usage error, found before connecting.
    let bad = fleet.cli(&["history", "pay.ments"]).await;
    assert_eq!(bad.code, Some(2), "{bad:#?}");

    // With no node running, the control stream stores a command that nobody applies.
    let Fleet { server, registry, .. } = fleet;
    registry.shutdown().await.unwrap();
    let url = server.url();
    let args = ["--server", &url, "--timeout", "500ms", "force-open", "payments", "--reason", "x"];
    run(args.map(str::to_owned).to_vec()).await.failed(
        r#"force_open for "payments" published but not applied within 0.5 s — is any node deciding this breaker?"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_fast() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let failed = run(vec!["--server".into(), url.clone(), "status".into()]).await;
    let failed = failed.failed(&format!("cannot reach NATS at {url}: "));
    assert!(failed.took < Duration::from_secs(3), "took {:?}", failed.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_example_auth_config_an_operator_reads_and_commands_but_may_not_report() {
    let server = NatsServer::start_with(ACCOUNTS).unwrap();
    let fleet = Fleet::start(server, Some(("node-n1", "n1-secret"))).await;

    let status = fleet.cli(&operator(&["status", "--json"])).await.ok().json();
    assert_eq!(row(&status, "payments")["decider"], "n1");
    // The decider answers an operator's describe through the service import.
    let described = fleet.cli(&operator(&["describe", "payments", "--json"])).await.ok().json();
    assert_eq!(described["decider"]["node"], "n1", "{described:#}");
    assert_eq!(described["lease"]["holder"], "n1", "{described:#}");
    let forced = fleet.cli(&operator(&["force-open", "payments", "--reason", "INC-7", "--actor", "ops"])).await.ok();
    assert!(forced.stdout.contains("manual force_open by ops: INC-7"), "{forced:#?}");
    fleet.wait_for(StateLabel::ForcedOpen).await;

    // Refused at once (the server's violation), not after the request timeout.
    let refused = fleet.cli(&operator(&["publish", "payments", "--failures", "1"])).await;
    let refused = refused.failed("permission denied: publishing outcomes on fusebox.out.payments.cli: ");
    assert!(
        refused.stderr.contains(r#"Permissions Violation for Publish to "fusebox.out.payments.cli""#),
        "{refused:#?}"
    );
    assert!(refused.took < Duration::from_secs(3), "took {:?}", refused.took);
    // Without the operator's prefixes the fleet's API is out of reach, and the error says so.
    let lost = fleet.cli(&["--user", "operator", "--password", "operator-secret", "status"]).await;
    let lost = lost.failed("permission denied: ");
    assert!(lost.stderr.contains("--js-api-prefix '$JS.fusebox.API' --inbox-prefix _INBOX_fusebox_ops"), "{lost:#?}");
    // Wrong or no credentials.
    let wrong = fleet.cli(&["--user", "operator", "--password", "guess", "status"]).await;
    wrong.failed(&format!("NATS at {} refused the credentials: ", fleet.server.url()));
    fleet.cli(&["status"]).await.failed("(no --user, --creds, --nkey or --token given)");
    // A foreign publisher reports under its own id, and only under it.
    let foreign = ["--user", "foreign", "--password", "foreign-secret", "publish", "payments", "--successes", "1"];
    fleet.cli(&[&foreign[..], &["--node", "py1"]].concat()).await.ok();
    let posing =
        fleet.cli(&foreign).await.failed("permission denied: publishing outcomes on fusebox.out.payments.cli: ");
    assert!(!posing.stderr.contains("--js-api-prefix"), "no operator hint for an outcome: {posing:#?}");
}

/// A raw `JetStream` context on the fleet's server, as anyone with direct bucket access has.
async fn raw_js(fleet: &Fleet) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(fleet.server.url()).await.unwrap())
}

// A forged, well-formed decision of term 10^12 forcing the breaker open: every node applies
// it and rejects every call. `status` flags it; `repair` writes an audited restatement
// above it, and the node decides and follows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_recovers_a_breaker_wedged_by_a_forged_decision() {
    let fleet = Fleet::plain().await;
    let clean = fleet.cli(&["status", "--json"]).await.ok().json();
    assert_eq!(row(&clean, "payments")["problem"], Value::Null, "{clean:#}");
    fleet.cli(&["repair", "payments", "--reason", "nothing wrong"]).await.ok();

    let js = raw_js(&fleet).await;
    let state = js.get_key_value("fusebox_state").await.unwrap();
    let entry = state.entry("payments").await.unwrap().unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    forged["id"] = serde_json::json!({ "term": 1_000_000_000_000_u64, "seq": 1 });
    forged["phase"] = forged["id"].clone();
    forged["state"] = serde_json::json!({ "state": "forced_open" });
    forged["clock"] = serde_json::json!({ "term": 1_000_000_000_000_u64, "entries": [] });
    state.update("payments", serde_json::to_vec(&forged).unwrap().into(), entry.revision).await.unwrap();
    fleet.wait_for(StateLabel::ForcedOpen).await;

    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    let problem = row(&status, "payments")["problem"].as_str().unwrap_or_default().to_owned();
    // Flagged whether or not the node has already taken a term above it (the record notes it).
    assert!(problem.contains("lease had"), "status flags the forged term: {status:#}");
    let table = fleet.cli(&["status"]).await.ok();
    assert!(table.stdout.contains("NEEDS REPAIR"), "{table:#?}");

    let repaired =
        fleet.cli(&["repair", "payments", "--reason", "INC-7 forged decision", "--actor", "alice"]).await.ok();
    assert!(repaired.stdout.contains("found: "), "{repaired:#?}");
    assert!(repaired.stdout.contains("wrote: term record"), "{repaired:#?}");
    assert!(repaired.stdout.contains("repaired: "), "a decider took over: {repaired:#?}");
    fleet.wait_for(StateLabel::Closed).await;
    let history = fleet.cli(&["history", "payments", "--json"]).await.ok().json();
    let audited = history.as_array().unwrap().iter().any(|d| {
        d["reason"] == "manual reset by alice: repair: INC-7 forged decision" && d["decider"] == "fusebox-repair"
    });
    assert!(audited, "the restatement is in the history with its actor and reason: {history:#}");
    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    assert_eq!(row(&status, "payments")["problem"], Value::Null, "{status:#}");

    // A working fleet: the node decides again, and follows its own trip.
    fleet.cli(&["publish", "payments", "--failures", "10"]).await.ok();
    fleet.wait_for(StateLabel::Open).await;
    let term = row(&fleet.cli(&["status", "--json"]).await.ok().json(), "payments")["term"].as_u64().unwrap();
    assert!(term > 1_000_000_000_000, "decided above the forged term: {term}");
}

// A garbage lease value without a TTL: `status` flags it and `repair` deletes it (nodes
// would also replace it after one TTL on their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_flags_a_garbage_lease_value_and_repair_deletes_it() {
    let fleet = Fleet::plain().await;
    let shard = fleet.registry.shard_of(&payments());
    let js = raw_js(&fleet).await;
    let leases = js.get_key_value("fusebox_leases").await.unwrap();
    leases.put(shard.to_string(), "\u{1}garbage".into()).await.unwrap();
    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    let problem = row(&status, "payments")["problem"].as_str().unwrap_or_default().to_owned();
    assert!(problem.contains("lease value at revision") && problem.contains("does not decode"), "{status:#}");
    let repaired = fleet.cli(&["repair", "payments", "--reason", "garbage lease"]).await.ok();
    assert!(repaired.stdout.contains("repaired: "), "{repaired:#?}");
    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    assert_eq!(row(&status, "payments")["problem"], Value::Null, "{status:#}");
}

/// `config show`, `config diff` and `config set` against a real node: the set writes the
/// next version as an operator's, the node's decider switches and records it, and the node
/// runs on it (`docs/tuning.md`). A bad file is a usage error before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_diff_and_set_reach_the_node() {
    let fleet = Fleet::plain().await;
    let shown = fleet.cli(&["config", "show", "payments", "--json"]).await.ok().json();
    assert_eq!(shown["config"]["version"], 1, "{shown:#}");
    assert_eq!(shown["source"]["kind"], "deployed");
    assert_eq!(shown["source"]["node"], "n1");

    let dir = std::env::temp_dir().join(format!("fusebox-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payments.json");
    let mut wanted = serde_json::to_value(config()).unwrap();
    wanted["quorum"] = serde_json::json!(1);
    wanted["trip"]["failure_rate"] = serde_json::json!(0.8);
    std::fs::write(&file, wanted.to_string()).unwrap();
    let path = file.to_str().unwrap();

    let diff = fleet.cli(&["config", "diff", "payments", "--file", path]).await.ok();
    assert_eq!(diff.stdout.trim(), "trip.failure_rate: 0.5 -> 0.8", "{diff:#?}");

    let set = fleet
        .cli(&["config", "set", "payments", "--file", path, "--actor", "alice", "--reason", "INC-7: trip later"])
        .await
        .ok();
    assert!(set.stdout.contains("applied:") && set.stdout.contains("config version 1 -> 2"), "{set:#?}");
    let on_node = fleet.registry.config_of(&payments()).unwrap();
    assert_eq!((on_node.version, on_node.trip.failure_rate), (2, Some(0.8)));
    let shown = fleet.cli(&["config", "show", "payments", "--json"]).await.ok().json();
    assert_eq!(shown["config"]["version"], 2);
    assert_eq!(
        shown["source"],
        serde_json::json!({"kind": "operator", "actor": "alice", "reason": "INC-7: trip later"})
    );
    let trail = fleet.cli(&["config", "show", "payments", "--history"]).await.ok();
    let lines: Vec<&str> = trail.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{trail:#?}");
    assert!(lines[0].contains("version 1 deployed by node n1"), "{trail:#?}");
    assert!(lines[1].contains("version 2 set by alice: INC-7: trip later"), "{trail:#?}");
    let history = fleet.cli(&["history", "payments", "--json"]).await.ok().json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason_kind"], "reconfigured", "{last:#}");
    assert_eq!(last["decision"]["config_version"], 2, "{last:#}");

    std::fs::write(&file, r#"{"quorum": 0}"#).unwrap();
    let bad = fleet.cli(&["config", "set", "payments", "--file", path, "--reason", "x"]).await;
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(bad.stderr.contains("quorum"), "{bad:#?}");
    assert_eq!(fleet.cli(&["config", "show", "payments", "--json"]).await.ok().json()["config"]["version"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_print_a_script_naming_every_subcommand() {
    // No server: completions need no fleet.
    let bash = run(vec!["completions".into(), "bash".into()]).await.ok();
    assert!(bash.stdout.contains("complete -F _fusebox"), "a bash completion script: {bash:#?}");
    for subcommand in ["status", "history", "watch", "force-open", "describe", "repair", "completions"] {
        assert!(bash.stdout.contains(subcommand), "the script lacks {subcommand}");
    }
    let zsh = run(vec!["completions".into(), "zsh".into()]).await.ok();
    assert!(zsh.stdout.starts_with("#compdef fusebox"), "{zsh:#?}");
    let bad = run(vec!["completions".into(), "tcsh".into()]).await;
    assert_eq!(bad.code, Some(2), "an unknown shell is a usage error: {bad:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_boxed_force_open_returns_to_automatic_control_and_history_shows_both_steps() {
    let fleet = Fleet::plain().await;
    let args = ["force-open", "payments", "--for", "2s", "--reason", "deploy", "--actor", "alice"];
    let forced = fleet.cli(&args).await.ok();
    assert!(forced.stdout.contains("forced-open (for 2s)"), "{forced:#?}");
    assert!(forced.stdout.contains("manual force_open by alice: deploy"), "{forced:#?}");
    let status = fleet.cli(&["status", "--json"]).await.ok().json();
    assert_eq!(row(&status, "payments")["state"], "forced_open", "{status:#}");

    // Automatic again once the decider's clock passes the two seconds.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = fleet.cli(&["status", "--json"]).await.ok().json();
        let payments = row(&status, "payments");
        if payments["reason_kind"] == "override_expired" {
            assert_eq!(payments["state"], "closed", "{payments:#}");
            assert_eq!(payments["reason"], "override expired: force_open after 2s, automatic again");
            break;
        }
        assert_eq!(payments["state"], "forced_open", "forced open until it expires: {payments:#}");
        assert!(Instant::now() < deadline, "the override never expired: {payments:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.wait_for(StateLabel::Closed).await;

    let history = fleet.cli(&["history", "payments", "--json"]).await.ok().json();
    let rows = history.as_array().unwrap();
    let forced = rows.iter().position(|r| r["reason_kind"] == "manual" && r["expires_after_ms"] == 2_000);
    let expired = rows.iter().position(|r| r["reason_kind"] == "override_expired");
    assert!(forced.is_some() && forced < expired, "both steps, in order: {history:#}");
    let expired = &rows[expired.unwrap()];
    assert_eq!((&expired["state"], &expired["decider"]), (&"closed".into(), &"n1".into()), "{expired:#}");
    assert_eq!(
        expired["decision"]["reason"],
        serde_json::json!({ "kind": "override_expired", "command": "force_open", "after_ms": 2000 })
    );
    // A time box too long is a usage error, found before connecting.
    let week = fleet.cli(&["disable", "payments", "--for", "8d", "--reason", "x"]).await;
    assert_eq!(week.code, Some(2), "{week:#?}");
    assert!(week.stderr.contains("longer than the maximum"), "{week:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_config_lease_decision_and_the_deciders_window() {
    let fleet = Fleet::plain().await;
    // Below the trip rule's minimum of 10 calls: evidence, not a trip.
    fleet.cli(&["publish", "payments", "--failures", "3", "--successes", "2", "--node", "py1"]).await.ok();
    let deadline = Instant::now() + WAIT;
    let described = loop {
        let described = fleet.cli(&["describe", "payments", "--json"]).await.ok().json();
        if described["decider"]["window"]["calls"] == 5 {
            break described;
        }
        assert!(Instant::now() < deadline, "the decider never showed the 5 calls: {described:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let decider = &described["decider"];
    assert_eq!((&decider["node"], &decider["window"]["failures"]), (&"n1".into(), &3.into()), "{described:#}");
    assert_eq!(decider["window"]["slow"], 0);
    assert_eq!(decider["contributions"], serde_json::json!([{ "node": "py1", "failed": 3, "slow": 0 }]));
    assert_eq!(decider["state"]["state"], "closed");
    assert_eq!(decider["config"]["trip"]["minimum_calls"], 10, "the node's config: {described:#}");
    let term = &described["decision"]["term"];
    assert_eq!((&described["lease"]["holder"], &described["lease"]["term"]), (&"n1".into(), term), "{described:#}");
    assert_eq!(decider["term"], *term);
    assert_eq!(decider["last_decided"]["seq"], described["decision"]["seq"], "{described:#}");
    assert_eq!(described["config"]["trip"]["minimum_calls"], 10, "the config bucket's: {described:#}");
    assert_eq!(described["decider_error"], Value::Null);

    let text = fleet.cli(&["describe", "payments"]).await.ok();
    for line in
        ["held by n1, term", "window    5 calls, 3 failed, 0 slow", "py1: 3 failed, 0 slow", "\"minimum_calls\": 10"]
    {
        assert!(text.stdout.contains(line), "lacks {line:?}: {text:#?}");
    }

    // A request that is not one gets no answer and is counted; the node goes on answering.
    let client = async_nats::connect(fleet.server.url()).await.unwrap();
    let request = async_nats::Request::new().payload("not json".into()).timeout(Some(Duration::from_millis(500)));
    let garbage = client.send_request("fusebox.describe.payments", request).await;
    // Timed out, not "no responders": the node listens, and says nothing.
    let kind = garbage.map(|m| m.payload).map_err(|e| e.kind());
    assert_eq!(kind, Err(async_nats::RequestErrorKind::TimedOut));
    let deadline = Instant::now() + WAIT;
    while fleet.transport.stats().rejected_describes == 0 {
        assert!(Instant::now() < deadline, "the bad request was not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.cli(&["describe", "payments"]).await.ok();
    let unknown = fleet.cli(&["describe", "refunds"]).await;
    unknown.failed(r#"unknown breaker "refunds""#);

    // Nobody decides: the rest is still shown.
    let Fleet { server, registry, .. } = fleet;
    registry.shutdown().await.unwrap();
    let url = server.url();
    let quiet = run(["--server", &url, "--timeout", "500ms", "describe", "payments"].map(str::to_owned).to_vec()).await;
    let quiet = quiet.ok();
    assert!(quiet.stdout.contains("decider   no decider answered within 0.5 s"), "{quiet:#?}");
    assert!(quiet.stdout.contains("decision  ") && quiet.stdout.contains("config    {"), "{quiet:#?}");
}
