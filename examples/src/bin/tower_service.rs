//! `tower-service`: a `tower::service_fn` behind a Fusebox breaker, through the `fusebox`
//! crate only. Shows the three things a service sees: responses passing through, a typed
//! rejection once the breaker is open (here an operator's force-open, applied by the
//! breaker's actor like any fleet decision), and a fallback answering in its place. Exits
//! non-zero if any of the three does not happen, so it doubles as a smoke check.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fusebox::tower::{FuseboxError, FuseboxLayer};
use fusebox::{BreakerConfig, CommandKind, Registry, Rejected, StateLabel};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A price lookup whose dependency fails for unknown items.
async fn price(item: &'static str) -> Result<u32, String> {
    match item {
        "apple" => Ok(30),
        "pear" => Ok(45),
        other => Err(format!("no price for {other}")),
    }
}

/// Waits for `service` to be ready, then calls it: what a tower client does per request.
async fn call<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Ok(registry) = Registry::local().await else { return ExitCode::FAILURE };
    let Ok(breaker) = registry.breaker("prices", BreakerConfig::default()).await else { return ExitCode::FAILURE };
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

    if registry.command("prices", CommandKind::ForceOpen, "example", "the price service is down").await.is_err() {
        return ExitCode::FAILURE;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while breaker.state() != StateLabel::ForcedOpen {
        if Instant::now() > deadline {
            println!("the force-open was never applied");
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("open (an operator forced it open):");
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
    if registry.shutdown().await.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
