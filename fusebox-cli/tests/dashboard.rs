//! `fusebox dashboard` in a real browser: a real nats-server, a node in this process deciding
//! two breakers over `NatsTransport`, the dashboard as the real binary, and Debian's headless
//! Chromium driven over the `DevTools` protocol (on a pipe: `--remote-debugging-pipe`, fds 3
//! and 4). The page must show a trip within 1 s of the node's decision, with its decider,
//! evidence and an operator's override, and a breaker's page its history; bad paths are
//! answered 400/404. A screenshot goes to `$CARGO_TARGET_TMPDIR/dashboard.png` (and to
//! `$FUSEBOX_SCREENSHOT` if set: how `docs/dashboard.png` is made).
//!
//! The test command installs chromium (`scripts/install-tools.sh`); without it this test
//! fails, naming what is missing. Every wait is a poll against a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::{config, lines};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use breaker_actors::Registry;
use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerName, NodeId, StateLabel};
use fusebox_testkit::servers::NatsServer;
use serde_json::{Value, json};
use transport_nats::nats::{NatsConfig, NatsTransport};

const BIN: &str = env!("CARGO_BIN_EXE_fusebox");
const WAIT: Duration = Duration::from_secs(15);
/// The issue's bound: the page shows a decision within this long of it being made.
const LIVE: Duration = Duration::from_secs(1);
/// How often the DOM is read.
const POLL: Duration = Duration::from_millis(20);

/// A child process killed (and reaped) by PID when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The chromium binary: `$FUSEBOX_CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    let path = std::env::var_os("FUSEBOX_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no chromium at {} (set FUSEBOX_CHROMIUM, or run scripts/install-tools.sh as root: it runs \
         `apt-get install chromium`): the dashboard's browser test cannot run without it",
        path.display()
    );
    path
}

/// Starts `fusebox --server <url> dashboard --listen 127.0.0.1:0` and reads the address it
/// prints once it listens.
fn dashboard(url: &str) -> (Killed, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--server", url, "dashboard", "--listen", "127.0.0.1:0"])
        .env_remove("NATS_URL")
        .env_remove("NATS_CONTEXT")
        .env_remove("FUSEBOX_NATS_URL")
        .env("XDG_CONFIG_HOME", std::env::temp_dir().join("fusebox-cli-test-no-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let child = Killed(child);
    let line = out.recv_timeout(WAIT).expect("the dashboard printed no address");
    let addr = line.strip_prefix("dashboard: http://").unwrap_or_else(|| panic!("not an address line: {line:?}"));
    (child, addr.parse().unwrap())
}

/// A plain HTTP/1.1 GET: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or_else(String::new, |(_, body)| body.to_owned());
    (status, body)
}

/// Headless Chromium and one page of it, over the `DevTools` protocol on a pipe.
struct Browser {
    input: ChildStdin,
    output: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    // Dropped last: the process dies after its pipe is closed.
    _process: Killed,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    fn launch(url: &str) -> Self {
        let program = chromium();
        let profile = std::env::temp_dir().join(format!("fusebox-dashboard-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(profile.join("chromium.log")).unwrap();
        // Chromium speaks the protocol on fds 3 and 4: the shell moves our pipes there and
        // execs it (Debian's wrapper execs the real binary), so the PID is the browser's.
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1360,520",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let input = process.stdin.take().unwrap();
        let mut from = process.stdout.take().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(value) = serde_json::from_slice(&message[..end]) else { continue };
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut browser =
            Self { input, output, next_id: 0, session: String::new(), _process: Killed(process), profile };
        let target = browser.call(false, "Target.createTarget", &json!({ "url": url }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(false, "Target.attachToTarget", &json!({ "targetId": target, "flatten": true }));
        attached["sessionId"].as_str().unwrap().clone_into(&mut browser.session);
        browser
    }

    /// Sends `method` (to the page if `page`, else to the browser) and waits for its answer.
    fn call(&mut self, page: bool, method: &str, params: &Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params.clone() });
        if page {
            message["sessionId"] = Value::String(self.session.clone());
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        self.input.flush().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.output.recv_timeout(left).unwrap_or_else(|_| {
                let log = std::fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default();
                panic!("chromium did not answer {method} within {WAIT:?}; its log:\n{log}")
            });
            if answer["id"].as_u64() == Some(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(true, "Runtime.evaluate", &json!({ "expression": expression, "returnByValue": true }));
        result["result"]["value"].clone()
    }

    /// Reads `expression` every [`POLL`] until `until` holds of it: when it first did, and
    /// the value.
    fn poll(&mut self, expression: &str, until: impl Fn(&Value) -> bool, what: &str) -> (Instant, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(expression);
            if until(&value) {
                return (Instant::now(), value);
            }
            assert!(Instant::now() < deadline, "the page never showed {what}; last: {value}");
            std::thread::sleep(POLL);
        }
    }

    fn screenshot(&mut self, to: &Path) {
        let shot = self.call(true, "Page.captureScreenshot", &json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, &png).unwrap();
        println!("screenshot: {}", to.display());
    }
}

/// What the row of `breaker` holds: its `data-state` and its text.
fn row(breaker: &str) -> String {
    format!(
        "(() => {{ const r = document.querySelector('tr[data-breaker=\"{breaker}\"]'); \
         return r ? {{ state: r.dataset.state, text: r.innerText }} : null; }})()"
    )
}

/// When `breaker` turns `state` on the node, polled every millisecond on a thread: the
/// decision's instant as the node lives it.
fn turns(breaker: Breaker, state: StateLabel) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        while breaker.state() != state && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if breaker.state() == state {
            let _ = tx.send(Instant::now());
        }
    });
    rx
}

#[test]
fn the_page_shows_a_trip_within_a_second_of_the_decision_and_a_breakers_history() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let (registry, payments, refunds) = runtime.block_on(async {
        let nats = NatsConfig::new(vec![url.clone()], NodeId::new("n1").unwrap());
        let transport: std::sync::Arc<NatsTransport> = NatsTransport::connect(nats).await.unwrap();
        let registry = Registry::builder()
            .transport(transport.clone())
            .lease_ttl(Duration::from_secs(2))
            .lease_margin(Duration::from_millis(500))
            .start()
            .await
            .unwrap();
        let payments = registry.breaker("payments", config()).await.unwrap();
        let refunds = registry.breaker("refunds", config()).await.unwrap();
        let deadline = Instant::now() + WAIT;
        for name in ["payments", "refunds"] {
            let name = BreakerName::new(name).unwrap();
            while transport.decision(&name).await.ok().and_then(|r| r.decision).is_none() {
                assert!(Instant::now() < deadline, "no decision for {name}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (registry, payments, refunds)
    });
    let (_dashboard, addr) = dashboard(&url);

    let mut browser = Browser::launch(&format!("http://{addr}/"));
    browser.poll(&row("payments"), |r| r["state"] == "closed", "payments closed");
    browser.poll("document.getElementById('feed').dataset.feed", |f| f == "live", "the feed live");

    // An operator's time-boxed override shows with its actor, reason and expiry.
    let forced = Command::new(BIN)
        .args([
            "--server",
            &url,
            "force-open",
            "refunds",
            "--reason",
            "INC-7 drill",
            "--actor",
            "alice",
            "--for",
            "30m",
        ])
        .env("XDG_CONFIG_HOME", std::env::temp_dir().join("fusebox-cli-test-no-config"))
        .output()
        .unwrap();
    assert!(forced.status.success(), "force-open: {}", String::from_utf8_lossy(&forced.stderr));
    // The CLI returns once the decision is in the bucket; the decider's hot path takes it on
    // the write's acknowledgement, which may come a moment later.
    let deadline = Instant::now() + WAIT;
    while refunds.state() != StateLabel::ForcedOpen {
        assert!(Instant::now() < deadline, "the node never applied force-open: {:?}", refunds.state());
        std::thread::sleep(POLL);
    }
    let (_, shown) = browser.poll(&row("refunds"), |r| r["state"] == "forced_open", "refunds forced open");
    let text = shown["text"].as_str().unwrap();
    for part in ["force_open by alice", "INC-7 drill", "ends in"] {
        assert!(text.contains(part), "the override lacks {part:?}: {text}");
    }

    // The trip: failed calls on the node until it decides open.
    let decided = turns(payments.clone(), StateLabel::Open);
    for _ in 0..10 {
        payments.try_acquire().unwrap().failure();
    }
    let (seen, shown) = browser.poll(&row("payments"), |r| r["state"] == "open", "payments open");
    let decided = decided.recv_timeout(WAIT).expect("the node never turned payments open");
    let lag = seen.saturating_duration_since(decided);
    println!("the page showed the trip {lag:?} after the node's decision");
    assert!(lag <= LIVE, "the page showed the trip {lag:?} after the decision, more than {LIVE:?}");
    let text = shown["text"].as_str().unwrap();
    for part in ["n1", "tripped: failure_rate", "failure_rate 100.0% of 10 from 1 node", "top: n1 (10 failed)"] {
        assert!(text.contains(part), "the trip's row lacks {part:?}: {text}");
    }
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot);
    if let Some(docs) = std::env::var_os("FUSEBOX_SCREENSHOT") {
        browser.screenshot(Path::new(&docs));
    }

    // A breaker's page shows its history, newest first: the trip and what came before.
    browser.call(true, "Page.navigate", &json!({ "url": format!("http://{addr}/breaker/payments") }));
    let history = "Array.from(document.querySelectorAll('#history tbody tr')).map(r => r.innerText)";
    let (_, rows) = browser.poll(history, |rows| rows.as_array().is_some_and(|r| r.len() >= 2), "the history");
    let rows: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(rows[0].contains("open") && rows[0].contains("tripped: failure_rate"), "{rows:#?}");
    assert!(rows[1..].iter().any(|r| r.contains("closed")), "{rows:#?}");
    assert!(browser.eval(&row("refunds")).is_null(), "a breaker's page shows only that breaker");

    // Bad paths are refused, never a crash; the snapshot is JSON.
    assert_eq!(get(addr, "/breaker/pay.ments").0, 400);
    assert_eq!(get(addr, "/breaker/ledger").0, 404);
    assert_eq!(get(addr, "/api/breakers/%ff%fe/history").0, 400);
    assert_eq!(get(addr, "/api/breakers/ledger/history").0, 404);
    assert_eq!(get(addr, "/no/such/page").0, 404);
    let (status, history) = get(addr, "/api/breakers/payments/history");
    assert_eq!(status, 200, "{history}");
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().last().unwrap()["state"], "open");
    let (status, snapshot) = get(addr, "/api/breakers");
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["watching"], true);
    let names: Vec<&str> =
        snapshot["rows"].as_array().unwrap().iter().map(|r| r["breaker"].as_str().unwrap()).collect();
    assert_eq!(names, ["payments", "refunds"]);
    assert!(get(addr, "/app.js").1.contains("EventSource"), "the script is embedded");

    drop(browser);
    runtime.block_on(async move { registry.shutdown().await }).unwrap();
}
