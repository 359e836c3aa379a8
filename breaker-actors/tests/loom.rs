//! Loom models of the hot path's concurrency: the snapshot word against acquires, the
//! counter drain and generation handoff against records, and the probe allowance against
//! acquirers and installs. Every interleaving of the real code runs (the two largest
//! models: every one with at most 4 preemptions, to keep the run to seconds); under
//! `--cfg loom` the hot path has 2 owned counter shards (0 and 1: a model never lets two
//! threads write one at once, as the thread registry guarantees outside loom), 2 shared,
//! locked shards (2 and 3: any number of threads), and 2 generation slots, so slot takeovers are
//! reachable in a few operations.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --profile loom -p breaker-actors --test loom
//! --target-dir target/loom` (`LOOM_MAX_PREEMPTIONS` overrides every model's bound; add
//! `-- --nocapture --test-threads 1` to see how many interleavings each model ran).

#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use breaker_actors::hot::{Breaker, CoarseClock, Drained, HotPath, HotSettings, RejectReason, Undrained};
use breaker_actors::machine::{Admission, BreakerName, Millis, OutcomeCounts, Snapshot, StateLabel};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// Runs `f` under every interleaving, or those with at most `bound` preemptions
/// (`LOOM_MAX_PREEMPTIONS` overrides), and says how many there were.
fn model(name: &str, bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = bound;
    }
    let bound = builder.preemption_bound;
    let before = RUNS.load(std::sync::atomic::Ordering::Relaxed);
    builder.check(move || {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    // Models run in parallel test threads: the count is exact with `--test-threads 1`.
    let runs = RUNS.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("loom model {name}: {runs} interleavings (preemption bound {bound:?})");
}

/// `loom::thread::spawn`, then a yield: loom 0.7 explores no interleaving at all of a
/// spawned thread whose first operation is an atomic load (as every acquire's is) unless the
/// spawning thread yields (tokio-rs/loom#392: `runs 1` instead of every interleaving).
fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    let handle = thread::spawn(f);
    thread::yield_now();
    handle
}

fn hot() -> Arc<HotPath> {
    Arc::new(HotPath::new(BreakerName::new("loom").unwrap(), HotSettings::default(), CoarseClock::new()))
}

fn snap(generation: u64, admission: Admission) -> Snapshot {
    Snapshot::standalone(generation, admission)
}

/// Everything drained, summed per generation, and the stale calls.
fn merge(drains: &[Drained]) -> (BTreeMap<u64, OutcomeCounts>, u64) {
    let mut by_generation: BTreeMap<u64, OutcomeCounts> = BTreeMap::new();
    let mut stale = 0;
    for drained in drains {
        stale += drained.stale_calls;
        for o in &drained.outcomes {
            by_generation.entry(o.generation).or_default().add(&o.counts);
        }
    }
    (by_generation, stale)
}

/// Everything drained, summed per generation, after checking conservation: every one of the
/// `calls` successes was drained once or counted stale.
fn conserved(drains: &[Drained], calls: u64) -> BTreeMap<u64, OutcomeCounts> {
    let (counts, stale) = merge(drains);
    let drained: u64 = counts.values().map(|c| c.success).sum();
    assert_eq!(drained + stale, calls, "conservation: {counts:?}, {stale} stale");
    counts
}

fn count(by_generation: &BTreeMap<u64, OutcomeCounts>, generation: u64, field: fn(&OutcomeCounts) -> u64) -> u64 {
    by_generation.get(&generation).map_or(0, field)
}

/// (a) An acquire racing two installs acts on one whole snapshot: its admission, reason,
/// state, retry hint, probe round and the generation its outcome counts under all come from
/// the same install.
#[test]
fn an_acquire_never_sees_a_half_installed_snapshot() {
    model("an_acquire_never_sees_a_half_installed_snapshot", None, || {
        let hot = hot();
        // Round 1 (grant 1) is used up before the race.
        hot.install(&snap(2, Admission::Probe { grant: 1, round: 1 }));
        hot.try_acquire_on(0).unwrap().success();
        // Generation 5, not 4: with two slots, 4 would share generation 2's and its
        // rejections could evict generation 2's (counted stale, which this model forbids).
        let mut open = snap(5, Admission::Reject);
        open.retry_at = Some(Millis(500));

        let caller = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                let (mut probes, mut no_probe, mut opened) = (0, 0, 0);
                for _ in 0..2 {
                    match hot.try_acquire_on(1) {
                        Ok(permit) => {
                            assert!(permit.is_probe(), "only probe snapshots were installed");
                            probes += 1;
                            permit.success();
                        }
                        Err(r) if r.reason() == RejectReason::NoProbeLeft => {
                            assert_eq!((r.state(), r.retry_after()), (StateLabel::HalfOpen, None));
                            no_probe += 1;
                        }
                        Err(r) => {
                            assert_eq!(r.reason(), RejectReason::Open);
                            assert_eq!(r.state(), StateLabel::Open);
                            assert_eq!(
                                r.retry_after(),
                                Some(Duration::from_millis(500)),
                                "the hint of the open install"
                            );
                            opened += 1;
                        }
                    }
                }
                (probes, no_probe, opened)
            })
        };
        hot.install(&snap(3, Admission::Probe { grant: 2, round: 2 }));
        hot.install(&open);
        let (probes, no_probe, opened) = caller.join().unwrap();

        let (counts, stale) = merge(&[hot.drain()]);
        assert_eq!(stale, 0);
        assert_eq!(count(&counts, 2, |c| c.success), 1, "the probe taken before the race");
        // Probes are round 2's and count under generation 3; a "no probe left" can only be
        // round 1's word (generation 2); "open" only generation 5's.
        assert_eq!(count(&counts, 3, |c| c.success), probes);
        assert_eq!(count(&counts, 2, |c| c.rejected), no_probe);
        assert_eq!(count(&counts, 5, |c| c.rejected), opened);
        assert_eq!(count(&counts, 3, |c| c.rejected), 0);
    });
}

/// (a, continued) `snapshot()` returns one installed snapshot, never a mix of two.
#[test]
fn snapshot_reads_are_never_torn() {
    model("snapshot_reads_are_never_torn", None, || {
        let hot = hot();
        let first = snap(1, Admission::Allow);
        let mut second = snap(2, Admission::Probe { grant: 3, round: 9 });
        second.retry_at = Some(Millis(70));
        second.local = Some(StateLabel::HalfOpen);
        let reader = {
            let hot = Arc::clone(&hot);
            spawn(move || hot.snapshot())
        };
        hot.install(&second);
        let seen = reader.join().unwrap();
        assert!(seen == first || seen == second, "torn snapshot: {seen:?}");
    });
}

/// (b) Two callers record on one shard (a shared, locked one) while the actor installs a
/// new generation and drains: each outcome is drained exactly once, under the generation
/// its permit was granted under. The callers tell the generations apart by the admission:
/// generation 1 admits every call, generation 2 is a probe round.
#[test]
fn a_drain_racing_records_across_a_generation_change_takes_each_once_under_its_generation() {
    model("a_drain_racing_records_across_a_generation_change_takes_each_once_under_its_generation", None, || {
        let hot = hot();
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let hot = Arc::clone(&hot);
                spawn(move || {
                    let permit = hot.try_acquire_on(2).unwrap();
                    let probe = permit.is_probe();
                    permit.success();
                    probe
                })
            })
            .collect();
        hot.install(&snap(2, Admission::Probe { grant: 5, round: 1 }));
        let mut drains = vec![hot.drain()];
        let probes = callers.into_iter().map(|c| u64::from(c.join().unwrap())).sum::<u64>();
        drains.push(hot.drain());

        let (counts, stale) = merge(&drains);
        assert_eq!(stale, 0, "two generations fit in two slots");
        assert_eq!(count(&counts, 1, |c| c.success), 2 - probes, "{counts:?}");
        assert_eq!(count(&counts, 2, |c| c.success), probes, "{counts:?}");
        assert_eq!(counts.keys().copied().filter(|g| *g > 2).count(), 0, "{counts:?}");
    });
}

/// (b, continued) The same with the install on a thread of its own, racing the drainer
/// (more than the contract needs, the actor doing both): the drainer maps a cell's tag
/// through a generation at least as new as the install that published it.
#[test]
fn a_drain_on_another_thread_than_the_install_still_maps_every_tag() {
    model("a_drain_on_another_thread_than_the_install_still_maps_every_tag", None, || {
        let hot = hot();
        let installer = {
            let hot = Arc::clone(&hot);
            spawn(move || hot.install(&snap(2, Admission::Probe { grant: 5, round: 1 })))
        };
        let caller = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                let permit = hot.try_acquire_on(1).unwrap();
                let probe = permit.is_probe();
                permit.success();
                probe
            })
        };
        let mut drains = vec![hot.drain()];
        installer.join().unwrap();
        let probe = caller.join().unwrap();
        drains.push(hot.drain());

        let (counts, stale) = merge(&drains);
        assert_eq!(stale, 0);
        let generation = if probe { 2 } else { 1 };
        assert_eq!(counts, BTreeMap::from([(generation, OutcomeCounts { success: 1, ..OutcomeCounts::default() })]));
    });
}

/// (b, continued) Outcomes that finish after their slot moved on (two generations later,
/// with two slots) are counted stale, still exactly once; the actor's own outcome under the
/// newest generation always counts there.
#[test]
fn late_records_are_stale_never_lost_or_doubled() {
    model("late_records_are_stale_never_lost_or_doubled", None, || {
        let hot = hot();
        let caller = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                let permits = [hot.try_acquire_on(0).unwrap(), hot.try_acquire_on(0).unwrap()];
                let probes = permits.iter().filter(|p| p.is_probe()).count() as u64;
                for permit in permits {
                    permit.success();
                }
                hot.try_acquire_on(0).map(breaker_actors::hot::Permit::success).unwrap();
                probes
            })
        };
        hot.install(&snap(2, Admission::Probe { grant: 5, round: 1 }));
        hot.install(&snap(3, Admission::Allow));
        // Generation 3 shares generation 1's slot: this success may take its cell over.
        hot.try_acquire_on(1).unwrap().success();
        let mut drains = vec![hot.drain()];
        let probes = caller.join().unwrap();
        drains.push(hot.drain());

        let counts = conserved(&drains, 4);
        assert!(count(&counts, 3, |c| c.success) >= 1, "the newest generation's outcome is never stale");
        assert!(count(&counts, 2, |c| c.success) <= probes + 1, "generation 2's calls were probes");
        assert!(counts.keys().all(|g| (1..=3).contains(g)), "{counts:?}");
    });
}

/// (b, continued) One writer takes its own shard's cell over for a newer generation, twice,
/// while the actor drains between installs: a drain that finds the cell's new tag also
/// finds where that tag began (or, a later takeover under way, leaves the cell to the next
/// drain), so the calls before a takeover count under their generation or stale and the
/// ones after it under the new generation, each exactly once. Generations 1, 3 and 5 share
/// a slot; the caller tells generation 3 apart by its admission (a probe round; 1 and 5
/// admit every call).
#[test]
fn takeovers_racing_drains_lose_and_double_nothing() {
    model("takeovers_racing_drains_lose_and_double_nothing", None, || {
        let hot = hot();
        let caller = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                let mut probes = 0;
                for _ in 0..3 {
                    let permit = hot.try_acquire_on(0).unwrap();
                    probes += u64::from(permit.is_probe());
                    permit.success();
                }
                probes
            })
        };
        hot.install(&snap(3, Admission::Probe { grant: 5, round: 1 }));
        let mut drains = vec![hot.drain()];
        hot.install(&snap(5, Admission::Fraction { per_mille: 1000 }));
        drains.push(hot.drain());
        let probes = caller.join().unwrap();
        drains.push(hot.drain());

        let counts = conserved(&drains, 3);
        assert!(counts.keys().all(|g| [1, 3, 5].contains(g)), "{counts:?}");
        assert!(count(&counts, 3, |c| c.success) <= probes, "{counts:?}");
        assert!(count(&counts, 1, |c| c.success) + count(&counts, 5, |c| c.success) <= 3 - probes, "{counts:?}");
        assert_eq!(hot.drain(), Drained::default(), "everything was taken");
    });
}

/// (c) Two acquirers and an install of the same round: probes in flight plus probes that
/// ended in a success or a failure never exceed the grant (what a grant bounds), a dropped
/// or ignored probe's slot being reused.
#[test]
fn the_probe_allowance_is_never_over_issued_within_a_round() {
    model("the_probe_allowance_is_never_over_issued_within_a_round", Some(4), || {
        let hot = hot();
        hot.install(&snap(2, Admission::Probe { grant: 1, round: 1 }));
        // Probes holding a slot (in flight, or ended decisively): raised after a probe is
        // admitted, lowered before a dropped or ignored one gives its slot back, so it never
        // exceeds the slots really held.
        let out = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|shard| {
                let (hot, out) = (Arc::clone(&hot), Arc::clone(&out));
                spawn(move || {
                    let (mut recorded, mut ignored) = (0u64, 0u64);
                    for attempt in 0..2 - shard {
                        if let Ok(permit) = hot.try_acquire_on(shard) {
                            assert!(permit.is_probe());
                            assert!(out.fetch_add(1, Ordering::SeqCst) < 1, "two probes hold a grant of 1");
                            match (shard, attempt) {
                                (0, 0) => {
                                    out.fetch_sub(1, Ordering::SeqCst);
                                    drop(permit);
                                }
                                (0, _) => {
                                    out.fetch_sub(1, Ordering::SeqCst);
                                    permit.ignore();
                                    ignored += 1;
                                }
                                _ => {
                                    permit.success();
                                    recorded += 1;
                                }
                            }
                        }
                    }
                    (recorded, ignored)
                })
            })
            .collect();
        hot.install(&snap(3, Admission::Probe { grant: 1, round: 1 }));
        let (recorded, ignored) =
            callers.into_iter().map(|c| c.join().unwrap()).fold((0, 0), |(r, i), (r2, i2)| (r + r2, i + i2));
        assert!(recorded <= 1, "{recorded} probes recorded in a round with a grant of 1");
        let (counts, _) = merge(&[hot.drain()]);
        let successes: u64 = counts.values().map(|c| c.success).sum();
        assert_eq!(successes, recorded);
        assert_eq!(counts.values().map(|c| c.ignored).sum::<u64>(), ignored);
    });
}

/// (c, continued) A new round racing two acquirers: each round admits at most its grant,
/// and a probe counts under its own round's generation.
#[test]
fn a_new_round_resets_the_allowance_and_each_round_keeps_its_grant() {
    model("a_new_round_resets_the_allowance_and_each_round_keeps_its_grant", Some(4), || {
        let hot = hot();
        hot.install(&snap(2, Admission::Probe { grant: 1, round: 1 }));
        let callers: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|shard| {
                let hot = Arc::clone(&hot);
                spawn(move || hot.try_acquire_on(shard).map(breaker_actors::hot::Permit::success).is_ok())
            })
            .collect();
        hot.install(&snap(3, Admission::Probe { grant: 1, round: 2 }));
        let admitted = callers.into_iter().map(|c| u64::from(c.join().unwrap())).sum::<u64>();
        let (counts, stale) = merge(&[hot.drain()]);
        assert_eq!(stale, 0);
        assert!(count(&counts, 2, |c| c.success) <= 1, "round 1 over-issued: {counts:?}");
        assert!(count(&counts, 3, |c| c.success) <= 1, "round 2 over-issued: {counts:?}");
        assert_eq!(count(&counts, 2, |c| c.success) + count(&counts, 3, |c| c.success), admitted);
        let rejected: u64 = counts.values().map(|c| c.rejected).sum();
        assert_eq!(rejected, 2 - admitted, "every refused call counted once as demand");
    });
}

/// A late failure racing an install (and a failure under the new generation) and a drain:
/// a run of failures belongs to its permit's generation, so the new generation's streak is
/// exactly its own run (never lost to the drain's race with the record either) and the old
/// one's never exceeds its failures (a streak never crosses a phase).
#[test]
fn a_failure_racing_a_new_generation_is_no_part_of_its_streak() {
    model("a_failure_racing_a_new_generation_is_no_part_of_its_streak", None, || {
        let settings = HotSettings { slow_call_threshold_ms: None, track_streaks: true, trip_streak: None };
        let hot = Arc::new(HotPath::new(BreakerName::new("loom").unwrap(), settings, CoarseClock::new()));
        hot.install(&snap(2, Admission::Allow));
        hot.try_acquire_on(0).unwrap().failure();
        let late = hot.try_acquire_on(1).unwrap();
        // The installer moves to generation 3 and fails once there, racing the late
        // failure of generation 2 and a drain.
        let installer = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                hot.install(&snap(3, Admission::Allow));
                hot.try_acquire_on(0).unwrap().failure();
            })
        };
        late.failure();
        let first = hot.drain();
        installer.join().unwrap();
        let drains = [first, hot.drain()];
        let streak = |generation| {
            drains
                .iter()
                .flat_map(|d| &d.outcomes)
                .filter(|o| o.generation == generation)
                .map(|o| o.longest_failure_streak)
                .max()
                .unwrap_or(0)
        };
        // Exactly its own run: a drain that takes a failure's count sees its run too (the
        // run is recorded first), and a run waits for the drain that takes its counts.
        assert_eq!(streak(3), 1, "generation 3 saw one failure: {drains:?}");
        let old = streak(2);
        assert!((1..=2).contains(&old), "generation 2 saw two failures, the first before the race: {drains:?}");
        let (counts, stale) = merge(&drains);
        assert_eq!(counts.values().map(|c| c.failure).sum::<u64>() + stale, 3, "{counts:?}, {stale} stale");
    });
}

fn armed(limit: u64) -> Arc<HotPath> {
    let settings = HotSettings { slow_call_threshold_ms: None, track_streaks: true, trip_streak: Some(limit) };
    let hot = Arc::new(HotPath::new(BreakerName::new("loom").unwrap(), settings, CoarseClock::new()));
    hot.install(&Snapshot { trip_on_streak: true, ..snap(2, Admission::Allow) });
    hot
}

/// Two failures racing to complete the overlay's run of two: exactly one crosses and trips
/// the hot path, and a drain that sees the trip (the actor looks before it drains) has the
/// whole run: the machine learns of the trip on that drain; each failure is counted once.
#[test]
fn racing_failures_cross_the_streak_once_and_a_drain_after_the_trip_has_the_run() {
    model("racing_failures_cross_the_streak_once_and_a_drain_after_the_trip_has_the_run", None, || {
        let hot = armed(2);
        // Both admitted before either fails (owned permits: one may go to another thread;
        // under loom both record on shared shard 0, under its lock).
        let breaker = Breaker::new(Arc::clone(&hot));
        let (first, second) = (breaker.try_acquire_owned().unwrap(), breaker.try_acquire_owned().unwrap());
        let other = spawn(move || second.failure());
        first.failure();
        let seen_tripped = hot.tripped_itself();
        let drained = hot.drain();
        other.join().unwrap();
        assert!(hot.tripped_itself(), "the second failure in a row trips");
        let rejected = hot.try_acquire_on(0).map(drop).unwrap_err();
        assert_eq!((rejected.reason(), rejected.state()), (RejectReason::Open, StateLabel::Open));
        let run = drained.outcomes.iter().map(|o| o.longest_failure_streak).max().unwrap_or(0);
        let failures: u64 = drained.outcomes.iter().map(|o| o.counts.failure).sum();
        if seen_tripped {
            // The run, and the crossing call's count; the other failure, if it has not been
            // counted yet, comes with the next drain.
            assert_eq!(run, 2, "a trip seen before the drain: {drained:?}");
            assert!(failures >= 1, "{drained:?}");
        }
        let rest = hot.drain();
        let total = failures + rest.outcomes.iter().map(|o| o.counts.failure).sum::<u64>();
        assert_eq!(total, 2, "each failure once: {drained:?} {rest:?}");
    });
}

/// A streak trip racing an install: the trip never outlives a newer install (the machine
/// moved on, and judges the run at the next drain), and an acquirer meanwhile is admitted
/// or rejected as open, nothing else.
#[test]
fn a_streak_trip_never_overwrites_a_newer_install() {
    model("a_streak_trip_never_overwrites_a_newer_install", None, || {
        let hot = armed(1);
        let crossing = Breaker::new(Arc::clone(&hot)).try_acquire_owned().unwrap();
        let failer = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                crossing.failure();
                match hot.try_acquire_on(0) {
                    Ok(permit) => drop(permit),
                    Err(rejected) => assert_eq!(rejected.reason(), RejectReason::Open),
                }
            })
        };
        hot.install(&snap(3, Admission::Allow));
        failer.join().unwrap();
        assert!(!hot.tripped_itself(), "the newer install stands");
        assert!(hot.try_acquire_on(1).is_ok(), "generation 3 admits");
    });
}

/// A record racing a drain: whatever the drain missed, `has_undrained` (the flusher's
/// question) still says so afterwards, so no outcome waits forever on an idle breaker.
#[test]
fn a_count_a_drain_missed_leaves_the_breaker_undrained() {
    model("a_count_a_drain_missed_leaves_the_breaker_undrained", None, || {
        let hot = hot();
        let recorder = {
            let hot = Arc::clone(&hot);
            spawn(move || hot.try_acquire_on(1).unwrap().success())
        };
        let first = hot.drain();
        recorder.join().unwrap();
        let taken = |d: &Drained| d.outcomes.iter().map(|o| o.counts.success).sum::<u64>();
        if taken(&first) == 0 {
            assert!(hot.has_undrained(), "the success waits, and the flusher knows");
        }
        let second = hot.drain();
        assert_eq!(taken(&first) + taken(&second), 1);
        assert!(!hot.has_undrained(), "all taken");
    });
}

/// A success and a failure racing a drain: whatever the drain missed of the failure,
/// `undrained` (the flusher's question) says `Urgent` afterwards, so the flusher drains it
/// at the next flush, never only at the lazy interval; whatever it missed at all, it says
/// something is left; successes alone, closed, are `Lazy`.
#[test]
fn a_failure_a_drain_missed_leaves_the_breaker_urgent() {
    model("a_failure_a_drain_missed_leaves_the_breaker_urgent", None, || {
        let hot = hot();
        let recorder = {
            let hot = Arc::clone(&hot);
            spawn(move || {
                hot.try_acquire_on(1).unwrap().success();
                hot.try_acquire_on(1).unwrap().failure();
            })
        };
        let first = hot.drain();
        recorder.join().unwrap();
        let taken = |d: &Drained| {
            let sum = |f: fn(&OutcomeCounts) -> u64| d.outcomes.iter().map(|o| f(&o.counts)).sum::<u64>();
            (sum(|c| c.success), sum(|c| c.failure))
        };
        let (successes, failures) = taken(&first);
        let after = hot.undrained();
        if failures == 0 {
            assert_eq!(after, Undrained::Urgent, "the failure waits, and the flusher knows it is urgent");
        } else if successes == 0 {
            assert_ne!(after, Undrained::Nothing, "the success waits, and the flusher knows");
        }
        let second = hot.drain();
        assert_eq!((successes + taken(&second).0, failures + taken(&second).1), (1, 1));
        assert_eq!(hot.undrained(), Undrained::Nothing, "all taken");
        hot.try_acquire_on(0).unwrap().success();
        assert_eq!(hot.undrained(), Undrained::Lazy);
    });
}

/// `close` racing an install: the install never reopens a closed hot path.
#[test]
fn close_survives_a_racing_install() {
    model("close_survives_a_racing_install", None, || {
        let hot = hot();
        let closer = {
            let hot = Arc::clone(&hot);
            spawn(move || hot.close())
        };
        hot.install(&snap(2, Admission::Allow));
        closer.join().unwrap();
        let rejected = hot.try_acquire_on(0).map(drop).unwrap_err();
        assert_eq!(rejected.reason(), RejectReason::ShutDown);
        assert_eq!(hot.snapshot().generation, 2);
    });
}
