//! Property tests of the shell's pure coordination machines against a simulated bucket.
//!
//! [`DecisionDemux`]: a node's watch (first the last value of every key as of its start,
//! then every change, in revision order) and its resync walk (the next entry after `seen`,
//! superseded ones included: the state bucket keeps history) interleave at random with writes
//! and registrations. A registration must never be offered a value older than the one the
//! bucket held when the watch started: a node joining while a breaker is open must start
//! open, not closed for a moment on an old revision the resync walk delivered first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use breaker_actors::machine::{BreakerName, Millis};
use breaker_actors::shell::{DecisionDemux, Source, WatchStart};
use proptest::prelude::*;

const KEYS: usize = 3;

fn settings() -> ProptestConfig {
    let seed = std::env::var("FUSEBOX_PROPTEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x00F0_5EB0);
    ProptestConfig { cases: 2_000, rng_seed: proptest::test_runner::RngSeed::Fixed(seed), ..ProptestConfig::default() }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A decider writes key `.0`.
    Write(usize),
    /// The watch delivers its next message, if it has one.
    WatchNext,
    /// One resync read: the next entry after `seen`, or none (caught up).
    ResyncNext,
    /// Breaker `.0` registers.
    Register(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS).prop_map(Op::Write),
        Just(Op::WatchNext),
        Just(Op::ResyncNext),
        (0..KEYS).prop_map(Op::Register),
    ]
}

/// The newest revision of `key` among the first `upto` entries (0: none).
fn newest(bucket: &[usize], key: usize, upto: usize) -> u64 {
    bucket[..upto].iter().rposition(|&k| k == key).map_or(0, revision)
}

/// The revision of entry `index`.
fn revision(index: usize) -> u64 {
    u64::try_from(index).unwrap() + 1
}

/// The key written at `revision`.
fn key_at(bucket: &[usize], revision: u64) -> usize {
    bucket[usize::try_from(revision).unwrap() - 1]
}

proptest! {
    #![proptest_config(settings())]

    #[test]
    fn a_registration_is_never_offered_a_value_older_than_the_watch_start(
        initial in proptest::collection::vec(0..KEYS, 0..10),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let names: Vec<BreakerName> = (0..KEYS).map(|k| BreakerName::new(&format!("b{k}")).unwrap()).collect();
        // Entry `i` is revision `i + 1`, of key `bucket[i]`.
        let mut bucket = initial;
        let mut demux: DecisionDemux<usize> = DecisionDemux::new(1_000, 100);
        prop_assert_eq!(demux.handle_watch_started(), WatchStart::LastPerKey);
        let at_start = bucket.len();
        let mut first_pass: VecDeque<u64> =
            (0..at_start).map(revision).filter(|&rev| newest(&bucket, key_at(&bucket, rev), at_start) == rev).collect();
        let mut next_change = at_start + 1;
        if first_pass.is_empty() {
            demux.mark_complete(); // the consumer was created with nothing pending
        }
        for op in ops {
            match op {
                Op::Write(key) => bucket.push(key),
                Op::WatchNext => {
                    let rev = first_pass.pop_front().or_else(|| {
                        (next_change <= bucket.len()).then(|| {
                            next_change += 1;
                            revision(next_change - 2)
                        })
                    });
                    if let Some(rev) = rev {
                        demux.handle_entry(Source::Watch, &names[key_at(&bucket, rev)], rev, None);
                        if first_pass.is_empty() && next_change > bucket.len() {
                            demux.mark_complete(); // the message said nothing is pending
                        }
                    }
                }
                Op::ResyncNext => {
                    let after = usize::try_from(demux.seen()).unwrap();
                    if after < bucket.len() {
                        demux.handle_entry(Source::Resync, &names[bucket[after]], revision(after), None);
                    } else {
                        demux.handle_resync_done(Millis(0), true);
                    }
                }
                Op::Register(key) => {
                    if let Some(read) = demux.register(&names[key], key) {
                        let floor = newest(&bucket, key, at_start);
                        prop_assert!(
                            read.revision >= floor,
                            "b{} was offered revision {} but the bucket held {} when the watch started",
                            key, read.revision, floor
                        );
                    }
                }
            }
        }
    }
}
