//! Multi-node behaviour of the real machine, driven through the deterministic fleet
//! harness: propagation of a trip, the fleet-wide probe budget, lease takeover after a
//! crash and a graceful hand-over, bootstrap of a restarted node, and reproducibility.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use breaker_actors::machine::{
    Admission, BreakerConfig, Event, FleetState, HalfOpenPolicy, OpenPolicy, Reason, StateLabel, TripPolicy,
    WindowConfig,
};
use model_check::fleet::{Fleet, FleetSpec};

const FLUSH_MS: u64 = 10;
const TTL_MS: u64 = 1_500;

/// The simulation's configuration: trips at 50 % of 40 calls (10 at least), open 1 s, two
/// probes that must both succeed, 2 s max wait.
fn config() -> BreakerConfig {
    model_check::sim::sim_config()
}

fn spec(nodes: usize, dependency: Vec<(u64, u16)>) -> FleetSpec {
    FleetSpec {
        nodes,
        breaker: "payments".into(),
        config: config(),
        lease_ttl_ms: TTL_MS,
        lease_margin_ms: 300,
        flush_ms: FLUSH_MS,
        calls_per_flush: 3,
        seed: 42,
        dependency,
    }
}

fn trips(fleet: &Fleet) -> Vec<(u64, breaker_actors::machine::Decision)> {
    fleet.history().iter().filter(|(_, d)| matches!(d.reason, Reason::Tripped { .. })).cloned().collect()
}

fn all_admit(fleet: &Fleet, admission: Admission) -> bool {
    (0..fleet.len()).filter(|&i| fleet.is_up(i)).all(|i| fleet.snapshot(i).unwrap().admission == admission)
}

/// Steps until `done` holds, at most `within_ms` of sim time; the time it first held.
fn step_until(fleet: &mut Fleet, within_ms: u64, mut done: impl FnMut(&Fleet) -> bool) -> Option<u64> {
    let deadline = fleet.now() + within_ms;
    while fleet.now() < deadline {
        fleet.step();
        if done(fleet) {
            return Some(fleet.now());
        }
    }
    None
}

#[test]
fn a_trip_reaches_every_node_in_the_step_it_is_decided() {
    let mut fleet = Fleet::new(spec(3, vec![(0, 0), (2_000, 800)])).unwrap();
    fleet.run_until(2_000);
    assert!(trips(&fleet).is_empty(), "a healthy dependency tripped the fleet");
    assert!(all_admit(&fleet, Admission::Allow));
    assert!(fleet.decider().is_some(), "no node acquired the lease");

    let tripped_at = step_until(&mut fleet, 2_000, |f| !trips(f).is_empty()).expect("no trip within 2 s of failing");
    let trip = trips(&fleet)[0].1.clone();
    assert!(matches!(trip.state, FleetState::Open { .. }));
    assert_eq!(trip.decider, *fleet.node_id(fleet.decider().unwrap()).unwrap());
    // Right after the step that wrote it, every node enforces it.
    for i in 0..3 {
        let snapshot = fleet.snapshot(i).unwrap();
        assert_eq!(snapshot.admission, Admission::Reject, "n{} not open after the trip", i + 1);
        assert_eq!(fleet.machine(i).unwrap().applied_id(), trip.id);
        let applied = fleet.events().iter().any(|(at, node, e)| {
            *at == tripped_at && *node == i && matches!(e, Event::Applied { id, .. } if *id == trip.id)
        });
        assert!(applied, "n{} never announced applying the trip", i + 1);
    }
    // And nothing gets through while it is open.
    let before = fleet.total_counters();
    fleet.run_until(tripped_at + 500);
    let after = fleet.total_counters();
    assert_eq!(after.admitted(), before.admitted(), "calls admitted while open");
    assert!(after.rejected > before.rejected);
    assert_eq!(fleet.admitted_by_fleet_state().get(&StateLabel::Open), None);
}

#[test]
fn the_probe_budget_is_fleet_wide_and_the_fleet_recovers() {
    // Certain failure while failing: every half-open round then fails, the later ones close.
    let mut s = spec(5, vec![(0, 0), (1_000, 1_000), (4_000, 0)]);
    s.calls_per_flush = 4;
    let mut fleet = Fleet::new(s).unwrap();
    fleet.run_until(9_000);
    assert!(fleet.violations().is_empty(), "{:?}", fleet.violations());

    let half_opens: Vec<_> = fleet
        .history()
        .iter()
        .filter_map(|(_, d)| match &d.state {
            FleetState::HalfOpen { budget, grants } => Some((d.phase, *budget, grants.clone())),
            _ => None,
        })
        .collect();
    assert!(half_opens.len() >= 2, "expected a failed and a successful round: {half_opens:?}");
    for (phase, budget, grants) in &half_opens {
        assert_eq!(*budget, 2);
        assert!(grants.iter().map(|g| g.probes).sum::<u32>() <= 2, "phase {phase}: {grants:?}");
    }
    let probes = fleet.probes_by_phase();
    assert!(!probes.is_empty(), "no probe was ever admitted");
    for (phase, n) in &probes {
        assert!(*n <= 2, "phase {phase}: {n} probes admitted fleet-wide, budget 2");
        assert!(half_opens.iter().any(|(p, _, _)| p == phase), "probes under a phase that never half-opened");
    }
    // Five nodes each wanting probes: a per-node budget would have let 10 through.
    assert_eq!(fleet.total_counters().probes_admitted, probes.values().sum::<u64>());

    let reasons: Vec<_> = fleet.history().iter().map(|(_, d)| &d.reason).collect();
    assert!(reasons.iter().any(|r| matches!(r, Reason::ProbeFailed { .. })), "{reasons:?}");
    assert!(matches!(fleet.current_decision().unwrap().reason, Reason::ProbesSucceeded { successes: 2 }));
    for i in 0..5 {
        let snapshot = fleet.snapshot(i).unwrap();
        assert_eq!((snapshot.admission, snapshot.state), (Admission::Allow, StateLabel::Closed), "n{}", i + 1);
    }
    assert_eq!(fleet.admitted_by_fleet_state().get(&StateLabel::Open), None);
}

#[test]
fn a_crashed_decider_is_replaced_after_the_ttl_and_the_new_one_decides() {
    let mut fleet = Fleet::new(spec(3, vec![(0, 0), (4_000, 1_000), (6_000, 0)])).unwrap();
    fleet.run_until(1_000);
    let old = fleet.decider().unwrap();
    let old_term = fleet.lease().unwrap().term;
    let killed_at = fleet.now();
    fleet.kill(old).unwrap();

    let taken_at = step_until(&mut fleet, 3 * TTL_MS, |f| f.decider().is_some_and(|d| d != old))
        .expect("no takeover after the decider crashed");
    let waited = taken_at - killed_at;
    // The lease was renewed at most ttl/3 before the crash and lives a full ttl after that.
    assert!(waited >= TTL_MS - TTL_MS / 3, "took over after {waited} ms, before the lease could expire");
    assert!(waited <= TTL_MS + FLUSH_MS, "took over only after {waited} ms");
    let new = fleet.decider().unwrap();
    let new_term = fleet.lease().unwrap().term;
    assert!(new_term > old_term);
    // The reports the two survivors published while nobody held the lease were kept in
    // the stream and replayed to the new decider.
    let published_meanwhile = 2 * (waited / FLUSH_MS);
    let counted = fleet.machine(new).unwrap().stats().reports_counted;
    assert!(counted >= published_meanwhile, "replayed {counted} reports, {published_meanwhile} were published");
    assert_eq!(fleet.stats().reports_missed, 0);
    let restated = fleet.current_decision().unwrap();
    assert_eq!(restated.id.term, new_term);
    assert!(matches!(restated.reason, Reason::TermStarted { .. }));

    // The new decider trips and recovers the fleet under its term.
    fleet.run_until(9_000);
    assert!(fleet.violations().is_empty(), "{:?}", fleet.violations());
    let trip = trips(&fleet).into_iter().next().expect("the new decider never tripped");
    assert_eq!(trip.1.id.term, new_term);
    assert_eq!(trip.1.decider, *fleet.node_id(new).unwrap());
    assert!(matches!(fleet.current_decision().unwrap().state, FleetState::Closed));
    assert!(fleet.current_decision().unwrap().id.term == new_term);
    assert!(all_admit(&fleet, Admission::Allow));
}

#[test]
fn a_graceful_shutdown_hands_the_lease_over_within_a_step() {
    let mut fleet = Fleet::new(spec(3, vec![])).unwrap();
    fleet.run_until(1_000);
    let old = fleet.decider().unwrap();
    let old_term = fleet.lease().unwrap().term;
    fleet.shutdown(old).unwrap();
    assert!(!fleet.is_up(old));
    assert_eq!(fleet.lease(), None, "the lease was not released");
    let stepped_down = fleet.events().iter().any(|(_, n, e)| {
        *n == old && matches!(e, Event::SteppedDown { reason: breaker_actors::machine::StepDownReason::Shutdown, .. })
    });
    assert!(stepped_down);

    let shut_at = fleet.now();
    let taken_at =
        step_until(&mut fleet, TTL_MS, |f| f.decider().is_some()).expect("no takeover after a graceful shutdown");
    assert!(taken_at - shut_at <= FLUSH_MS, "hand-over took {} ms", taken_at - shut_at);
    assert!(fleet.lease().unwrap().term > old_term);
    fleet.step();
    let current = fleet.current_decision().unwrap();
    assert_eq!(current.id.term, fleet.lease().unwrap().term, "the new decider did not restate the state");
}

#[test]
fn a_node_restarted_while_open_bootstraps_open() {
    let mut fleet = Fleet::new(spec(3, vec![(0, 0), (1_000, 1_000)])).unwrap();
    let tripped_at = step_until(&mut fleet, 3_000, |f| !trips(f).is_empty()).expect("never tripped");
    fleet.run_until(tripped_at + 200);
    let current = fleet.current_decision().unwrap().clone();
    assert!(matches!(current.state, FleetState::Open { .. }), "not open any more: {:?}", current.state);

    let target = (0..3).find(|&i| Some(i) != fleet.decider()).unwrap();
    let before = fleet.counters(target).unwrap();
    fleet.restart(target).unwrap();
    assert_eq!(fleet.incarnation(target), Some(2));
    let machine = fleet.machine(target).unwrap();
    assert!(machine.is_bootstrapped());
    assert_eq!(machine.applied_id(), current.id);
    let snapshot = fleet.snapshot(target).unwrap();
    assert_eq!((snapshot.admission, snapshot.state), (Admission::Reject, StateLabel::Open));

    fleet.step();
    let after = fleet.counters(target).unwrap();
    assert_eq!(after.admitted(), before.admitted(), "the restarted node let calls through while open");
    assert!(after.rejected > before.rejected);
}

#[test]
fn the_same_spec_gives_the_same_run_and_another_seed_another() {
    let run = |seed: u64| {
        let mut s = spec(3, vec![(0, 100), (1_000, 700), (3_000, 50)]);
        s.seed = seed;
        let mut fleet = Fleet::new(s).unwrap();
        fleet.run_until(1_500);
        fleet.restart(1).unwrap();
        fleet.run_until(2_500);
        let d = fleet.decider().unwrap();
        fleet.kill(d).unwrap();
        fleet.run_until(5_000);
        (fleet.trace_hash(), fleet.total_counters(), fleet.history().len())
    };
    let (a, counters_a, history_a) = run(7);
    let (b, counters_b, history_b) = run(7);
    assert_eq!(a, b);
    assert_eq!((counters_a, history_a), (counters_b, history_b));
    let (c, counters_c, _) = run(8);
    assert_ne!(a, c, "the seed changed nothing");
    assert_ne!(counters_a, counters_c);
}

#[test]
fn invalid_specs_are_refused() {
    let bad = |f: fn(&mut FleetSpec)| {
        let mut s = spec(3, vec![]);
        f(&mut s);
        Fleet::new(s).unwrap_err().to_string()
    };
    assert!(bad(|s| s.nodes = 0).contains("nodes"));
    assert!(bad(|s| s.flush_ms = 0).contains("flush_ms"));
    assert!(bad(|s| s.lease_margin_ms = s.lease_ttl_ms).contains("lease_margin_ms"));
    assert!(bad(|s| s.dependency = vec![(0, 1_001)]).contains("dependency"));
    assert!(bad(|s| s.dependency = vec![(10, 0), (5, 0)]).contains("dependency"));
    assert!(bad(|s| s.breaker = "a.b".into()).contains("name"));
    assert!(bad(|s| s.config.quorum = 0).contains("quorum"));
    let mut fleet = Fleet::new(spec(2, vec![])).unwrap();
    assert!(fleet.kill(2).is_err());
}

/// Regression: a local-overlay phase change inside a fleet half-open round used to start a
/// new hot-path probe count, so a node could use its fleet grant twice (seen with seeds 31,
/// 2 and 13: three probes on a budget of two).
#[test]
fn overlay_changes_inside_a_fleet_round_never_re_arm_its_grant() {
    use breaker_actors::machine::LocalOverlayPolicy;
    for seed in [31, 2, 13, 7, 99] {
        let mut s = spec(4, vec![(0, 0), (1_000, 600), (5_000, 0)]);
        s.seed = seed;
        s.calls_per_flush = 2;
        s.config.seed = seed;
        s.config.local = Some(LocalOverlayPolicy {
            trip: TripPolicy {
                window: WindowConfig::Count { calls: 10 },
                minimum_calls: 5,
                failure_rate: Some(0.5),
                consecutive_failures: Some(3),
                ..TripPolicy::default()
            },
            open: OpenPolicy::Fixed { duration_ms: 1_000 },
            half_open: HalfOpenPolicy { probe_budget: 1, success_threshold: 1, max_wait_ms: 2_000, ramp: None },
        });
        let mut fleet = Fleet::new(s).unwrap();
        fleet.run_until(9_000);
        let probes = fleet.probes_by_phase();
        assert!(!probes.is_empty(), "seed {seed}: the fleet never half-opened");
        for (phase, n) in &probes {
            assert!(*n <= 2, "seed {seed}: phase {phase}: {n} probes admitted fleet-wide, budget 2");
        }
    }
}

// A defect class seen on a loaded NATS node: the new decider's feed paused in the middle of
// its replay (its consumer re-created, its task not scheduled) and the decider judged the
// half it had seen, tripping on an outage whose recovery was still in the stream. With the
// replay's quiet period at 50 ms this test failed (seen failing); a pause shorter than the
// quiet period must leave the verdict to the whole replay.
#[test]
fn a_takeover_replay_that_stalls_midway_is_judged_as_a_whole() {
    // Healthy, then every call fails for 200 ms while nobody decides, then healthy again.
    let mut fleet = Fleet::new(spec(3, vec![(0, 0), (1_700, 1_000), (1_900, 0)])).unwrap();
    fleet.run_until(1_000);
    let old = fleet.decider().unwrap();
    fleet.kill(old).unwrap();
    // Whoever replays next stops before the recovery's reports, for 300 ms.
    fleet.stall_feed(1_900, 300);
    let taken_at = step_until(&mut fleet, 3 * TTL_MS, |f| f.decider().is_some_and(|d| d != old))
        .expect("no takeover after the decider crashed");
    assert!(taken_at > 1_900, "the takeover came before the outage ended ({taken_at} ms): no replay to judge");
    let new = fleet.decider().unwrap();
    fleet.run_until(taken_at + 1_000);
    assert!(fleet.violations().is_empty(), "{:?}", fleet.violations());
    let counted = fleet.machine(new).unwrap().stats().reports_counted;
    assert!(counted > 0, "nothing was replayed to the new decider");
    assert_eq!(trips(&fleet), Vec::new(), "the new decider tripped on half a replay");
    assert!(all_admit(&fleet, Admission::Allow));
}
