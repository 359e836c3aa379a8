//! The hot path's contract, through its public API: admission per state, counting per
//! class and generation, probe rounds, shut-down, and a multi-threaded stress test that
//! races installs and drains against acquires and records.

// Loom atomics only work inside a loom model: these run in the ordinary build.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_actors::hot::{
    Breaker, CallError, CallMetrics, CoarseClock, Drained, HotPath, HotSettings, Outcome, RejectReason, Rejected,
    Undrained,
};
use breaker_actors::machine::{Admission, BreakerName, LocalOutcomes, Millis, OutcomeCounts, Snapshot, StateLabel};

fn hot_with(settings: HotSettings) -> (HotPath, CoarseClock) {
    let clock = CoarseClock::new();
    (HotPath::new(BreakerName::new("payments").unwrap(), settings, clock.clone()), clock)
}

fn closed() -> HotPath {
    hot_with(HotSettings::default()).0
}

fn snap(generation: u64, admission: Admission) -> Snapshot {
    Snapshot::standalone(generation, admission)
}

fn probe(generation: u64, grant: u32, round: u64) -> Snapshot {
    snap(generation, Admission::Probe { grant, round })
}

fn counts_by_generation(drained: &Drained) -> BTreeMap<u64, OutcomeCounts> {
    drained.outcomes.iter().map(|o| (o.generation, o.counts)).collect()
}

fn rejection(hot: &HotPath) -> Rejected {
    match hot.try_acquire() {
        Ok(_) => panic!("expected a rejection"),
        Err(rejected) => rejected,
    }
}

#[test]
fn closed_state_admits_and_counts_each_class() {
    let hot = closed();
    assert_eq!(hot.snapshot(), snap(1, Admission::Allow));
    assert_eq!(hot.state(), StateLabel::Closed);
    for _ in 0..3 {
        hot.try_acquire().unwrap().success();
    }
    for _ in 0..2 {
        hot.try_acquire().unwrap().failure();
    }
    hot.try_acquire().unwrap().ignore();
    hot.try_acquire().unwrap().record(Outcome::Failure);
    let permit = hot.try_acquire().unwrap();
    assert!(!permit.is_probe());
    permit.record(Outcome::Ignored);
    let drained = hot.drain();
    assert_eq!(
        drained,
        Drained {
            outcomes: vec![LocalOutcomes {
                generation: 1,
                counts: OutcomeCounts { success: 3, failure: 3, ignored: 2, ..OutcomeCounts::default() },
                longest_failure_streak: 0,
            }],
            stale_calls: 0,
            rejections: [0; 4],
        }
    );
    assert_eq!(hot.drain(), Drained::default(), "a drain takes the counts");
}

/// What the flusher is told: successes of a closed breaker may wait (`Lazy`); a failure, a
/// slow call, an ignored call, a rejection, or anything under a snapshot that is not closed
/// may not (`Urgent`); a drain takes both flags.
#[test]
fn undrained_tells_successes_of_a_closed_breaker_from_what_could_trip() {
    let (hot, clock) = hot_with(HotSettings { slow_call_threshold_ms: Some(10), ..HotSettings::default() });
    assert_eq!(hot.undrained(), Undrained::Nothing);
    hot.try_acquire().unwrap().success();
    hot.try_acquire().unwrap().success();
    assert_eq!(hot.undrained(), Undrained::Lazy);
    let _ = hot.drain();
    assert_eq!(hot.undrained(), Undrained::Nothing);
    let outcomes = [Outcome::Failure, Outcome::Ignored, Outcome::Success];
    for outcome in outcomes {
        hot.try_acquire().unwrap().success();
        // The success taken as the third is a slow one, measured by the caller.
        match outcome {
            Outcome::Success => hot.try_acquire().unwrap().slow(Duration::from_millis(10)),
            other => hot.try_acquire().unwrap().record(other),
        }
        hot.try_acquire().unwrap().success();
        assert_eq!(hot.undrained(), Undrained::Urgent, "{outcome:?}: a success after it does not hide it");
        let _ = hot.drain();
        assert_eq!(hot.undrained(), Undrained::Nothing);
    }
    // Slow by the coarse clock.
    let permit = hot.try_acquire().unwrap();
    clock.advance_to(10);
    permit.success();
    assert_eq!(hot.undrained(), Undrained::Urgent);
    let _ = hot.drain();
    // Open: a rejection is demand.
    hot.install(&snap(2, Admission::Reject));
    let _ = rejection(&hot);
    assert_eq!(hot.undrained(), Undrained::Urgent);
    let _ = hot.drain();
    // Half-open, ramping, or a fleet state other than closed: successes count at once too.
    let forced =
        Snapshot { fleet: StateLabel::ForcedClosed, state: StateLabel::ForcedClosed, ..snap(3, Admission::Allow) };
    let fleet_open = Snapshot { fleet: StateLabel::Open, ..snap(6, Admission::Allow) };
    for (i, snapshot) in
        [probe(4, 5, 1), snap(5, Admission::Fraction { per_mille: 1000 }), forced, fleet_open].into_iter().enumerate()
    {
        hot.install(&snapshot);
        hot.try_acquire().unwrap().success();
        assert_eq!(hot.undrained(), Undrained::Urgent, "snapshot {i}: {snapshot:?}");
        let _ = hot.drain();
    }
    hot.install(&snap(7, Admission::Allow));
    hot.try_acquire().unwrap().success();
    assert_eq!(hot.undrained(), Undrained::Lazy, "closed again");
}

#[test]
fn a_success_at_or_over_the_threshold_is_slow() {
    let (hot, clock) =
        hot_with(HotSettings { slow_call_threshold_ms: Some(100), track_streaks: false, trip_streak: None });
    clock.advance_to(1_000);
    let slow = hot.try_acquire().unwrap();
    let fast = hot.try_acquire().unwrap();
    fast.success();
    let failed = hot.try_acquire().unwrap();
    clock.advance_to(1_099);
    let almost = hot.try_acquire().unwrap();
    clock.advance_to(1_100);
    slow.success();
    failed.failure();
    clock.advance_to(1_198);
    almost.success();
    let counts = counts_by_generation(&hot.drain())[&1];
    assert_eq!(counts, OutcomeCounts { success: 2, slow: 1, failure: 1, ..OutcomeCounts::default() });

    // Without a threshold nothing is slow, however long it takes.
    let (hot, clock) = hot_with(HotSettings::default());
    let permit = hot.try_acquire().unwrap();
    clock.advance_to(1_000_000);
    permit.success();
    assert_eq!(counts_by_generation(&hot.drain())[&1], OutcomeCounts { success: 1, ..OutcomeCounts::default() });
}

#[test]
fn a_caller_measured_duration_decides_slowness() {
    let (hot, _) = hot_with(HotSettings { slow_call_threshold_ms: Some(100), track_streaks: false, trip_streak: None });
    let slow = hot.try_acquire().unwrap();
    let fast = hot.try_acquire().unwrap();
    // The coarse clock says no time passed; the caller's measurement wins.
    slow.slow(Duration::from_millis(100));
    fast.slow(Duration::from_millis(99));
    assert_eq!(
        counts_by_generation(&hot.drain())[&1],
        OutcomeCounts { success: 1, slow: 1, ..OutcomeCounts::default() }
    );
    // Without a threshold a measured call is a plain success.
    let (hot, _) = hot_with(HotSettings::default());
    hot.try_acquire().unwrap().slow(Duration::from_secs(60));
    assert_eq!(counts_by_generation(&hot.drain())[&1], OutcomeCounts { success: 1, ..OutcomeCounts::default() });
}

#[test]
fn open_rejects_with_retry_after_from_the_coarse_clock_and_counts_the_demand() {
    let (hot, clock) = hot_with(HotSettings::default());
    let mut open = snap(2, Admission::Reject);
    open.retry_at = Some(Millis(5_000));
    hot.install(&open);
    clock.advance_to(1_200);
    let rejected = rejection(&hot);
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.state(), StateLabel::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_millis(3_800)));
    assert!(rejected.to_string().contains("it is open"), "{rejected}");
    assert_eq!(hot.state(), StateLabel::Open);
    clock.advance_to(6_000);
    assert_eq!(rejection(&hot).retry_after(), Some(Duration::ZERO), "a passed retry time means now");

    let mut forced = snap(3, Admission::Reject);
    forced.state = StateLabel::ForcedOpen;
    hot.install(&forced);
    let rejected = rejection(&hot);
    assert_eq!(
        (rejected.state(), rejected.reason(), rejected.retry_after()),
        (StateLabel::ForcedOpen, RejectReason::Open, None)
    );

    let counts = counts_by_generation(&hot.drain());
    assert_eq!(counts[&2], OutcomeCounts { rejected: 2, ..OutcomeCounts::default() });
    assert_eq!(counts[&3], OutcomeCounts { rejected: 1, ..OutcomeCounts::default() });
}

#[test]
fn a_probe_grant_is_a_total_for_its_round_across_installs() {
    let hot = closed();
    hot.install(&probe(2, 2, 7));
    let first = hot.try_acquire().unwrap();
    let second = hot.try_acquire().unwrap();
    assert!(first.is_probe() && second.is_probe());
    let rejected = rejection(&hot);
    assert_eq!((rejected.reason(), rejected.state()), (RejectReason::NoProbeLeft, StateLabel::HalfOpen));

    // A new generation in the same round (an overlay change, say) grants nothing more.
    hot.install(&probe(3, 2, 7));
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    first.success();
    second.failure();
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft, "a recorded probe keeps its slot");
    // Leaving the round and coming back to it grants nothing more either.
    hot.install(&snap(4, Admission::Reject));
    hot.install(&probe(5, 2, 7));
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    // A grant raised within the round allows the difference.
    hot.install(&probe(6, 3, 7));
    hot.try_acquire().unwrap().success();
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);

    // A new round starts from nothing issued.
    hot.install(&probe(7, 1, 8));
    let next = hot.try_acquire().unwrap();
    assert!(next.is_probe());
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    next.success();

    let counts = counts_by_generation(&hot.drain());
    assert_eq!(counts[&2], OutcomeCounts { success: 1, failure: 1, rejected: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&3].rejected, 2);
    assert_eq!(counts[&6], OutcomeCounts { success: 1, rejected: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&7], OutcomeCounts { success: 1, rejected: 1, ..OutcomeCounts::default() });
}

#[test]
fn a_dropped_permit_gives_its_probe_back_and_records_nothing() {
    let hot = closed();
    hot.install(&probe(2, 1, 1));
    drop(hot.try_acquire().unwrap());
    let again = hot.try_acquire().expect("the dropped probe's slot is back");
    assert!(again.is_probe());
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    // A probe of a finished round gives nothing to the next one.
    hot.install(&probe(3, 1, 2));
    let current = hot.try_acquire().unwrap();
    drop(again);
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    drop(current);
    hot.install(&snap(4, Admission::Allow));
    drop(hot.try_acquire().unwrap());
    let counts = counts_by_generation(&hot.drain());
    assert_eq!(counts.len(), 2, "only the rejections were counted: {counts:?}");
    assert_eq!(counts[&2], OutcomeCounts { rejected: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&3], OutcomeCounts { rejected: 1, ..OutcomeCounts::default() });
}

/// An owned permit is the same permit holding a share of the breaker: it records the same,
/// gives its probe slot back when dropped, can be recorded on another thread, and gives its
/// share back when done; a rejection takes no share.
#[test]
fn owned_permits_record_and_give_back_like_borrowed_ones() {
    let breaker = Breaker::new(Arc::new(closed()));
    let shares = || Arc::strong_count(breaker.hot_path());
    let owned = breaker.try_acquire_owned().unwrap();
    assert!(!owned.is_probe());
    assert_eq!(shares(), 2, "an owned permit holds a share of the breaker");
    std::thread::spawn(move || owned.failure()).join().unwrap();
    breaker.try_acquire_owned().unwrap().success();
    drop(breaker.try_acquire_owned().unwrap());
    assert_eq!(shares(), 1, "every permit gave its share back");

    breaker.hot_path().install(&probe(2, 1, 1));
    drop(breaker.try_acquire_owned().unwrap());
    let again = breaker.try_acquire_owned().expect("the dropped probe's slot is back");
    assert!(again.is_probe());
    let rejected = breaker.try_acquire_owned().map(drop).unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::NoProbeLeft);
    assert_eq!(shares(), 2, "a rejection takes no share");
    again.slow(Duration::from_secs(1));

    let counts = counts_by_generation(&breaker.hot_path().drain());
    assert_eq!(counts[&1], OutcomeCounts { success: 1, failure: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&2], OutcomeCounts { success: 1, rejected: 1, ..OutcomeCounts::default() });
}

#[test]
fn a_fraction_admits_its_share_of_calls() {
    let hot = closed();
    hot.install(&snap(2, Admission::Fraction { per_mille: 300 }));
    let mut admitted = 0u64;
    for _ in 0..10_000 {
        match hot.try_acquire() {
            Ok(permit) => {
                admitted += 1;
                permit.success();
            }
            Err(rejected) => {
                assert_eq!((rejected.reason(), rejected.state()), (RejectReason::NotAdmitted, StateLabel::Ramping));
            }
        }
    }
    // One thread uses one shard, which admits exactly 300 of every thousand.
    assert_eq!(admitted, 3_000);
    let counts = counts_by_generation(&hot.drain())[&2];
    assert_eq!(counts, OutcomeCounts { success: 3_000, rejected: 7_000, ..OutcomeCounts::default() });
}

#[test]
fn a_disabled_breaker_records_nothing() {
    let hot = closed();
    let mut disabled = snap(2, Admission::Allow);
    disabled.record = false;
    disabled.state = StateLabel::Disabled;
    hot.install(&disabled);
    assert_eq!(hot.state(), StateLabel::Disabled);
    hot.try_acquire().unwrap().success();
    hot.try_acquire().unwrap().failure();
    let mut silent_reject = snap(3, Admission::Reject);
    silent_reject.record = false;
    hot.install(&silent_reject);
    assert_eq!(rejection(&hot).reason(), RejectReason::Open);
    assert_eq!(hot.drain(), Drained::default());
}

#[test]
fn close_shuts_down_for_good() {
    let hot = closed();
    hot.close();
    let rejected = rejection(&hot);
    assert_eq!((rejected.reason(), rejected.retry_after()), (RejectReason::ShutDown, None));
    hot.install(&snap(2, Admission::Allow));
    assert_eq!(rejection(&hot).reason(), RejectReason::ShutDown, "an install does not reopen a closed path");
    assert_eq!(hot.snapshot().generation, 2);
    assert_eq!(hot.drain(), Drained::default(), "shut-down rejections are not demand");
}

#[test]
fn outcomes_count_under_the_generation_their_permit_was_granted_under() {
    let hot = closed();
    let early = hot.try_acquire().unwrap();
    let late = hot.try_acquire().unwrap();
    hot.install(&snap(2, Admission::Allow));
    early.failure();
    hot.try_acquire().unwrap().success();
    let counts = counts_by_generation(&hot.drain());
    assert_eq!(counts[&1], OutcomeCounts { failure: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&2], OutcomeCounts { success: 1, ..OutcomeCounts::default() });
    // Finished after a drain and after yet another install: still generation 1's.
    hot.install(&snap(3, Admission::Allow));
    late.success();
    let drained = hot.drain();
    assert_eq!(
        counts_by_generation(&drained),
        BTreeMap::from([(1, OutcomeCounts { success: 1, ..Default::default() })])
    );
    assert_eq!(drained.stale_calls, 0);
}

#[test]
fn a_permit_outliving_many_generations_is_counted_stale() {
    let hot = closed();
    let ancient = hot.try_acquire().unwrap();
    let undrained = hot.try_acquire().unwrap();
    undrained.success();
    // Eight generations later (as many as the machine keeps, and as many slots as a shard
    // has) every slot has moved on, generation 1's among them.
    for generation in 2..=9 {
        hot.install(&snap(generation, Admission::Allow));
        hot.try_acquire().unwrap().success();
    }
    ancient.success();
    let drained = hot.drain();
    let counts = counts_by_generation(&drained);
    assert!(!counts.contains_key(&1), "{counts:?}");
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (2..=9).collect::<Vec<_>>());
    // The undrained success of generation 1 and the late one: both stale, none lost.
    assert_eq!(drained.stale_calls, 2);
}

#[test]
fn streaks_report_the_longest_run_since_the_last_drain_with_carry_over() {
    let (hot, _) = hot_with(HotSettings { slow_call_threshold_ms: None, track_streaks: true, trip_streak: None });
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Ignored, Outcome::Failure, Outcome::Success] {
        hot.try_acquire().unwrap().record(outcome);
    }
    hot.try_acquire().unwrap().failure();
    hot.try_acquire().unwrap().failure();
    let drained = hot.drain();
    assert_eq!(drained.outcomes[0].longest_failure_streak, 3, "ignored calls do not break a run");
    hot.try_acquire().unwrap().failure();
    assert_eq!(hot.drain().outcomes[0].longest_failure_streak, 3, "the run of two carried over and grew to three");
    hot.try_acquire().unwrap().success();
    hot.try_acquire().unwrap().failure();
    assert_eq!(hot.drain().outcomes[0].longest_failure_streak, 3, "the carried run counts until broken");
    hot.try_acquire().unwrap().success();
    assert_eq!(hot.drain().outcomes[0].longest_failure_streak, 1);

    let untracked = closed();
    untracked.try_acquire().unwrap().failure();
    assert_eq!(untracked.drain().outcomes[0].longest_failure_streak, 0);
}

#[test]
fn snapshot_returns_what_was_installed() {
    let hot = closed();
    let mut s = probe(9, 4, 3);
    s.fleet = StateLabel::Open;
    s.local = Some(StateLabel::HalfOpen);
    s.retry_at = Some(Millis(77));
    s.outage = true;
    hot.install(&s);
    assert_eq!(hot.snapshot(), s);
    let breaker = Breaker::new(Arc::new(hot));
    assert_eq!(breaker.state(), StateLabel::HalfOpen);
    assert_eq!(breaker.name().as_str(), "payments");
}

#[test]
fn call_records_by_classifier() {
    let hot = Arc::new(closed());
    let breaker = Breaker::new(Arc::clone(&hot));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert_eq!(breaker.call(async { Ok::<_, &str>(5) }).await, Ok(5));
        assert_eq!(breaker.call(async { Err::<u8, _>("boom") }).await, Err(CallError::Failed("boom")));
        let neutral = |e: &&str| if *e == "404" { Outcome::Ignored } else { Outcome::Failure };
        assert!(breaker.call_classified(&neutral, async { Err::<u8, _>("404") }).await.is_err());
        // A whole-result classifier: an `Ok` answer can be a failure, and comes back as it is.
        let in_band = |r: &Result<u16, &str>| if matches!(r, Ok(500..)) { Outcome::Failure } else { Outcome::Success };
        assert_eq!(breaker.call_result_classified(&in_band, async { Ok::<u16, &str>(503) }).await, Ok(503));
        assert_eq!(breaker.call_result_classified(&in_band, async { Ok::<u16, &str>(200) }).await, Ok(200));
        assert_eq!(
            hot.drain().outcomes[0].counts,
            OutcomeCounts { success: 2, failure: 2, ignored: 1, ..OutcomeCounts::default() }
        );
        hot.install(&snap(2, Admission::Reject));
        let Err(CallError::Rejected(rejected)) = breaker.call(async { Ok::<_, &str>(1) }).await else {
            panic!("an open breaker runs nothing")
        };
        assert_eq!(rejected.reason(), RejectReason::Open);
    });
}

/// Three callers and an actor that installs and drains without pause: every call recorded or
/// rejected is drained exactly once (or stale), under a generation that was installed, and
/// no probe round admits more probes than its grant.
#[test]
fn racing_installs_and_drains_lose_nothing_and_never_over_issue_probes() {
    const WORKERS: u64 = 3;
    const CALLS: u64 = 70_000;
    const GRANT: u32 = 3;
    /// Calls each caller may make per step of the actor: the two pace each other (without
    /// sleeping), so the race covers many rounds however the threads are scheduled.
    const PER_STEP: u64 = 100;
    let hot = Arc::new(closed());
    let finished = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let step = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (hot, finished, progress, step) =
                (Arc::clone(&hot), Arc::clone(&finished), Arc::clone(&progress), Arc::clone(&step));
            std::thread::spawn(move || {
                // Outcomes recorded plus rejections counted as demand; probes recorded.
                let (mut events, mut probe_successes) = (0u64, 0u64);
                for i in 0..CALLS {
                    while i >= (step.load(Ordering::Relaxed) + 1) * PER_STEP {
                        std::thread::yield_now();
                    }
                    match hot.try_acquire() {
                        // Probes record successes and nothing else does: the drained
                        // successes of a round are its probes.
                        Ok(permit) if permit.is_probe() => {
                            if (i + w) % 5 == 0 {
                                drop(permit);
                            } else {
                                permit.success();
                                events += 1;
                                probe_successes += 1;
                            }
                        }
                        Ok(permit) => {
                            if i % 3 == 0 {
                                permit.ignore();
                            } else {
                                permit.failure();
                            }
                            events += 1;
                        }
                        Err(rejected) => {
                            assert_ne!(rejected.reason(), RejectReason::ShutDown);
                            events += 1;
                        }
                    }
                    if i % 16 == 15 {
                        progress.fetch_add(16, Ordering::Relaxed);
                    }
                }
                finished.fetch_add(1, Ordering::Relaxed);
                (events, probe_successes)
            })
        })
        .collect();

    let actor = {
        let (hot, finished, progress, step) =
            (Arc::clone(&hot), Arc::clone(&finished), Arc::clone(&progress), Arc::clone(&step));
        std::thread::spawn(move || {
            let mut round_of: BTreeMap<u64, u64> = BTreeMap::new();
            let mut installed = BTreeSet::from([1u64]);
            let mut drained = Vec::new();
            let (mut generation, mut round, mut steps) = (1u64, 0u64, 0u64);
            // Lets the callers make half the calls this step released (they can always make
            // them), or waits for them to be done.
            let pace = |steps: u64| {
                step.store(steps, Ordering::Relaxed);
                let until = steps * PER_STEP * WORKERS / 2;
                while progress.load(Ordering::Relaxed) < until && finished.load(Ordering::Relaxed) < WORKERS {
                    std::thread::yield_now();
                }
            };
            while finished.load(Ordering::Relaxed) < WORKERS {
                round += 1;
                let states = (0..3).map(|_| probe(0, GRANT, round)).chain(
                    [Admission::Allow, Admission::Fraction { per_mille: 500 }, Admission::Reject].map(|a| snap(0, a)),
                );
                for mut s in states {
                    generation += 1;
                    s.generation = generation;
                    if let Admission::Probe { round, .. } = s.admission {
                        round_of.insert(generation, round);
                    }
                    hot.install(&s);
                    installed.insert(generation);
                    steps += 1;
                    pace(steps);
                    // Drain on most steps, sometimes letting two generations pile up.
                    if steps % 4 != 0 {
                        drained.push(hot.drain());
                    }
                }
            }
            (drained, round_of, installed, round)
        })
    };

    let (events, probe_successes) =
        workers.into_iter().map(|w| w.join().unwrap()).fold((0, 0), |(e, p), (we, wp)| (e + we, p + wp));
    let (mut drained, round_of, installed, rounds) = actor.join().unwrap();
    drained.push(hot.drain());

    let mut total = 0u64;
    let mut stale = 0u64;
    let mut probes_per_round: BTreeMap<u64, u64> = BTreeMap::new();
    for d in &drained {
        stale += d.stale_calls;
        let generations: Vec<u64> = d.outcomes.iter().map(|o| o.generation).collect();
        assert!(generations.windows(2).all(|w| w[0] < w[1]), "oldest first, each once: {generations:?}");
        for o in &d.outcomes {
            assert!(installed.contains(&o.generation), "generation {} was never installed", o.generation);
            let c = o.counts;
            total += c.success + c.failure + c.slow + c.ignored + c.rejected;
            if c.success > 0 {
                let round = round_of.get(&o.generation).expect("only probe generations see successes");
                *probes_per_round.entry(*round).or_default() += c.success;
            }
        }
    }
    let full_rounds = probes_per_round.values().filter(|&&p| p == u64::from(GRANT)).count();
    eprintln!(
        "{rounds} rounds ({full_rounds} used their grant), {} drains, {total} drained, {stale} stale",
        drained.len()
    );
    assert_eq!(total + stale, events, "conservation: {total} drained + {stale} stale");
    assert!(probe_successes <= rounds * u64::from(GRANT), "{probe_successes} probes over {rounds} rounds");
    for (round, probes) in &probes_per_round {
        assert!(*probes <= u64::from(GRANT), "round {round} admitted {probes} probes, grant {GRANT}");
    }
    assert!(rounds >= 3 && full_rounds > 0, "the race covered probe rounds ({rounds}, {full_rounds} used up)");
}

/// Counter shards belong to one thread each (see `hot::OWNED_SHARDS`): a permit recorded
/// by another thread than the one that acquired it records on the recording thread's shard;
/// threads that exit give their shard to the next thread; more threads than there are owned
/// shards share locked ones. Across all of that, with drains racing, every call is drained
/// once under its generation.
#[test]
fn permits_moving_between_threads_and_threads_coming_and_going_lose_nothing() {
    use breaker_actors::hot::OWNED_SHARDS;
    const WAVES: usize = 3;
    const CALLS: u64 = 500;
    let threads = OWNED_SHARDS + 16;
    let hot = Arc::new(closed());
    let done = Arc::new(AtomicU64::new(0));
    let drain_thread = {
        let (hot, done) = (Arc::clone(&hot), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut drained = Vec::new();
            while done.load(Ordering::Acquire) == 0 {
                drained.push(hot.drain());
                std::thread::yield_now();
            }
            drained
        })
    };
    for _ in 0..WAVES {
        // A wave of more threads than owned shards, all alive at once; each acquires, hands
        // every other permit to a thread of its own to record, and exits.
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let wave: Vec<_> = (0..threads)
            .map(|_| {
                let (hot, barrier) = (Arc::clone(&hot), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    std::thread::scope(|scope| {
                        let (to_recorder, recorder_inbox) = std::sync::mpsc::channel();
                        scope.spawn(move || {
                            for permit in recorder_inbox {
                                breaker_actors::hot::Permit::failure(permit);
                            }
                        });
                        for i in 0..CALLS {
                            let permit = hot.try_acquire().unwrap();
                            if i % 2 == 0 {
                                permit.success();
                            } else {
                                to_recorder.send(permit).unwrap();
                            }
                        }
                    });
                })
            })
            .collect();
        for thread in wave {
            thread.join().unwrap();
        }
    }
    done.store(1, Ordering::Release);
    let mut drained = drain_thread.join().unwrap();
    drained.push(hot.drain());

    let calls = (WAVES * threads) as u64 * CALLS;
    let mut by_generation: BTreeMap<u64, OutcomeCounts> = BTreeMap::new();
    for d in &drained {
        assert_eq!(d.stale_calls, 0, "one generation: nothing is late");
        for (generation, counts) in counts_by_generation(d) {
            by_generation.entry(generation).or_default().add(&counts);
        }
    }
    let expected = OutcomeCounts { success: calls / 2, failure: calls / 2, ..OutcomeCounts::default() };
    assert_eq!(by_generation, BTreeMap::from([(1, expected)]));
}

fn streak_of(drained: &Drained, generation: u64) -> Option<u64> {
    drained.outcomes.iter().find(|o| o.generation == generation).map(|o| o.longest_failure_streak)
}

/// Issue 12, item 2: a run of failures belongs to the generation its permits were granted
/// under, so it never crosses a phase (every phase is a new generation).
#[test]
fn a_failure_streak_never_crosses_a_generation() {
    let (hot, _) = hot_with(HotSettings { slow_call_threshold_ms: None, track_streaks: true, trip_streak: None });
    hot.install(&snap(2, Admission::Allow));
    hot.try_acquire().unwrap().failure();
    hot.try_acquire().unwrap().failure();
    assert_eq!(streak_of(&hot.drain(), 2), Some(2));
    // Tripped, then closed again without a half-open round: a new generation.
    hot.install(&snap(3, Admission::Reject));
    assert_eq!(rejection(&hot).reason(), RejectReason::Open);
    hot.install(&snap(4, Admission::Allow));
    hot.try_acquire().unwrap().success();
    let drained = hot.drain();
    assert_eq!(streak_of(&drained, 4), Some(0), "the old run is not the new generation's: {drained:?}");
    assert_eq!(streak_of(&drained, 3), Some(0), "nor the open generation's");

    // Without a success either: the new generation's run starts from its own first failure.
    hot.install(&snap(5, Admission::Allow));
    hot.try_acquire().unwrap().failure();
    hot.try_acquire().unwrap().failure();
    let late = hot.try_acquire().unwrap();
    hot.install(&snap(6, Admission::Allow));
    hot.try_acquire().unwrap().failure();
    // A late failure of generation 5 is part of no run: not of 6's, and 5's ended with it.
    late.failure();
    let drained = hot.drain();
    assert_eq!((streak_of(&drained, 5), streak_of(&drained, 6)), (Some(2), Some(1)), "{drained:?}");
    // Nor does a late success of an older generation end a newer generation's run.
    let late = hot.try_acquire().unwrap();
    hot.install(&snap(7, Admission::Allow));
    hot.try_acquire().unwrap().failure();
    late.success();
    hot.try_acquire().unwrap().failure();
    assert_eq!(streak_of(&hot.drain(), 7), Some(2));
}

/// Issue 12, item 3: an ignored probe is neutral, so it gives its slot back (as a dropped
/// one does) and the grant can be used again in the round; a node with no grant is told so.
#[test]
fn an_ignored_probe_gives_its_slot_back_and_a_node_without_a_grant_is_told_so() {
    let hot = closed();
    hot.install(&probe(2, 0, 1));
    let none = rejection(&hot);
    assert_eq!((none.reason(), none.state()), (RejectReason::NoProbeGranted, StateLabel::HalfOpen));
    assert!(none.to_string().contains("no probe granted to this node yet"), "{none}");
    // The grant arrives within the round.
    hot.install(&probe(2, 1, 1));
    let first = hot.try_acquire().unwrap();
    assert!(first.is_probe());
    let taken = rejection(&hot);
    assert_eq!(taken.reason(), RejectReason::NoProbeLeft);
    assert!(taken.to_string().contains("probes for the round are taken"), "{taken}");
    first.ignore();
    let second = hot.try_acquire().expect("the ignored probe's slot is back");
    second.record(Outcome::Ignored);
    let third = hot.try_acquire().expect("also when recorded as ignored through `record`");
    third.success();
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft, "a decisive probe keeps its slot");
    // An ignored probe of a finished round gives nothing to the next one.
    let old = {
        hot.install(&probe(3, 1, 2));
        hot.try_acquire().unwrap()
    };
    hot.install(&probe(4, 1, 3));
    let current = hot.try_acquire().unwrap();
    old.ignore();
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    current.failure();
    let counts = counts_by_generation(&hot.drain());
    assert_eq!(counts[&2], OutcomeCounts { success: 1, ignored: 2, rejected: 3, ..OutcomeCounts::default() });
    assert_eq!(counts[&3], OutcomeCounts { ignored: 1, ..OutcomeCounts::default() });
    assert_eq!(counts[&4], OutcomeCounts { failure: 1, rejected: 1, ..OutcomeCounts::default() });
}

/// The node-local overlay's consecutive-failure rule trips in the hot path on the crossing
/// call itself: the call after the Nth failure in a row is rejected before any drain, and
/// the machine learns of it on the next drain (the overlay trips once, every failure is
/// counted once).
#[test]
fn the_overlay_streak_rule_trips_on_the_crossing_call() {
    use breaker_actors::machine::{
        BreakerConfig, Effect, Event, Input, LocalOverlayPolicy, Machine, NodeId, NodeParams, TripPolicy,
    };
    const LIMIT: u32 = 5;
    let config = BreakerConfig {
        local: Some(LocalOverlayPolicy {
            trip: TripPolicy { consecutive_failures: Some(LIMIT), ..LocalOverlayPolicy::default().trip },
            ..LocalOverlayPolicy::default()
        }),
        ..BreakerConfig::default()
    };
    let valid = config.validate().unwrap();
    let name = BreakerName::new("payments").unwrap();
    let params =
        NodeParams { breaker: name.clone(), node: NodeId::new("n1").unwrap(), incarnation: 1, lease_margin_ms: 100 };
    let mut machine = Machine::with_valid(params, valid.clone());
    let hot = HotPath::new(name, HotSettings::from_config(&valid), CoarseClock::new());
    hot.install(&machine.snapshot());
    // A success in between restarts the run: only LIMIT failures in a row trip.
    for _ in 0..LIMIT - 1 {
        hot.try_acquire().unwrap().failure();
    }
    hot.try_acquire().unwrap().success();
    for _ in 0..LIMIT - 1 {
        hot.try_acquire().unwrap().failure();
    }
    assert!(hot.try_acquire().is_ok_and(|p| {
        p.failure();
        true
    }));
    let rejected = rejection(&hot);
    assert_eq!((rejected.reason(), rejected.state()), (RejectReason::Open, StateLabel::Open), "{rejected}");
    assert_eq!(hot.state(), StateLabel::Open);
    // The next drain tells the machine: its overlay trips on the same evidence, once.
    let drained = hot.drain();
    let failures: u64 = drained.outcomes.iter().map(|o| o.counts.failure).sum();
    assert_eq!(failures, u64::from(2 * LIMIT - 1), "every failure counted once");
    let mut effects = Vec::new();
    for outcomes in drained.outcomes {
        effects.extend(machine.step(Millis(10), Input::LocalOutcomes(outcomes)));
    }
    let trips = effects
        .iter()
        .filter(|e| matches!(e, Effect::Event(Event::LocalTransition { to: StateLabel::Open, .. })))
        .count();
    assert_eq!(trips, 1, "{effects:?}");
    let snapshot = machine.snapshot();
    assert_eq!((snapshot.state, snapshot.local), (StateLabel::Open, Some(StateLabel::Open)));
    hot.install(&snapshot);
    assert_eq!(rejection(&hot).reason(), RejectReason::Open);
    assert_eq!(hot.drain().outcomes.iter().map(|o| o.counts.failure).sum::<u64>(), 0, "nothing twice");
}

/// `has_undrained` is what the registry's flusher asks: false for a breaker nobody called
/// or one drained since its last call, true while a count waits (rejections too).
#[test]
fn has_undrained_says_whether_a_drain_would_find_something() {
    let hot = closed();
    assert!(!hot.has_undrained(), "never called");
    hot.try_acquire().unwrap().success();
    assert!(hot.has_undrained());
    assert_eq!(counts_by_generation(&hot.drain())[&1].success, 1);
    assert!(!hot.has_undrained(), "drained");
    drop(hot.try_acquire().unwrap());
    assert!(!hot.has_undrained(), "a dropped permit records nothing");
    hot.install(&snap(2, Admission::Reject));
    let _ = rejection(&hot);
    assert!(hot.has_undrained(), "a rejection is counted, as demand");
    hot.drain();
    // A thread beyond the inline shard slots records too.
    std::thread::scope(|s| {
        for _ in 0..12 {
            s.spawn(|| {
                let _ = hot.try_acquire();
            });
        }
    });
    assert!(hot.has_undrained());
    assert_eq!(counts_by_generation(&hot.drain())[&2].rejected, 12);
    assert!(!hot.has_undrained());
}

#[test]
fn rejections_are_drained_by_reason_and_summed_for_the_machine() {
    let hot = closed();
    hot.install(&snap(2, Admission::Reject));
    for _ in 0..3 {
        rejection(&hot);
    }
    hot.install(&snap(3, Admission::Fraction { per_mille: 0 }));
    rejection(&hot);
    hot.install(&probe(4, 0, 1));
    rejection(&hot);
    hot.install(&probe(5, 1, 2));
    let probe_permit = hot.try_acquire().unwrap();
    assert_eq!(rejection(&hot).reason(), RejectReason::NoProbeLeft);
    drop(probe_permit);
    let drained = hot.drain();
    assert_eq!(drained.rejections, [3, 1, 1, 1], "open, no probe left, no probe granted, not admitted");
    let rejected: u64 = drained.outcomes.iter().map(|o| o.counts.rejected).sum();
    assert_eq!(rejected, 6, "every reason is demand");
}

/// A recorder of histogram observations and counter increments, by metric name.
#[derive(Default)]
struct Observed(std::sync::Mutex<BTreeMap<String, Arc<Samples>>>);

#[derive(Default)]
struct Samples(std::sync::Mutex<Vec<f64>>, AtomicU64);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl metrics::CounterFn for Samples {
    fn increment(&self, value: u64) {
        self.1.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.1.store(value, Ordering::Relaxed);
    }
}

impl Observed {
    fn cell(&self, key: &metrics::Key) -> Arc<Samples> {
        let labels: Vec<String> = key.labels().map(|l| l.value().to_owned()).collect();
        let name = format!("{}{labels:?}", key.name());
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        self.0.lock().unwrap().get(name).map(|s| s.0.lock().unwrap().clone()).unwrap_or_default()
    }
}

impl metrics::Recorder for Observed {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.cell(key))
    }
}

fn observed_hot(settings: HotSettings) -> (HotPath, CoarseClock, Arc<Observed>) {
    let recorder = Arc::new(Observed::default());
    let metrics = metrics::with_local_recorder(&*recorder, || CallMetrics {
        durations: ["success", "failure", "slow", "ignored"].map(|o| metrics::histogram!("duration", "outcome" => o)),
        shut_down_rejections: metrics::counter!("shut_down"),
    });
    let (hot, clock) = hot_with(settings);
    (hot.with_metrics(metrics), clock, recorder)
}

#[test]
fn timed_calls_are_observed_by_outcome_and_untimed_ones_are_not() {
    let (hot, clock, observed) =
        observed_hot(HotSettings { slow_call_threshold_ms: Some(100), ..HotSettings::default() });
    clock.advance_to(1_000);
    let fast = hot.try_acquire().unwrap();
    let failing = hot.try_acquire().unwrap();
    let slow = hot.try_acquire().unwrap();
    clock.advance_to(1_040);
    fast.success();
    failing.failure();
    clock.advance_to(1_250);
    slow.success();
    hot.try_acquire().unwrap().slow(Duration::from_millis(300));
    assert_eq!(observed.samples("duration[\"success\"]"), [0.04]);
    assert_eq!(observed.samples("duration[\"failure\"]"), [0.04]);
    assert_eq!(observed.samples("duration[\"slow\"]"), [0.25, 0.3], "by the coarse clock, then the caller's figure");

    // No threshold: untimed, unless the caller measured the call.
    let (hot, clock, observed) = observed_hot(HotSettings::default());
    let permit = hot.try_acquire().unwrap();
    clock.advance_to(500);
    permit.success();
    hot.try_acquire().unwrap().failure();
    assert!(observed.samples("duration[\"success\"]").is_empty());
    assert!(observed.samples("duration[\"failure\"]").is_empty());
    hot.try_acquire().unwrap().slow(Duration::from_millis(7));
    assert_eq!(observed.samples("duration[\"success\"]"), [0.007], "no threshold: a success, measured");

    // A rejection is not timed; a shut-down breaker's is counted here (no drain takes it).
    hot.install(&snap(2, Admission::Reject));
    rejection(&hot);
    hot.close();
    rejection(&hot);
    rejection(&hot);
    let counted = observed.0.lock().unwrap().get("shut_down[]").map(|s| s.1.load(Ordering::Relaxed));
    assert_eq!(counted, Some(2));
    assert_eq!(hot.drain().rejections, [1, 0, 0, 0]);
}
