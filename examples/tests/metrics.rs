//! Fusebox's metrics through the real exporter (`metrics-exporter-prometheus`), as a scrape
//! sees them: every per-breaker metric of `names::ALL` is there, described and typed, from
//! the breaker's creation on; the state is one 0/1 series per state; tripping moves the
//! state, the rejections and the call-duration histogram. And `/metrics` over real HTTP from
//! the `prometheus` example.
//!
//! One global recorder for this test binary (the registry's actors record from tokio's
//! worker threads, which a thread-local recorder would not see); each test has its own
//! breaker names.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::float_cmp, reason = "the exporter renders the exact values set: 0, 1, the thresholds, counts")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fusebox::config::{OpenPolicy, TripPolicy};
use fusebox::metrics::{ALL, MetricKind, SECONDS_BUCKETS};
use fusebox::{BreakerConfig, Registry, RejectReason, StateLabel};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

fn exporter() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
            .unwrap()
            .install_recorder()
            .unwrap()
    })
}

/// One rendered sample: its name (with `_bucket`, `_sum`, `_count`), labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a render (the exporter writes no spaces or commas inside label values
/// that matter here: every value is a name or a number).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample { name: name.to_owned(), labels, value: value.parse().unwrap() }
        })
        .collect()
}

fn of<'a>(all: &'a [Sample], name: &str, breaker: &str) -> Vec<&'a Sample> {
    all.iter().filter(|s| s.name == name && s.labels.get("breaker").map(String::as_str) == Some(breaker)).collect()
}

fn value(all: &[Sample], name: &str, breaker: &str, label: (&str, &str)) -> f64 {
    let found: Vec<&Sample> = of(all, name, breaker)
        .into_iter()
        .filter(|s| s.labels.get(label.0).map(String::as_str) == Some(label.1) && !s.labels.contains_key("le"))
        .collect();
    assert_eq!(found.len(), 1, "{name}{{{}={}}} of {breaker}: {found:?}", label.0, label.1);
    found[0].value
}

fn config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy { consecutive_failures: Some(5), slow_call_rate: Some(0.9), ..TripPolicy::default() },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        // Timed calls: the duration histogram fills.
        slow_call_threshold_ms: Some(1_000),
        local: None,
        ..BreakerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_breaker_shows_every_series_and_a_trip_moves_them() {
    let exporter = exporter();
    let registry = Registry::local().await.unwrap();
    let breaker = registry.breaker("metrics-db", config()).await.unwrap();

    // Right after creation, before any call.
    let text = exporter.render();
    let all = samples(&text);
    for spec in ALL.iter().filter(|s| s.labels.starts_with(&["breaker", "node"])) {
        let kind = match spec.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert!(text.contains(&format!("# HELP {} {}", spec.name, spec.help)), "no HELP for {}:\n{text}", spec.name);
        assert!(text.contains(&format!("# TYPE {} {kind}\n", spec.name)), "no TYPE {kind} for {}:\n{text}", spec.name);
        let series =
            if spec.kind == MetricKind::Histogram { format!("{}_count", spec.name) } else { spec.name.to_owned() };
        let mine = of(&all, &series, "metrics-db");
        assert!(!mine.is_empty(), "no {series} series for the new breaker:\n{text}");
        for sample in mine {
            let labels: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            let mut wanted: Vec<&str> = spec.labels.to_vec();
            wanted.sort_unstable();
            assert_eq!(labels, wanted, "{series}'s labels");
            assert_eq!(sample.labels["node"], "local");
        }
    }
    let states = of(&all, "fusebox_state", "metrics-db");
    assert_eq!(states.len(), StateLabel::ALL.len(), "{states:?}");
    assert!(states.iter().all(|s| s.value == 0.0 || s.value == 1.0), "{states:?}");
    assert_eq!(states.iter().filter(|s| s.value == 1.0).count(), 1, "{states:?}");
    assert_eq!(value(&all, "fusebox_state", "metrics-db", ("state", "closed")), 1.0);
    assert_eq!(value(&all, "fusebox_rejections_total", "metrics-db", ("reason", "open")), 0.0);
    assert_eq!(value(&all, "fusebox_failure_rate_threshold", "metrics-db", ("node", "local")), 0.5);
    assert_eq!(value(&all, "fusebox_slow_call_rate_threshold", "metrics-db", ("node", "local")), 0.9);
    let failures_timed = value(&all, "fusebox_call_duration_seconds_count", "metrics-db", ("outcome", "failure"));
    assert_eq!(failures_timed, 0.0);

    // Trip it: the failures are timed, the state series follow, rejections count by reason.
    let deadline = Instant::now() + Duration::from_secs(5);
    while breaker.state() != StateLabel::Open {
        assert!(Instant::now() < deadline, "the breaker never opened");
        let _ = breaker.call(async { Err::<(), _>("refused") }).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for _ in 0..10 {
        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.reason(), RejectReason::Open);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let all = loop {
        let all = samples(&exporter.render());
        if value(&all, "fusebox_rejections_total", "metrics-db", ("reason", "open")) >= 10.0 {
            break all;
        }
        assert!(Instant::now() < deadline, "the rejections were never counted:\n{}", exporter.render());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(value(&all, "fusebox_state", "metrics-db", ("state", "open")), 1.0);
    assert_eq!(value(&all, "fusebox_state", "metrics-db", ("state", "closed")), 0.0);
    let states = of(&all, "fusebox_state", "metrics-db");
    assert_eq!(states.iter().filter(|s| s.value == 1.0).count(), 1, "{states:?}");
    assert!(value(&all, "fusebox_call_duration_seconds_count", "metrics-db", ("outcome", "failure")) >= 5.0);
    assert!(value(&all, "fusebox_calls_total", "metrics-db", ("outcome", "failure")) >= 5.0);
    assert!(value(&all, "fusebox_transitions_total", "metrics-db", ("to", "open")) >= 1.0);
    assert!(value(&all, "fusebox_decisions_total", "metrics-db", ("state", "open")) >= 1.0);
    assert_eq!(value(&all, "fusebox_deciding", "metrics-db", ("node", "local")), 1.0, "the one node decides");
    assert!(value(&all, "fusebox_term", "metrics-db", ("node", "local")) >= 1.0);
    registry.shutdown().await.unwrap();
    assert_eq!(breaker.try_acquire().unwrap_err().reason(), RejectReason::ShutDown);
    let all = samples(&exporter.render());
    assert_eq!(value(&all, "fusebox_rejections_total", "metrics-db", ("reason", "shut_down")), 1.0);
}

/// `GET /metrics` on `addr`: the body, if the server answered 200.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Kills the child when dropped (a failed assertion must not leave it running).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_prometheus_example_serves_metrics_over_http() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_prometheus"))
        .args(["--listen", &addr])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        // Until the script has tripped the breaker (the example keeps serving after it).
        if let Some(body) = scrape(&addr).filter(|b| b.contains(r#"state="open"} 1"#)) {
            break body;
        }
        assert!(Instant::now() < deadline, "no /metrics with an open breaker on {addr}: {:?}", scrape(&addr));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("# TYPE fusebox_state gauge"), "{body}");
    assert!(body.contains(r#"fusebox_state{breaker="payments-api",node="local",state="open"} 1"#), "{body}");
    assert!(body.contains("# TYPE fusebox_call_duration_seconds histogram"), "{body}");
    assert!(body.contains(r#"fusebox_rejections_total{breaker="payments-api",node="local",reason="open"}"#), "{body}");
}
