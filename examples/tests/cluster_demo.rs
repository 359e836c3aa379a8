//! `make demo` end to end, faster (`--scale 0.4`) and without the screen redraws: a real
//! 3-node nats-server cluster, real service-instance processes, the whole script. It must
//! reach its summary, exit 0 (which it does only if no half-open round let more probes reach
//! the dependency than its budget), and leave no process behind. The Python instance takes part when
//! the venv of `scripts/install-tools.sh` is there (the test command makes it). The live fleet
//! page's address is printed first and the page answers while the script runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `GET /` of the dashboard at `addr`: the status line and the body.
fn page(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the dashboard listens");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_cluster_demo_runs_its_script_to_the_summary() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-demo"))
        .args(["--ci", "--scale", "0.4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cluster-demo runs");
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    let mut answered = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if answered.is_none()
            && let Some(addr) = line.strip_prefix("dashboard: http://")
        {
            answered = Some(page(addr));
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "exit {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let answered = answered.unwrap_or_else(|| panic!("no dashboard address printed:\n{stdout}"));
    assert!(answered.starts_with("HTTP/1.1 200") && answered.contains("Fusebox fleet"), "{answered}");
    for figure in ["detection", "propagation", "probes reaching the dependency", "failover", "every step of the script"]
    {
        assert!(stdout.contains(figure), "no {figure:?} in:\n{stdout}");
    }
    assert!(stdout.contains("killing the decider") && stdout.contains("killing nats-server"), "{stdout}");
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    if venv.exists() || std::env::var_os("FUSEBOX_PYTHON").is_some() {
        assert!(
            stdout.lines().any(|l| l.starts_with("py1 ") && l.contains("yes")),
            "the Python instance ran:\n{stdout}"
        );
    }
    // The probes per half-open round, as the dependency counted them by the round each names,
    // stay within the budget (the demo itself exits 1 otherwise, failing the assertion above),
    // and every probe named a round of the run.
    let line = stdout.lines().find(|l| l.starts_with("probes reaching the dependency")).unwrap();
    let rounds = line.split('[').nth(1).and_then(|r| r.split(']').next()).unwrap();
    let rounds: Vec<u64> = rounds.split(',').map(|p| p.trim().parse().unwrap()).collect();
    assert!(rounds.len() >= 2, "the script has half-open rounds: {line}");
    for probes in &rounds {
        assert!(*probes <= 2, "a round let {probes} probes through: {line}");
    }
    assert!(line.contains("naming no round: 0"), "{line}");
}
