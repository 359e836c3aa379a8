//! The hot path allocates nothing: a counting global allocator watches acquire and record in
//! every admission mode, and rejections (a `Rejected` is `Copy`: no name, no reference count).
//!
//! The allocator is `allocation-counter`'s wrapper of `System` (implementing `GlobalAlloc`
//! here would take `unsafe`, which the workspace forbids). It counts the measuring thread's
//! allocations only: a process-wide count also caught the test harness's main thread
//! setting up its wait for the test (4 allocations, in about 1 run in 5 on a loaded
//! machine), while nothing here runs on another thread.

// Loom atomics only work inside a loom model: these run in the ordinary build.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use breaker_actors::hot::{CoarseClock, HotPath, HotSettings, Outcome, RejectReason};
use breaker_actors::machine::{Admission, BreakerName, Millis, Snapshot, StateLabel};

const CALLS: u64 = 10_000;

fn snap(generation: u64, admission: Admission) -> Snapshot {
    Snapshot::standalone(generation, admission)
}

/// Allocations (reallocations included) this thread makes while `work` runs.
fn allocations(work: impl FnOnce()) -> u64 {
    let counted = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(1_u8)))).count_total;
    assert_eq!(counted, 1, "the counting allocator is in place");
    allocation_counter::measure(work).count_total
}

#[test]
fn acquiring_recording_and_rejecting_allocate_nothing() {
    let clock = CoarseClock::new();
    let settings = HotSettings { slow_call_threshold_ms: Some(50), track_streaks: true, trip_streak: Some(3) };
    let hot = HotPath::new(BreakerName::new("payments").unwrap(), settings, clock.clone());
    // Warm-up: this thread's shard index is given on first use.
    hot.try_acquire().unwrap().success();

    let closed = allocations(|| {
        for i in 0..CALLS {
            let permit = hot.try_acquire().unwrap();
            clock.advance_to(i);
            match i % 4 {
                0 => permit.failure(),
                1 => permit.ignore(),
                2 => drop(permit),
                _ => permit.success(),
            }
        }
    });
    assert_eq!(closed, 0, "closed state: {closed} allocations in {CALLS} calls");

    let mut open = snap(2, Admission::Reject);
    open.retry_at = Some(Millis(1_000_000));
    hot.install(&open);
    let mut rejections = 0;
    let rejecting = allocations(|| {
        for _ in 0..CALLS {
            let rejected = hot.try_acquire().unwrap_err();
            if rejected.reason() == RejectReason::Open && rejected.retry_after().is_some() {
                rejections += 1;
            }
        }
    });
    assert_eq!(rejections, CALLS, "every call was rejected as open, with a retry hint");
    assert_eq!(rejecting, 0, "open state: {rejecting} allocations in {CALLS} rejections");

    hot.install(&snap(3, Admission::Probe { grant: 100, round: 1 }));
    let mut fraction = snap(4, Admission::Fraction { per_mille: 500 });
    fraction.state = StateLabel::Ramping;
    let others = allocations(|| {
        for _ in 0..CALLS {
            match hot.try_acquire() {
                Ok(permit) => permit.record(Outcome::Success),
                Err(rejected) => assert_eq!(rejected.reason(), RejectReason::NoProbeLeft),
            }
        }
        hot.install(&fraction);
        for _ in 0..CALLS {
            if let Ok(permit) = hot.try_acquire() {
                permit.failure();
            }
        }
    });
    assert_eq!(others, 0, "half-open, install and ramping: {others} allocations");

    // The calls were counted: the allocator saw real work.
    let drained = hot.drain();
    let total: u64 =
        drained.outcomes.iter().map(|o| o.counts.success + o.counts.failure + o.counts.ignored + o.counts.slow).sum();
    let rejected: u64 = drained.outcomes.iter().map(|o| o.counts.rejected).sum();
    assert_eq!(total, 1 + CALLS / 4 * 3 + 100 + CALLS / 2);
    assert_eq!(rejected, CALLS + (CALLS - 100) + CALLS / 2);

    // The overlay's streak trip on the crossing call, and the rejections after it.
    hot.install(&Snapshot { trip_on_streak: true, ..snap(5, Admission::Allow) });
    let tripping = allocations(|| {
        for _ in 0..3 {
            hot.try_acquire().unwrap().failure();
        }
        for _ in 0..CALLS {
            assert_eq!(hot.try_acquire().unwrap_err().reason(), RejectReason::Open);
        }
    });
    assert!(hot.tripped_itself());
    assert_eq!(tripping, 0, "streak trip: {tripping} allocations");
}
