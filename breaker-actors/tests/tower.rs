//! The tower layer over a hot path built directly (no actors): calls pass, rejections are
//! typed and never reach the inner service, outcomes land in the hot path's counters as the
//! classifier judges whole results, fallbacks (a value, or a future made from the request)
//! answer rejections, and probes can be marked. With the `http` feature, over a local
//! registry: HTTP 5xx answers returned as `Ok` trip the breaker, and the async fallback then
//! serves each request from a cache by its path.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use breaker_actors::hot::Rejected;
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

#[tokio::test]
async fn a_result_classifier_judges_responses_too() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    // Odd answers below 10 are fine, the rest are in-band failures; "4 is even" is neutral.
    let judge = |result: &Result<u32, String>| match result {
        Ok(n) if *n < 10 => Outcome::Success,
        Err(e) if e.starts_with('4') => Outcome::Ignored,
        Ok(_) | Err(_) => Outcome::Failure,
    };
    let mut service = FuseboxLayer::new(breaker.clone()).classify_results_with(judge).layer(inner(&calls));
    for n in [1, 3, 7, 4, 6] {
        let _ = service.ready().await.unwrap().call(n).await;
    }
    // 1 -> 2 and 3 -> 6 succeed, 7 -> 14 came back `Ok` but failed, 4 is neutral, 6 failed.
    assert_eq!(drained(&breaker), OutcomeCounts { success: 2, failure: 2, ignored: 1, ..OutcomeCounts::default() });
    // The response comes back whatever the classifier made of it.
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), 14);
}

#[tokio::test]
async fn the_async_fallback_answers_each_rejected_request_by_itself() {
    let breaker = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    // What was served before, by request: the dependency doubles, the cache knows better.
    let cache = Arc::new(std::collections::HashMap::from([(3_u32, 600_u32), (5, 1_000)]));
    let fallbacks = Arc::new(AtomicUsize::new(0));
    let mut service = FuseboxLayer::new(breaker.clone())
        .with_async_fallback({
            let fallbacks = Arc::clone(&fallbacks);
            move |n: u32, rejected: Rejected| {
                let (cache, fallbacks) = (Arc::clone(&cache), Arc::clone(&fallbacks));
                async move {
                    tokio::task::yield_now().await; // a real wait: the cache is elsewhere
                    fallbacks.fetch_add(1, Ordering::Relaxed);
                    cache.get(&n).copied().ok_or(FuseboxError::Rejected(rejected))
                }
            }
        })
        .layer(inner(&calls));
    // Closed: the dependency answers, its errors come back as failures.
    assert_eq!(service.ready().await.unwrap().call(3).await, Ok(6));
    assert_eq!(service.ready().await.unwrap().call(4).await, Err(FuseboxError::Failed("4 is even".to_owned())));
    open(&breaker);
    assert_eq!(service.ready().await.unwrap().call(3).await, Ok(600));
    assert_eq!(service.ready().await.unwrap().call(5).await, Ok(1_000));
    // A miss: the fallback hands the rejection back.
    let missed = service.ready().await.unwrap().call(7).await.unwrap_err();
    assert_eq!(missed.rejected().map(|r| r.reason()), Some(RejectReason::Open));
    assert_eq!(calls.load(Ordering::Relaxed), 2, "rejected requests never reach the dependency");
    assert_eq!(fallbacks.load(Ordering::Relaxed), 3);
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, failure: 1, rejected: 3, ..OutcomeCounts::default() });

    // The same through `FuseboxService::with_async_fallback`; its future is `Send`.
    let mut direct = FuseboxService::new(inner(&calls), breaker.clone())
        .with_async_fallback(|n: u32, _: Rejected| async move { Ok::<_, FuseboxError<String>>(n + 100) });
    let answer = direct.ready().await.unwrap().call(1);
    let send = |_: &(dyn Send + '_)| {};
    send(&answer);
    assert_eq!(answer.await, Ok(101));
}

#[tokio::test]
async fn probes_are_marked_on_their_way_out() {
    let breaker = breaker();
    // The inner service says whether the request it got was marked as a probe.
    let mut service = FuseboxLayer::new(breaker.clone())
        .on_probe(|request: &mut (u32, bool)| request.1 = true)
        .layer(service_fn(|(n, probe): (u32, bool)| async move { Ok::<_, Infallible>((n, probe)) }));
    assert_eq!(service.ready().await.unwrap().call((1, false)).await.unwrap(), (1, false));
    breaker.hot_path().install(&Snapshot::standalone(2, Admission::Probe { grant: 1, round: 1 }));
    assert_eq!(service.ready().await.unwrap().call((2, false)).await.unwrap(), (2, true));
    let error = service.ready().await.unwrap().call((3, false)).await.unwrap_err();
    assert_eq!(error.rejected().map(|r| r.reason()), Some(RejectReason::NoProbeLeft));
}

/// Over a local registry (its actor decides): HTTP answers through the layer.
#[cfg(feature = "http")]
mod http_answers {
    use std::time::{Duration, Instant};

    use breaker_actors::Registry;
    use breaker_actors::http::ServerErrorsAsFailures;
    use breaker_actors::machine::{BreakerConfig, OpenPolicy, TripPolicy, WindowConfig};

    use super::*;

    type Request = http::Request<()>;
    type Response = http::Response<String>;

    fn answer(status: u16, body: &str) -> Response {
        http::Response::builder().status(status).body(body.to_owned()).unwrap()
    }

    fn request(path: &str) -> Request {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn five_hundreds_answered_ok_are_failures_only_with_the_classifier() {
        let answering =
            |status: u16| service_fn(move |_: Request| async move { Ok::<_, Infallible>(answer(status, "")) });
        for (status, counted_by_default, counted_as_5xx_failures) in [
            (503, Outcome::Success, Outcome::Failure),
            (404, Outcome::Success, Outcome::Success),
            (200, Outcome::Success, Outcome::Success),
        ] {
            let count = |outcome| match outcome {
                Outcome::Success => OutcomeCounts { success: 1, ..OutcomeCounts::default() },
                _ => OutcomeCounts { failure: 1, ..OutcomeCounts::default() },
            };
            let plain = breaker();
            let _ = FuseboxLayer::new(plain.clone()).layer(answering(status)).oneshot(request("/")).await;
            assert_eq!(drained(&plain), count(counted_by_default), "{status} by default");
            let judged = breaker();
            let layer = FuseboxLayer::new(judged.clone()).classify_results_with(ServerErrorsAsFailures::new());
            let response = layer.layer(answering(status)).oneshot(request("/")).await.unwrap();
            assert_eq!(response.status(), status, "the response comes back as it is");
            assert_eq!(drained(&judged), count(counted_as_5xx_failures), "{status} as 5xx failures");
        }
    }

    #[tokio::test]
    async fn five_hundreds_trip_the_breaker_and_the_async_fallback_serves_by_path() {
        let registry = Registry::local().await.unwrap();
        let config = BreakerConfig {
            trip: TripPolicy {
                window: WindowConfig::Count { calls: 10 },
                minimum_calls: 10,
                failure_rate: Some(0.5),
                ..TripPolicy::default()
            },
            open: OpenPolicy::Fixed { duration_ms: 60_000 },
            ..BreakerConfig::default()
        };
        let breaker = registry.breaker("catalogue", config).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        // The dependency is down: it answers every request, with a 503.
        let dependency = service_fn({
            let calls = Arc::clone(&calls);
            move |_: Request| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, Infallible>(answer(503, "down")) }
            }
        });
        let cache = Arc::new(std::collections::HashMap::from([("/apple", "apple: 30 (cached)")]));
        let mut service = FuseboxLayer::new(breaker.clone())
            .classify_results_with(ServerErrorsAsFailures::new())
            .with_async_fallback(move |request: Request, rejected: Rejected| {
                let cache = Arc::clone(&cache);
                async move {
                    match cache.get(request.uri().path()) {
                        Some(body) => Ok(answer(200, body)),
                        None => Err(FuseboxError::Rejected(rejected)),
                    }
                }
            })
            .layer(dependency);

        // Every 503 comes back to the caller as it is, until the breaker opens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while breaker.state() != StateLabel::Open {
            assert!(Instant::now() < deadline, "503s answered Ok never tripped the breaker");
            match service.ready().await.unwrap().call(request("/apple")).await {
                Ok(response) => assert_eq!(response.status(), 503),
                Err(error) => panic!("only the open state rejects; got {error:?}"),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let reached = calls.load(Ordering::Relaxed);
        assert!(reached >= 10, "the trip needs a full window: {reached} calls");

        // Open: served from the cache by path, or the rejection on a miss; the dependency
        // sees none of it.
        let served = service.ready().await.unwrap().call(request("/apple")).await.unwrap();
        assert_eq!((served.status(), served.body().as_str()), (http::StatusCode::OK, "apple: 30 (cached)"));
        let missed = service.ready().await.unwrap().call(request("/pear")).await.unwrap_err();
        assert_eq!(missed.rejected().map(|r| r.reason()), Some(RejectReason::Open));
        assert_eq!(calls.load(Ordering::Relaxed), reached);
        registry.shutdown().await.unwrap();
    }
}
