//! The tower layer over a hot path built directly (no actors): calls pass, rejections are
//! typed and never reach the inner service, outcomes land in the hot path's counters, and a
//! fallback answers rejections.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use breaker_actors::hot::{Breaker, CoarseClock, HotPath, HotSettings, Outcome, RejectReason};
use breaker_actors::machine::{Admission, BreakerName, Millis, OutcomeCounts, Snapshot, StateLabel};
use breaker_actors::tower::{FuseboxError, FuseboxLayer, FuseboxService};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker() -> Breaker {
    let name = BreakerName::new("tower-test").unwrap();
    Breaker::new(Arc::new(HotPath::new(name, HotSettings::default(), CoarseClock::new())))
}

fn open(breaker: &Breaker) {
    breaker
        .hot_path()
        .install(&Snapshot { retry_at: Some(Millis(5_000)), ..Snapshot::standalone(2, Admission::Reject) });
}

/// Everything recorded since the last drain, summed over generations.
fn drained(breaker: &Breaker) -> OutcomeCounts {
    breaker.hot_path().drain().outcomes.iter().fold(OutcomeCounts::default(), |mut sum, o| {
        sum.add(&o.counts);
        sum
    })
}

/// Doubles odd numbers, fails on even ones, and counts how often it was called.
fn inner(
    calls: &Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = String, Future: Send> + Clone + Send + use<> {
    let calls = Arc::clone(calls);
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move { if n % 2 == 1 { Ok(n * 2) } else { Err(format!("{n} is even")) } }
    })
}

#[tokio::test]
async fn calls_pass_through_when_closed() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone()).layer(inner(&calls));
    assert_eq!(service.ready().await.unwrap().call(21).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn rejected_with_the_typed_error_when_open() {
    let breaker = breaker();
    open(&breaker);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxService::new(inner(&calls), breaker.clone());
    let error = service.ready().await.unwrap().call(21).await.unwrap_err();
    let FuseboxError::Rejected(rejected) = error else { panic!("expected a rejection, got {error:?}") };
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.state(), StateLabel::Open);
    assert!(rejected.to_string().contains("it is open"), "{rejected}");
    assert_eq!(calls.load(Ordering::Relaxed), 0, "a rejected call must not reach the inner service");
    assert_eq!(drained(&breaker), OutcomeCounts { rejected: 1, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn failures_are_recorded() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone()).layer(inner(&calls));
    for n in 1..=5 {
        let result = service.ready().await.unwrap().call(n).await;
        match result {
            Ok(doubled) => assert_eq!(doubled, n * 2),
            Err(FuseboxError::Failed(message)) => assert_eq!(message, format!("{n} is even")),
            Err(FuseboxError::Rejected(rejected)) => panic!("closed breaker rejected: {rejected}"),
        }
    }
    assert_eq!(drained(&breaker), OutcomeCounts { success: 3, failure: 2, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn the_classifier_decides_what_counts_as_a_failure() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let neutral_fours = |e: &String| if e.starts_with('4') { Outcome::Ignored } else { Outcome::Failure };
    let mut service = FuseboxLayer::new(breaker.clone()).classify_with(neutral_fours).layer(inner(&calls));
    for n in [2, 4, 5] {
        let _ = service.ready().await.unwrap().call(n).await;
    }
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, failure: 1, ignored: 1, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn the_fallback_answers_rejections() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone())
        .with_fallback(|rejected: breaker_actors::hot::Rejected| match rejected.reason() {
            RejectReason::Open => 0,
            _ => 1,
        })
        .layer(inner(&calls));
    // Closed: responses and inner errors come back untouched (the error type is the inner one).
    assert_eq!(service.ready().await.unwrap().call(3).await, Ok(6));
    assert_eq!(service.ready().await.unwrap().call(4).await, Err("4 is even".to_owned()));
    open(&breaker);
    assert_eq!(service.ready().await.unwrap().call(3).await, Ok(0));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, failure: 1, rejected: 1, ..OutcomeCounts::default() });

    // The same through `FuseboxService::with_fallback`.
    let mut direct = FuseboxService::new(inner(&calls), breaker.clone()).with_fallback(|_| 7);
    assert_eq!(direct.ready().await.unwrap().call(3).await, Ok(7));
}

#[tokio::test]
async fn a_dropped_call_records_nothing() {
    let breaker = breaker();
    let mut service = FuseboxLayer::new(breaker.clone()).layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    drop(service.ready().await.unwrap().call(()));
    assert_eq!(drained(&breaker), OutcomeCounts::default());
}

#[test]
fn response_futures_are_send_when_the_inner_ones_are() {
    fn send<T: Send>(_: &T) {}
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker()).layer(inner(&calls));
    send(&service);
    send(&service.call(1));
    let mut fallback = FuseboxLayer::new(breaker()).with_fallback(|_| 0).layer(inner(&calls));
    send(&fallback.call(1));
}

#[tokio::test]
async fn a_dropped_probe_call_gives_its_slot_back() {
    let breaker = breaker();
    breaker.hot_path().install(&Snapshot::standalone(2, Admission::Probe { grant: 1, round: 1 }));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone()).layer(inner(&calls));
    // `call` takes the permit at once: the round's one probe is held by this future.
    let probe = service.ready().await.unwrap().call(1);
    let error = service.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(error.rejected().map(|r| r.reason()), Some(RejectReason::NoProbeLeft));
    drop(probe);
    assert_eq!(service.ready().await.unwrap().call(5).await.unwrap(), 10, "the dropped probe's slot is back");
    assert_eq!(calls.load(Ordering::Relaxed), 2, "the dropped probe's call was made, the rejected one was not");
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, rejected: 1, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn an_inner_future_that_waits_is_polled_to_its_end() {
    let breaker = breaker();
    // Not `Unpin`, and pending on its first poll: the response future holds it pinned.
    let mut service = FuseboxLayer::new(breaker.clone()).layer(service_fn(|n: u32| async move {
        tokio::task::yield_now().await;
        if n == 0 { Err("zero") } else { Ok(n) }
    }));
    assert_eq!(service.ready().await.unwrap().call(7).await, Ok(7));
    let error = service.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(error.into_failure(), Some("zero"));
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, failure: 1, ..OutcomeCounts::default() });
}

#[tokio::test]
async fn a_response_future_completes_on_another_thread() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone()).layer(inner(&calls));
    // Called here, awaited on another thread: the permit each holds goes with it.
    let mut futures = Vec::new();
    for n in 1..=4 {
        futures.push(service.ready().await.unwrap().call(n));
    }
    let results = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        futures
            .into_iter()
            .map(|future| runtime.block_on(future).map_err(FuseboxError::into_failure))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(results, [Ok(2), Err(Some("2 is even".to_owned())), Ok(6), Err(Some("4 is even".to_owned()))]);
    assert_eq!(drained(&breaker), OutcomeCounts { success: 2, failure: 2, ..OutcomeCounts::default() });
}
