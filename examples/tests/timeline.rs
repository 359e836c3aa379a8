//! The scripted outage behind `make demo` tells its story: the fleet trips, probes within
//! the fleet-wide budget, closes after the recovery, survives the decider's crash with a
//! takeover at a higher term, and a node restarted while open is open from its first call.
//! And the smoke check bites when the story does not unfold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use breaker_actors::machine::{Admission, StateLabel};
use fusebox_examples::timeline::{self, Script};

#[test]
fn the_default_outage_tells_the_whole_story() {
    let script = Script::outage(4, 1);
    let t = timeline::run(&script).unwrap();
    let s = &t.summary;
    assert_eq!(t.problems(), Vec::<String>::new());

    let failing = s.failing_since_ms.unwrap();
    let tripped = s.first_trip_ms.expect("never tripped");
    assert!(tripped >= failing && tripped - failing <= 500, "detection took {} ms", tripped - failing);
    assert!(s.first_trip.as_deref().unwrap().contains("failure rate"));

    assert!(s.rounds.len() >= 2, "expected a failed round and a successful one: {:?}", s.rounds);
    for r in &s.rounds {
        assert_eq!(r.budget, 2);
        assert!(r.probes <= u64::from(r.budget), "round {}: {} probes", r.phase, r.probes);
    }
    assert!(s.rounds.iter().any(|r| r.probes == 2), "the budget was never used: {:?}", s.rounds);
    assert_eq!(s.admitted_while_open, 0);
    assert_eq!(s.admitted_while_half_open, s.rounds.iter().map(|r| r.probes).sum::<u64>());

    assert!(s.final_states.iter().all(|st| *st == Some(StateLabel::Closed)), "{:?}", s.final_states);

    assert_eq!(s.takeovers.len(), 1);
    let takeover = s.takeovers[0];
    let (by, at, term) = takeover.by.expect("nobody took over");
    assert_ne!(by, takeover.killed);
    assert!(term > takeover.old_term);
    let waited = at - takeover.killed_at_ms;
    let ttl = script.lease_ttl_ms;
    assert!(waited >= ttl - ttl / 3 && waited <= ttl + script.flush_ms, "takeover after {waited} ms");

    let open_restart = s.restarts.iter().find(|r| r.fleet == StateLabel::Open).expect("no restart while open");
    assert_eq!(open_restart.admission, Admission::Reject);
}

#[test]
fn the_rendered_timeline_shows_the_notable_moments() {
    let t = timeline::run(&Script::outage(4, 1)).unwrap();
    let moments = t.render_moments();
    assert!(moments.starts_with("Fusebox outage timeline: a deterministic simulation of 4 nodes"));
    for needle in [
        "dependency starts failing",
        "tripped on failure rate",
        "probes granted to",
        "a probe failed",
        "closed: 2 probe successes",
        "decider n1 killed",
        "took over the lease",
        "restarted (incarnation 2)",
    ] {
        assert!(moments.contains(needle), "no {needle:?} in\n{moments}");
    }
    // A half-open line shows the half-open states, even when the round settles in the
    // same step.
    let half_open = moments.lines().find(|l| l.contains("probes granted to")).unwrap();
    assert!(half_open.contains("n1 half-open"), "{half_open}");
    let summary = t.render_summary();
    for row in ["detection", "propagation", "half-open rounds", "let through", "takeover", "final state"] {
        assert!(summary.contains(row), "no {row:?} row in\n{summary}");
    }
}

#[test]
fn runs_are_reproducible_and_the_seed_matters() {
    let a = timeline::run(&Script::outage(4, 9)).unwrap();
    let b = timeline::run(&Script::outage(4, 9)).unwrap();
    assert_eq!(a, b);
    let c = timeline::run(&Script::outage(4, 10)).unwrap();
    assert_ne!(a.summary.trace_hash, c.summary.trace_hash);
}

#[test]
fn the_story_holds_for_other_fleets_and_seeds() {
    for nodes in [2, 3, 6] {
        for seed in 0..4 {
            let t = timeline::run(&Script::outage(nodes, seed)).unwrap();
            assert_eq!(t.problems(), Vec::<String>::new(), "{nodes} nodes, seed {seed}");
        }
    }
}

#[test]
fn the_smoke_check_bites() {
    let mut never_fails = Script::outage(4, 1);
    never_fails.dependency = vec![(0, 0)];
    let problems = timeline::run(&never_fails).unwrap().problems();
    assert!(problems.iter().any(|p| p.contains("never tripped")), "{problems:?}");

    let mut never_recovers = Script::outage(4, 1);
    never_recovers.dependency = vec![(0, 0), (3_000, 1_000)];
    let problems = timeline::run(&never_recovers).unwrap().problems();
    assert!(problems.iter().any(|p| p.contains("did not end closed")), "{problems:?}");

    let mut no_takeover = Script::outage(4, 1);
    no_takeover.end_ms = 14_500;
    let problems = timeline::run(&no_takeover).unwrap().problems();
    assert!(problems.iter().any(|p| p.contains("nobody took over")), "{problems:?}");
}
