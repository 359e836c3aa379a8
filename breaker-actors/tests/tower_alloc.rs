//! The tower layer allocates nothing per call: a counting global allocator watches calls
//! through a `FuseboxService`, a `Fallback` and an `AsyncFallback` in the steady state, closed (successes,
//! failures, neutral errors, futures dropped unpolled), open (rejections, fallback answers)
//! and half-open (probes, and probes dropped unpolled that give their slot back).
//!
//! The allocator is `allocation-counter`'s, as in `alloc.rs`: it counts the measuring
//! thread's allocations only (a process-wide count also caught the test harness's own). The inner services allocate nothing
//! themselves: `service_fn` over `std::future::ready`, and over an `async` block (which is
//! not `Unpin`: the response future holds it inline, pinned). Futures are polled with a
//! no-op waker, no runtime: the inner futures complete at once, and a runtime's own
//! bookkeeping would be counted too.

// Loom atomics only work inside a loom model: these run in the ordinary build.
#![cfg(all(feature = "tower", not(loom)))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::{Future, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use breaker_actors::hot::{Breaker, CoarseClock, HotPath, HotSettings, Outcome, RejectReason, Rejected};
use breaker_actors::machine::{Admission, BreakerName, Millis, OutcomeCounts, Snapshot};
use breaker_actors::tower::{FuseboxError, FuseboxLayer};
use tower::{Layer, Service, service_fn};

/// A multiple of 8, the period of the closed phase's pattern.
const CALLS: u64 = 10_000;

/// What the fallback answers: no inner response is this large.
const FALLBACK: u64 = u64::MAX;

/// Allocations (reallocations included) this thread makes while `work` runs.
fn allocations(work: impl FnOnce()) -> u64 {
    let counted = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(1_u8)))).count_total;
    assert_eq!(counted, 1, "the counting allocator is in place");
    allocation_counter::measure(work).count_total
}

/// Polls `service` ready and the response future of `request` once: the services here are
/// always ready and their futures complete on the first poll.
fn call<S: Service<Req>, Req>(service: &mut S, request: Req) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(error)) => return Err(error),
        Poll::Pending => panic!("the service is always ready"),
    }
    match pin!(service.call(request)).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the inner future completes on its first poll"),
    }
}

/// Polls `service` ready, calls it and drops the response future unpolled.
fn call_and_drop<S: Service<Req>, Req>(service: &mut S, request: Req) {
    let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(ready, Poll::Ready(Ok(()))), "the service is always ready");
    drop(service.call(request));
}

/// Everything drained, summed over generations.
fn drained(breaker: &Breaker) -> OutcomeCounts {
    breaker.hot_path().drain().outcomes.iter().fold(OutcomeCounts::default(), |mut sum, o| {
        sum.add(&o.counts);
        sum
    })
}

#[test]
fn calls_through_the_tower_layer_allocate_nothing() {
    let name = BreakerName::new("tower-alloc").unwrap();
    let hot = HotPath::new(
        name,
        HotSettings { slow_call_threshold_ms: Some(50), track_streaks: true, trip_streak: None },
        CoarseClock::new(),
    );
    let breaker = Breaker::new(Arc::new(hot));
    // Errors that are multiples of 4 are neutral, other errors failures.
    let neutral_fours = |error: &u64| if error % 4 == 0 { Outcome::Ignored } else { Outcome::Failure };
    let inner_calls = Arc::new(AtomicU64::new(0));
    // Doubles odd numbers, fails with even ones; its future is `std::future::Ready` (`Unpin`).
    let mut service = FuseboxLayer::new(breaker.clone()).classify_with(neutral_fours).layer(service_fn({
        let inner_calls = Arc::clone(&inner_calls);
        move |n: u64| {
            inner_calls.fetch_add(1, Ordering::Relaxed);
            ready(if n % 2 == 1 { Ok(n * 2) } else { Err(n) })
        }
    }));
    // The same behind a fallback, with an `async` block (not `Unpin`) for a future.
    let mut with_fallback = FuseboxLayer::new(breaker.clone())
        .classify_with(neutral_fours)
        .with_fallback(|_: Rejected| FALLBACK)
        .layer(service_fn({
            let inner_calls = Arc::clone(&inner_calls);
            move |n: u64| {
                inner_calls.fetch_add(1, Ordering::Relaxed);
                async move { if n % 2 == 1 { Ok(n * 2) } else { Err(n) } }
            }
        }));
    // Warm-up: this thread's counter shard of the breaker is allocated on its first call.
    assert_eq!(call(&mut service, 1).unwrap(), 2);
    assert_eq!(call(&mut with_fallback, 1), Ok(2));
    assert_eq!(drained(&breaker), OutcomeCounts { success: 2, ..OutcomeCounts::default() });
    inner_calls.store(0, Ordering::Relaxed);

    // Closed: of every 8 calls, 3 succeed, 2 fail, 2 end in a neutral error, 1 is dropped;
    // each run of 8 goes to one service, alternately.
    let closed = allocations(|| {
        for n in 0..CALLS {
            let service_call = (n / 8) % 2 == 0;
            if n % 8 == 7 {
                if service_call {
                    call_and_drop(&mut service, n);
                } else {
                    call_and_drop(&mut with_fallback, n);
                }
                continue;
            }
            let result = if service_call {
                call(&mut service, n).map_err(|error| error.into_failure().expect("closed: admitted"))
            } else {
                call(&mut with_fallback, n)
            };
            assert_eq!(result, if n % 2 == 1 { Ok(n * 2) } else { Err(n) });
        }
    });
    assert_eq!(closed, 0, "closed state: {closed} allocations in {CALLS} calls");
    assert_eq!(inner_calls.load(Ordering::Relaxed), CALLS, "every admitted call reached the inner service");
    let per_eight = CALLS / 8;
    let expected = OutcomeCounts {
        success: 3 * per_eight,
        failure: 2 * per_eight,
        ignored: 2 * per_eight,
        ..OutcomeCounts::default()
    };
    assert_eq!(drained(&breaker), expected);

    // Open: every call is rejected (the fallback answers its own), none reaches the inner service.
    breaker
        .hot_path()
        .install(&Snapshot { retry_at: Some(Millis(60_000)), ..Snapshot::standalone(2, Admission::Reject) });
    let mut rejections = 0;
    let open = allocations(|| {
        for n in 0..CALLS {
            match call(&mut service, n) {
                Err(FuseboxError::Rejected(rejected))
                    if rejected.reason() == RejectReason::Open && rejected.retry_after().is_some() =>
                {
                    rejections += 1;
                }
                other => panic!("open: expected a rejection with a retry hint, got {other:?}"),
            }
            assert_eq!(call(&mut with_fallback, n), Ok(FALLBACK));
        }
    });
    assert_eq!(open, 0, "open state: {open} allocations in {} calls", 2 * CALLS);
    assert_eq!(rejections, CALLS);
    assert_eq!(inner_calls.load(Ordering::Relaxed), CALLS, "a rejected call never reaches the inner service");
    assert_eq!(drained(&breaker), OutcomeCounts { rejected: 2 * CALLS, ..OutcomeCounts::default() });

    // Half-open with 100 probes: the ones dropped unpolled give their slots back, so 100
    // calls after them are still admitted; the rest are rejected.
    breaker.hot_path().install(&Snapshot::standalone(3, Admission::Probe { grant: 100, round: 1 }));
    let mut probes = 0;
    let half_open = allocations(|| {
        for n in 0..10 {
            call_and_drop(&mut service, n);
        }
        for n in 0..CALLS {
            match call(&mut service, 2 * n + 1) {
                Ok(doubled) => {
                    assert_eq!(doubled, 4 * n + 2);
                    probes += 1;
                }
                Err(FuseboxError::Rejected(rejected)) => assert_eq!(rejected.reason(), RejectReason::NoProbeLeft),
                Err(FuseboxError::Failed(error)) => panic!("odd numbers succeed, got {error}"),
            }
        }
    });
    assert_eq!(half_open, 0, "half-open: {half_open} allocations");
    assert_eq!(probes, 100, "the dropped probes gave their slots back");
    assert_eq!(drained(&breaker), OutcomeCounts { success: 100, rejected: CALLS - 100, ..OutcomeCounts::default() });
}

#[test]
fn calls_through_the_async_fallback_with_a_result_classifier_allocate_nothing() {
    let name = BreakerName::new("tower-alloc-async").unwrap();
    let breaker = Breaker::new(Arc::new(HotPath::new(name, HotSettings::default(), CoarseClock::new())));
    // Answers of 100 and more are in-band failures; errors are failures.
    let judge = |result: &Result<u64, u64>| {
        if matches!(result, Ok(n) if *n < 100) { Outcome::Success } else { Outcome::Failure }
    };
    // Probes are marked by adding a million to the request (none is made here while closed).
    let mut service = FuseboxLayer::new(breaker.clone())
        .classify_results_with(judge)
        .on_probe(|n: &mut u64| *n += 1_000_000)
        .with_async_fallback(|n: u64, _: Rejected| ready(Ok(n + FALLBACK / 2)))
        .layer(service_fn(|n: u64| ready(Ok::<_, u64>(n))));
    assert_eq!(call(&mut service, 1), Ok(1)); // warm-up: this thread's counter shard
    assert_eq!(drained(&breaker), OutcomeCounts { success: 1, ..OutcomeCounts::default() });

    let closed = allocations(|| {
        for n in 0..CALLS {
            assert_eq!(call(&mut service, n % 200), Ok(n % 200));
        }
    });
    assert_eq!(closed, 0, "closed: {closed} allocations in {CALLS} calls");
    let expected = OutcomeCounts { success: CALLS / 2, failure: CALLS / 2, ..OutcomeCounts::default() };
    assert_eq!(drained(&breaker), expected, "half the answers were 100 or more: failures, answered Ok");

    breaker.hot_path().install(&Snapshot::standalone(2, Admission::Reject));
    let open = allocations(|| {
        for n in 0..CALLS {
            assert_eq!(call(&mut service, n), Ok(n + FALLBACK / 2), "the fallback answers the request itself");
        }
    });
    assert_eq!(open, 0, "open: {open} allocations in {CALLS} calls");
    assert_eq!(drained(&breaker), OutcomeCounts { rejected: CALLS, ..OutcomeCounts::default() });

    breaker.hot_path().install(&Snapshot::standalone(3, Admission::Probe { grant: 1, round: 1 }));
    assert_eq!(call(&mut service, 5), Ok(1_000_005), "the probe's request was marked");
}
