//! Property tests of the shell's pure coordination machines against a simulated bucket.
//!
//! [`DecisionDemux`]: a node's watch (first the last value of every key as of its start,
//! then every change, in revision order) and its resync walk (the next entry after `seen`,
//! superseded ones included: the state bucket keeps history) interleave at random with writes
//! registrations and their direct reads. A registration's first value (what its breaker
//! starts on) must never be older than the one the bucket held when the watch started: a node
//! joining while a breaker is open must start open, not closed for a moment on an old
//! revision the resync walk delivered first. After it, offers only move forward, and once
//! everything is delivered every registration has been offered its key's newest revision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};

use breaker_actors::machine::{BreakerName, Millis};
use breaker_actors::shell::{DecisionDemux, Offer, Source, WatchStart};
use breaker_actors::transport::DecisionRead;
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
    /// The direct read of breaker `.0`, if it is pending, answers (the bucket's newest now).
    ReadAnswers(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS).prop_map(Op::Write),
        Just(Op::WatchNext),
        Just(Op::ResyncNext),
        (0..KEYS).prop_map(Op::Register),
        (0..KEYS).prop_map(Op::ReadAnswers),
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

/// The simulated node: its demux, and what each breaker was offered.
struct Node {
    demux: DecisionDemux<usize>,
    names: Vec<BreakerName>,
    /// Per breaker: the revisions offered to its registration, in order.
    offered: HashMap<usize, Vec<u64>>,
}

impl Node {
    fn offer(&mut self, offer: Option<Offer<usize>>) {
        self.offer_all(offer.into_iter().collect());
    }

    fn offer_all(&mut self, offers: Vec<Offer<usize>>) {
        for (key, read) in offers {
            self.offered.entry(key).or_default().push(read.revision);
        }
    }

    fn entry(&mut self, source: Source, key: usize, revision: u64) {
        let offer = self.demux.handle_entry(source, &self.names[key], revision, None);
        self.offer(offer);
    }

    fn read_answers(&mut self, key: usize, revision: u64) {
        if self.demux.is_pending(&self.names[key]) {
            let offer = self.demux.handle_read(&self.names[key], DecisionRead { decision: None, revision });
            self.offer(offer);
        }
    }
}

/// The watch: its first pass (the last value per key as of its start), then every change.
struct Watch {
    first_pass: VecDeque<u64>,
    next_change: usize,
}

impl Watch {
    fn next(&mut self, bucket: &[usize]) -> Option<u64> {
        self.first_pass.pop_front().or_else(|| {
            (self.next_change <= bucket.len()).then(|| {
                self.next_change += 1;
                revision(self.next_change - 2)
            })
        })
    }

    fn through(&self, bucket: &[usize]) -> bool {
        self.first_pass.is_empty() && self.next_change > bucket.len()
    }
}

fn apply(node: &mut Node, watch: &mut Watch, bucket: &mut Vec<usize>, op: Op) {
    match op {
        Op::Write(key) => bucket.push(key),
        Op::WatchNext => {
            if let Some(rev) = watch.next(bucket) {
                node.entry(Source::Watch, key_at(bucket, rev), rev);
                if watch.through(bucket) {
                    let offers = node.demux.mark_complete(); // the message said nothing is pending
                    node.offer_all(offers);
                }
            }
        }
        Op::ResyncNext => {
            let after = usize::try_from(node.demux.seen()).unwrap();
            if after < bucket.len() {
                node.entry(Source::Resync, bucket[after], revision(after));
            } else {
                let offers = node.demux.handle_resync_done(Millis(0), true);
                node.offer_all(offers);
            }
        }
        Op::Register(key) => {
            // A registration replaces the breaker's earlier one: its offers start afresh.
            let known = node.demux.register(&node.names[key], key);
            node.offered.insert(key, known.into_iter().map(|read| read.revision).collect());
        }
        Op::ReadAnswers(key) => node.read_answers(key, newest(bucket, key, bucket.len())),
    }
}

proptest! {
    #![proptest_config(settings())]

    #[test]
    fn a_registration_starts_on_a_current_value_and_ends_on_the_newest(
        initial in proptest::collection::vec(0..KEYS, 0..10),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let names: Vec<BreakerName> = (0..KEYS).map(|k| BreakerName::new(&format!("b{k}")).unwrap()).collect();
        // Entry `i` is revision `i + 1`, of key `bucket[i]`.
        let mut bucket = initial;
        let mut node = Node { demux: DecisionDemux::new(1_000, 100), names, offered: HashMap::new() };
        prop_assert_eq!(node.demux.handle_watch_started(), WatchStart::LastPerKey);
        let at_start = bucket.len();
        let first_pass =
            (0..at_start).map(revision).filter(|&rev| newest(&bucket, key_at(&bucket, rev), at_start) == rev).collect();
        let mut watch = Watch { first_pass, next_change: at_start + 1 };
        if watch.through(&bucket) {
            let offers = node.demux.mark_complete(); // the consumer was created with nothing pending
            prop_assert!(offers.is_empty());
        }
        let mut registered = Vec::new();
        for op in ops {
            if let Op::Register(key) = op {
                registered.push(key);
            }
            apply(&mut node, &mut watch, &mut bucket, op);
        }
        // Everything delivered, every pending read answered.
        while !watch.through(&bucket) {
            apply(&mut node, &mut watch, &mut bucket, Op::WatchNext);
        }
        for key in 0..KEYS {
            apply(&mut node, &mut watch, &mut bucket, Op::ReadAnswers(key));
        }
        for key in registered {
            let offered = node.offered.get(&key).cloned().unwrap_or_default();
            let floor = newest(&bucket, key, at_start);
            prop_assert!(
                offered.first().is_some_and(|&first| first >= floor),
                "b{} started on {:?} but the bucket held revision {} when the watch started", key, offered, floor
            );
            prop_assert!(offered.windows(2).all(|w| w[0] < w[1]), "b{} offered {:?}: not forward", key, offered);
            prop_assert_eq!(offered.last().copied(), Some(newest(&bucket, key, bucket.len())), "b{} offered {:?}", key, offered);
        }
    }
}
