//! Fusebox's metrics in the Prometheus text format: a breaker on `Registry::local()` takes
//! some calls, trips, rejects, and the program prints what a scrape would see. Fusebox
//! only speaks the `metrics` facade; the application picks the exporter (here
//! `metrics-exporter-prometheus` with its plain-HTTP listener and without the push gateway,
//! so no TLS library comes along). `docs/metrics.md` lists every metric.
//!
//! Run with `cargo run -p fusebox-examples --bin prometheus`; with `--listen 127.0.0.1:9464`
//! it also serves `/metrics` there and keeps serving after the script until Ctrl-C (scrape it
//! with `curl http://127.0.0.1:9464/metrics`).

use std::net::SocketAddr;
use std::time::Duration;

use fusebox::config::{OpenPolicy, TripPolicy};
use fusebox::{BreakerConfig, Registry, RegistryError, StateLabel};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// `--listen ADDR`, if given.
fn listen_address() -> Result<Option<SocketAddr>, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs an address, e.g. 127.0.0.1:9464")?;
                listen = Some(value.parse().map_err(|e| format!("--listen {value}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other} (usage: prometheus [--listen ADDR])")),
        }
    }
    Ok(listen)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = listen_address()?;
    // Before the registry: each breaker registers its series when it is created. Buckets for
    // the `_seconds` histograms (without them this exporter renders summaries).
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &fusebox::metrics::SECONDS_BUCKETS)?;
    let metrics = match listen {
        Some(addr) => {
            let (recorder, exporter) = builder.with_http_listener(addr).build()?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)?;
            tokio::spawn(exporter);
            println!("serving /metrics on http://{addr}/metrics");
            handle
        }
        None => builder.install_recorder()?,
    };
    let registry = Registry::local().await?;
    let config = BreakerConfig {
        trip: TripPolicy { consecutive_failures: Some(5), ..TripPolicy::default() },
        open: OpenPolicy::Fixed { duration_ms: 10_000 },
        // Calls of 100 ms or more are slow: the breaker times its calls, which also fills
        // `fusebox_call_duration_seconds`.
        slow_call_threshold_ms: Some(100),
        local: None,
        ..BreakerConfig::default()
    };
    let breaker = registry.breaker("payments-api", config).await?;

    for i in 0..40 {
        let _ = breaker.call(async move { if i % 4 == 0 { Err("timeout") } else { Ok(()) } }).await;
    }
    // The dependency goes down: consecutive failures trip the breaker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while breaker.state() != StateLabel::Open {
        if tokio::time::Instant::now() > deadline {
            return Err("the breaker did not open".into());
        }
        let _ = breaker.call(async { Err::<(), _>("connection refused") }).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..25 {
        let _ = breaker.call(async { Ok::<_, &str>(()) }).await;
    }
    if listen.is_some() {
        // Keep serving (the registry keeps running, so the counters stay live) until Ctrl-C.
        println!("the script is done; serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    // Shutting down drains the last calls into the counters.
    match registry.shutdown().await {
        Ok(()) | Err(RegistryError::ShutDown) => {}
        Err(e) => return Err(e.into()),
    }
    print!("{}", metrics.render());
    Ok(())
}
