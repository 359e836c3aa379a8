//! Fusebox's metrics in the Prometheus text format: a breaker on `Registry::local()` takes
//! some calls, trips, rejects, and the program prints what a scrape would see. Fusebox
//! only speaks the `metrics` facade; the application picks the exporter (here
//! `metrics-exporter-prometheus` without its HTTP listener and push gateway, so no TLS
//! library comes along).
//!
//! Run with `cargo run -p fusebox-examples --bin prometheus`.

use std::time::Duration;

use fusebox::config::{OpenPolicy, TripPolicy};
use fusebox::{BreakerConfig, Registry, RegistryError, StateLabel};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let registry = Registry::local().await?;
    let config = BreakerConfig {
        trip: TripPolicy { consecutive_failures: Some(5), ..TripPolicy::default() },
        open: OpenPolicy::Fixed { duration_ms: 10_000 },
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
    // Shutting down drains the last calls into the counters.
    match registry.shutdown().await {
        Ok(()) | Err(RegistryError::ShutDown) => {}
        Err(e) => return Err(e.into()),
    }
    print!("{}", metrics.render());
    Ok(())
}
