//! `tower-service`: a `tower::service_fn` behind a Fusebox breaker. Shows the three things a
//! service sees: responses passing through, a typed rejection once the breaker is open, and
//! a fallback answering in its place. The breaker's hot path is built directly here; in a
//! service the breaker actor owns it, drains its counts and installs its snapshots. Exits
//! non-zero if any of the three does not happen, so it doubles as a smoke check.

use std::process::ExitCode;
use std::sync::Arc;

use breaker_actors::hot::{Breaker, CoarseClock, HotPath, HotSettings, Rejected};
use breaker_actors::machine::{Admission, BreakerName, Millis, Snapshot};
use breaker_actors::tower::{FuseboxError, FuseboxLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A price lookup whose dependency fails for unknown items.
async fn price(item: &'static str) -> Result<u32, String> {
    match item {
        "apple" => Ok(30),
        "pear" => Ok(45),
        other => Err(format!("no price for {other}")),
    }
}

/// What the breaker actor installs when the fleet trips the breaker.
fn open_snapshot() -> Snapshot {
    Snapshot { retry_at: Some(Millis(10_000)), ..Snapshot::standalone(2, Admission::Reject) }
}

/// Waits for `service` to be ready, then calls it: what a tower client does per request.
async fn call<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Ok(name) = BreakerName::new("prices") else { return ExitCode::FAILURE };
    let hot = Arc::new(HotPath::new(name, HotSettings::default(), CoarseClock::new()));
    let breaker = Breaker::new(Arc::clone(&hot));
    let mut prices = FuseboxLayer::new(breaker.clone()).layer(service_fn(price));

    println!("closed:");
    for item in ["apple", "pear", "kiwi"] {
        match call(&mut prices, item).await {
            Ok(cents) => println!("  {item}: {cents} cents"),
            Err(FuseboxError::Failed(error)) => println!("  {item}: failed ({error})"),
            Err(FuseboxError::Rejected(rejected)) => {
                println!("  {item}: unexpectedly rejected ({rejected})");
                return ExitCode::FAILURE;
            }
        }
    }
    for outcomes in hot.drain().outcomes {
        let (generation, counts) = (outcomes.generation, outcomes.counts);
        println!("  drained for generation {generation}: {} successes, {} failures", counts.success, counts.failure);
    }

    hot.install(&open_snapshot());
    println!("open (the fleet tripped the breaker):");
    match call(&mut prices, "apple").await {
        Err(FuseboxError::Rejected(rejected)) => println!("  apple: rejected ({rejected})"),
        other => {
            println!("  apple: expected a rejection, got {other:?}");
            return ExitCode::FAILURE;
        }
    }

    // A last-known price beats an error page while the dependency recovers.
    let last_known = |_: Rejected| 30;
    let mut with_fallback = FuseboxLayer::new(breaker).with_fallback(last_known).layer(service_fn(price));
    match call(&mut with_fallback, "apple").await {
        Ok(cents) => println!("  apple with a fallback: {cents} cents (the last known price)"),
        Err(error) => {
            println!("  apple with a fallback: failed ({error})");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
