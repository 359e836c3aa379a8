//! [`LeaseKeeper`]: a node's lease upkeep, pure (time and answers in, operations and news
//! out). Which lease shards the node competes for, when it renews what it holds, how it reads
//! an acquisition's answer (held by another, a stale value to replace, granted), when it
//! releases, and what every breaker of a shard is told. The registry's lease manager drives
//! it against a [`Transport`](crate::transport::Transport) and `model-check`'s fleet harness
//! drives it against its simulated lease store: the rule exists once.
//!
//! Rules:
//! - A held lease is renewed every third of the TTL ([`LeaseKeeper::retry_ms`]); a renewal
//!   with no answer is retried after a quarter of that; a renewal the store refuses (the key
//!   moved on) loses the lease, tells the shard's breakers and competes again at once.
//! - A shard with breakers on this node and no lease here is tried at once, then every third
//!   of the TTL, and at once again when the lease watch sees a key released
//!   ([`LeaseInput::Released`]). A value that stands unchanged for a whole TTL (the longer of
//!   ours and the one it records) is dead, or garbage that never expires, and the next attempt
//!   replaces it by CAS on its revision ([`StaleLease`]).
//! - Due renewals go out before due acquisitions, in one [`LeaseInput::Tick`]: a held lease is
//!   worth more than one to be won. One operation per shard is in flight at a time; the
//!   driver bounds each by [`LeaseKeeper::op_limit_ms`] and answers "no answer" past it.
//! - A breaker stepping down from the held term releases the shard (its breakers are told
//!   first) and competes again after one retry interval; a breaker restarted while the shard
//!   is held releases and competes at once (the new actor needs a fresh term). The next term
//!   asked for is above every term this node held for the shard and every newer term a
//!   step-down named (a rebuilt lease bucket starts its revisions again).
//! - Shutdown tells every held shard's breakers, releases every lease, and acquires nothing
//!   more.
//!
//! Methods, in the manner of a sans-I/O connection: getters, one entry point
//! [`LeaseKeeper::handle`] for every [`LeaseInput`], and `poll_*` (the next [`LeaseEffect`],
//! when to be called again).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::machine::{Input, Millis, StaleLease, StepDownReason, Term};
use crate::transport::{LeaseAcquire, LeaseShard, Revision};

/// Everything that happens to a node's lease upkeep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseInput {
    /// Time passed: send what is due.
    Tick,
    /// A breaker of `shard` started on this node (`restarted`: a new actor for a breaker
    /// that had one).
    Join {
        /// Its shard.
        shard: LeaseShard,
        /// Whether it replaces an actor that stopped.
        restarted: bool,
    },
    /// A breaker of `shard` stepped down from `term`.
    SteppedDown {
        /// Its shard.
        shard: LeaseShard,
        /// The term it gave up.
        term: Term,
        /// Why.
        reason: StepDownReason,
    },
    /// The lease watch saw a lease key released: free shards are tried at once.
    Released,
    /// The answer to [`LeaseEffect::Acquire`] for `shard` (`None`: failed, or no answer
    /// within the bound).
    Acquired {
        /// The shard asked for.
        shard: LeaseShard,
        /// What the store said.
        answer: Option<LeaseAcquire>,
    },
    /// The answer to [`LeaseEffect::Renew`] for `shard`.
    Renewed {
        /// The shard renewed.
        shard: LeaseShard,
        /// What the store said.
        answer: RenewAnswer,
    },
    /// The node is leaving: release everything, compete for nothing.
    Shutdown,
}

/// What a renewal got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewAnswer {
    /// Renewed: the key's new revision.
    Renewed(Revision),
    /// The key moved on (expired, taken, deleted): the lease is lost.
    Lost,
    /// Transport trouble, or no answer within the bound.
    NoAnswer,
}

/// What the keeper wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEffect {
    /// Ask the store for `shard`'s lease: a term above `floor` and above every term the
    /// shard's breakers have seen; `over`: replace the stale value at that revision.
    Acquire {
        /// The shard.
        shard: LeaseShard,
        /// The least term this node knows of for the shard (step-downs that named newer terms).
        floor: Term,
        /// A stale value to replace by CAS.
        over: Option<Revision>,
        /// The TTL to ask for.
        ttl: Duration,
    },
    /// Renew `shard`'s lease of `term`, held at `revision`, by CAS.
    Renew {
        /// The shard.
        shard: LeaseShard,
        /// The revision held.
        revision: Revision,
        /// The term held.
        term: Term,
        /// The TTL to ask for.
        ttl: Duration,
    },
    /// Delete `shard`'s lease if the key is still at `revision` (harmless if it moved on).
    Release {
        /// The shard.
        shard: LeaseShard,
        /// The revision held.
        revision: Revision,
    },
    /// Tell every breaker of `shard` on this node: `LeaseGained`, `LeaseRenewed` or
    /// `LeaseLost` (merge undelivered news with [`merge_lease_news`]).
    Tell {
        /// The shard.
        shard: LeaseShard,
        /// The machine input.
        news: Input,
    },
    /// Tell only the breaker that just joined `shard` that this node holds it.
    Greet {
        /// The shard.
        shard: LeaseShard,
        /// A `LeaseGained`.
        news: Input,
    },
    /// `shard` was just acquired: start the fleet's breakers of it this node lacks, so that
    /// none is left without a decider because its own nodes lost the race for the shard.
    Adopt {
        /// The shard.
        shard: LeaseShard,
    },
}

/// Merges lease news waiting for a machine so that it never loses what the machine must
/// hear: a renewal of a grant not yet fed stays a grant (with the newer send time); a newer
/// grant supersedes a loss (the machine steps down from the old term when it takes the new
/// one). Every holder of undelivered news (the runtime's inbox, the harness) merges by it.
pub fn merge_lease_news(old: Option<Input>, new: Input) -> Input {
    match (old, new) {
        (Some(Input::LeaseGained { term: gained, .. }), Input::LeaseRenewed { term, sent_at, ttl_ms })
            if gained == term =>
        {
            Input::LeaseGained { term, sent_at, ttl_ms }
        }
        (_, new) => new,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    term: Term,
    revision: Revision,
    /// When the request that granted or last renewed it was sent, on the node's clock.
    sent_at: Millis,
    renew_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    Acquire { sent_at: Millis, over: Option<Revision> },
    Renew { sent_at: Millis },
}

#[derive(Debug, Clone, Default)]
struct ShardLease {
    /// Some breaker of the shard runs on this node: the node competes for it.
    wanted: bool,
    held: Option<Held>,
    next_attempt: Option<Millis>,
    in_flight: Option<InFlight>,
    /// The newest term this node held for the shard or a step-down of one of its breakers
    /// named: the next term asked for is above it.
    floor: Term,
    stale: StaleLease,
    /// The stale revision to replace at the next attempt.
    over: Option<Revision>,
}

/// A node's lease upkeep; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    ttl: Duration,
    shards: BTreeMap<LeaseShard, ShardLease>,
    stopping: bool,
    out: VecDeque<LeaseEffect>,
}

impl LeaseKeeper {
    /// A keeper asking for leases of `ttl` (at least 3 ms: renewals go every third of it).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl: ttl.max(Duration::from_millis(3)), shards: BTreeMap::new(), stopping: false, out: VecDeque::new() }
    }

    // ----- getters ---------------------------------------------------------------------

    /// The lease TTL, in ms.
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// The renewal interval and the retry interval of a lost race: a third of the TTL.
    pub fn retry_ms(&self) -> u64 {
        self.ttl_ms() / 3
    }

    /// The longest the driver awaits one operation: half the renewal interval, so a renewal
    /// due behind one still goes out well within the lease (`ttl / 3 + ttl / 6`, while a lease
    /// lasts `ttl - margin`, more than `ttl / 3`). An operation past it is answered "no
    /// answer" (it may still land: a renewal then fails its next CAS and the shard is acquired
    /// again; an acquisition finds the key held and waits for it).
    pub fn op_limit_ms(&self) -> u64 {
        (self.retry_ms() / 2).max(1)
    }

    /// The term held for `shard`, if any.
    pub fn holds(&self, shard: LeaseShard) -> Option<Term> {
        self.shards.get(&shard).and_then(|s| s.held).map(|h| h.term)
    }

    /// Every shard held, with its term.
    pub fn held(&self) -> impl Iterator<Item = (LeaseShard, Term)> + '_ {
        self.shards.iter().filter_map(|(shard, s)| s.held.map(|h| (*shard, h.term)))
    }

    /// Whether the node is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Operations in flight (at most one per shard).
    pub fn in_flight(&self) -> usize {
        self.shards.values().filter(|s| s.in_flight.is_some()).count()
    }

    // ----- handle ----------------------------------------------------------------------

    /// Feeds one input at `now` (the node's monotonic clock, the machines' clock).
    pub fn handle(&mut self, now: Millis, input: LeaseInput) {
        match input {
            LeaseInput::Tick => self.tick(now),
            LeaseInput::Join { .. } if self.stopping => {}
            LeaseInput::Join { shard, restarted } => self.join(now, shard, restarted),
            LeaseInput::SteppedDown { shard, term, reason } => self.stepped_down(now, shard, term, reason),
            LeaseInput::Released => {
                for s in self.shards.values_mut().filter(|s| s.held.is_none() && s.wanted) {
                    s.next_attempt = Some(s.next_attempt.map_or(now, |at| at.min(now)));
                }
            }
            LeaseInput::Acquired { shard, answer } => self.acquired(now, shard, answer),
            LeaseInput::Renewed { shard, answer } => self.renewed(now, shard, answer),
            LeaseInput::Shutdown => self.release_all(),
        }
    }

    // ----- poll ------------------------------------------------------------------------

    /// The next thing to do, in order.
    pub fn poll_effect(&mut self) -> Option<LeaseEffect> {
        self.out.pop_front()
    }

    /// When [`LeaseInput::Tick`] is next due (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.stopping {
            return None;
        }
        self.shards
            .values()
            .filter(|s| s.in_flight.is_none())
            .filter_map(|s| match &s.held {
                Some(h) => Some(h.renew_at),
                None if s.wanted => s.next_attempt,
                None => None,
            })
            .min()
    }

    // ----- rules -----------------------------------------------------------------------

    fn join(&mut self, now: Millis, shard: LeaseShard, restarted: bool) {
        let ttl_ms = self.ttl_ms();
        let s = self.shards.entry(shard).or_default();
        s.wanted = true;
        match s.held {
            Some(_) if restarted => self.release(now, shard, false),
            Some(h) => {
                let news = Input::LeaseGained { term: h.term, sent_at: h.sent_at, ttl_ms };
                self.out.push_back(LeaseEffect::Greet { shard, news });
            }
            None => s.next_attempt = Some(s.next_attempt.unwrap_or(now)),
        }
    }

    fn stepped_down(&mut self, now: Millis, shard: LeaseShard, term: Term, reason: StepDownReason) {
        if let (StepDownReason::Deposed { newer }, Some(s)) = (reason, self.shards.get_mut(&shard)) {
            s.floor = s.floor.max(newer);
        }
        if reason == StepDownReason::Shutdown {
            self.release_all();
        } else if self.holds(shard) == Some(term) {
            self.release(now, shard, true);
        }
    }

    /// Releases `shard` (its breakers are told first); competes again at once, or after one
    /// retry interval if `back_off`.
    fn release(&mut self, now: Millis, shard: LeaseShard, back_off: bool) {
        let retry = self.retry_ms();
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(held) = s.held.take() else {
            return;
        };
        s.next_attempt = Some(if back_off { now.plus(retry) } else { now });
        self.out.push_back(LeaseEffect::Tell { shard, news: Input::LeaseLost { term: held.term } });
        self.out.push_back(LeaseEffect::Release { shard, revision: held.revision });
    }

    fn release_all(&mut self) {
        self.stopping = true;
        for (&shard, s) in &mut self.shards {
            if let Some(held) = s.held.take() {
                // Its breakers stop deciding before anyone else starts.
                self.out.push_back(LeaseEffect::Tell { shard, news: Input::LeaseLost { term: held.term } });
                self.out.push_back(LeaseEffect::Release { shard, revision: held.revision });
            }
        }
    }

    fn tick(&mut self, now: Millis) {
        if self.stopping {
            return;
        }
        let ttl = self.ttl;
        let mut acquisitions = Vec::new();
        for (&shard, s) in &mut self.shards {
            if s.in_flight.is_some() {
                continue;
            }
            match s.held {
                Some(h) if h.renew_at <= now => {
                    s.in_flight = Some(InFlight::Renew { sent_at: now });
                    self.out.push_back(LeaseEffect::Renew { shard, revision: h.revision, term: h.term, ttl });
                }
                None if s.wanted && s.next_attempt.is_some_and(|at| at <= now) => {
                    let over = s.over.take();
                    s.in_flight = Some(InFlight::Acquire { sent_at: now, over });
                    acquisitions.push(LeaseEffect::Acquire { shard, floor: s.floor, over, ttl });
                }
                _ => {}
            }
        }
        // Renewals first, then acquisitions.
        self.out.extend(acquisitions);
    }

    fn acquired(&mut self, now: Millis, shard: LeaseShard, answer: Option<LeaseAcquire>) {
        let (retry, ttl, ttl_ms, stopping) = (self.retry_ms(), self.ttl, self.ttl_ms(), self.stopping);
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(InFlight::Acquire { sent_at, over }) = s.in_flight else {
            return;
        };
        s.in_flight = None;
        match answer {
            Some(LeaseAcquire::Granted { revision, .. }) if stopping => {
                self.out.push_back(LeaseEffect::Release { shard, revision });
            }
            Some(LeaseAcquire::Granted { revision, term }) => {
                s.held = Some(Held { term, revision, sent_at, renew_at: now.plus(retry) });
                s.floor = s.floor.max(term);
                s.next_attempt = None;
                s.stale.clear();
                self.out.push_back(LeaseEffect::Tell { shard, news: Input::LeaseGained { term, sent_at, ttl_ms } });
                self.out.push_back(LeaseEffect::Adopt { shard });
            }
            Some(LeaseAcquire::Held { revision, ttl: recorded }) => {
                // The longer of the two TTLs: a holder renews every third of its own.
                let wait = recorded.map_or(ttl, |t| t.max(ttl));
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                if s.stale.observe(sent_at, revision, wait_ms) {
                    s.over = Some(revision);
                    s.next_attempt = Some(now);
                } else {
                    s.next_attempt = Some(now.plus(retry));
                }
            }
            None => {
                // The replacement was not made: ask for it again next time.
                s.over = s.over.or(over);
                s.next_attempt = Some(now.plus(retry));
            }
        }
    }

    fn renewed(&mut self, now: Millis, shard: LeaseShard, answer: RenewAnswer) {
        let (retry, ttl_ms) = (self.retry_ms(), self.ttl_ms());
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(InFlight::Renew { sent_at }) = s.in_flight else {
            return;
        };
        s.in_flight = None;
        let Some(h) = &mut s.held else {
            return;
        };
        match answer {
            RenewAnswer::Renewed(revision) => {
                h.revision = revision;
                h.sent_at = sent_at;
                h.renew_at = now.plus(retry);
                let news = Input::LeaseRenewed { term: h.term, sent_at, ttl_ms };
                self.out.push_back(LeaseEffect::Tell { shard, news });
            }
            RenewAnswer::Lost => {
                let term = h.term;
                s.held = None;
                s.next_attempt = Some(now);
                self.out.push_back(LeaseEffect::Tell { shard, news: Input::LeaseLost { term } });
            }
            // Try again soon; the machines suspend themselves if the lease runs out on their
            // clocks meanwhile.
            RenewAnswer::NoAnswer => h.renew_at = now.plus((retry / 4).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    const A: LeaseShard = LeaseShard(1);
    const B: LeaseShard = LeaseShard(2);

    fn drain(k: &mut LeaseKeeper) -> Vec<LeaseEffect> {
        std::iter::from_fn(|| k.poll_effect()).collect()
    }

    fn acquire(shard: LeaseShard, floor: Term) -> LeaseEffect {
        LeaseEffect::Acquire { shard, floor, over: None, ttl: TTL }
    }

    fn granted(k: &mut LeaseKeeper, now: u64, shard: LeaseShard, term: u64) {
        k.handle(
            Millis(now),
            LeaseInput::Acquired { shard, answer: Some(LeaseAcquire::Granted { revision: term, term: Term(term) }) },
        );
    }

    #[test]
    fn a_joined_shard_is_tried_at_once_then_every_third_of_the_ttl() {
        let mut k = LeaseKeeper::new(TTL);
        k.handle(Millis(0), LeaseInput::Join { shard: A, restarted: false });
        assert_eq!(k.poll_timeout(), Some(Millis(0)));
        k.handle(Millis(0), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![acquire(A, Term(0))]);
        assert_eq!(k.poll_timeout(), None, "nothing is due while the request is in flight");
        let held = Some(LeaseAcquire::Held { revision: 4, ttl: Some(TTL) });
        k.handle(Millis(5), LeaseInput::Acquired { shard: A, answer: held });
        assert_eq!(k.poll_timeout(), Some(Millis(1_005)));
        k.handle(Millis(6), LeaseInput::Released);
        assert_eq!(k.poll_timeout(), Some(Millis(6)), "a released key is tried at once");
    }

    #[test]
    fn a_grant_tells_the_shard_renews_every_third_and_a_refused_renewal_loses_it() {
        let mut k = LeaseKeeper::new(TTL);
        k.handle(Millis(0), LeaseInput::Join { shard: A, restarted: false });
        k.handle(Millis(0), LeaseInput::Tick);
        drain(&mut k);
        granted(&mut k, 2, A, 7);
        let gained = Input::LeaseGained { term: Term(7), sent_at: Millis(0), ttl_ms: 3_000 };
        assert_eq!(
            drain(&mut k),
            vec![LeaseEffect::Tell { shard: A, news: gained.clone() }, LeaseEffect::Adopt { shard: A }]
        );
        assert_eq!(k.holds(A), Some(Term(7)));
        k.handle(Millis(3), LeaseInput::Join { shard: A, restarted: false });
        assert_eq!(drain(&mut k), vec![LeaseEffect::Greet { shard: A, news: gained }], "only the joiner is told");
        assert_eq!(k.poll_timeout(), Some(Millis(1_002)));
        k.handle(Millis(1_002), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![LeaseEffect::Renew { shard: A, revision: 7, term: Term(7), ttl: TTL }]);
        k.handle(Millis(1_010), LeaseInput::Renewed { shard: A, answer: RenewAnswer::NoAnswer });
        assert_eq!(k.poll_timeout(), Some(Millis(1_260)), "an unanswered renewal is retried soon");
        k.handle(Millis(1_260), LeaseInput::Tick);
        drain(&mut k);
        k.handle(Millis(1_261), LeaseInput::Renewed { shard: A, answer: RenewAnswer::Renewed(9) });
        let renewed = Input::LeaseRenewed { term: Term(7), sent_at: Millis(1_260), ttl_ms: 3_000 };
        assert_eq!(drain(&mut k), vec![LeaseEffect::Tell { shard: A, news: renewed }]);
        k.handle(Millis(2_261), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![LeaseEffect::Renew { shard: A, revision: 9, term: Term(7), ttl: TTL }]);
        k.handle(Millis(2_262), LeaseInput::Renewed { shard: A, answer: RenewAnswer::Lost });
        assert_eq!(drain(&mut k), vec![LeaseEffect::Tell { shard: A, news: Input::LeaseLost { term: Term(7) } }]);
        assert_eq!(k.holds(A), None);
        assert_eq!(k.poll_timeout(), Some(Millis(2_262)), "a lost lease is competed for at once");
    }

    #[test]
    fn renewals_go_out_before_acquisitions() {
        let mut k = LeaseKeeper::new(TTL);
        k.handle(Millis(0), LeaseInput::Join { shard: B, restarted: false });
        k.handle(Millis(0), LeaseInput::Join { shard: A, restarted: false });
        k.handle(Millis(0), LeaseInput::Tick);
        drain(&mut k);
        granted(&mut k, 0, B, 3);
        k.handle(Millis(0), LeaseInput::Acquired { shard: A, answer: None });
        drain(&mut k);
        k.handle(Millis(1_000), LeaseInput::Tick);
        let effects = drain(&mut k);
        assert_eq!(
            effects,
            vec![LeaseEffect::Renew { shard: B, revision: 3, term: Term(3), ttl: TTL }, acquire(A, Term(0))]
        );
    }

    #[test]
    fn a_value_unchanged_for_a_ttl_is_replaced_and_a_failed_replacement_asked_again() {
        let mut k = LeaseKeeper::new(TTL);
        k.handle(Millis(0), LeaseInput::Join { shard: A, restarted: false });
        let stuck = || Some(LeaseAcquire::Held { revision: 5, ttl: None });
        let mut now = 0;
        let mut over = None;
        while over.is_none() {
            k.handle(Millis(now), LeaseInput::Tick);
            match drain(&mut k).as_slice() {
                [LeaseEffect::Acquire { over: o, .. }] => over = *o,
                [] => {}
                other => panic!("unexpected {other:?}"),
            }
            if over.is_none() {
                k.handle(Millis(now), LeaseInput::Acquired { shard: A, answer: stuck() });
            }
            now += 1_000;
            assert!(now < 10_000, "never replaced");
        }
        assert_eq!(over, Some(5));
        assert!(now > 3_000, "not before a whole TTL: {now}");
        k.handle(Millis(now), LeaseInput::Acquired { shard: A, answer: None });
        k.handle(Millis(now + 1_000), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![LeaseEffect::Acquire { shard: A, floor: Term(0), over: Some(5), ttl: TTL }]);
    }

    #[test]
    fn stepping_down_releases_and_backs_off_and_a_deposition_raises_the_floor() {
        let mut k = LeaseKeeper::new(TTL);
        k.handle(Millis(0), LeaseInput::Join { shard: A, restarted: false });
        k.handle(Millis(0), LeaseInput::Tick);
        drain(&mut k);
        granted(&mut k, 0, A, 4);
        drain(&mut k);
        let reason = StepDownReason::Deposed { newer: Term(9) };
        k.handle(Millis(10), LeaseInput::SteppedDown { shard: A, term: Term(3), reason });
        assert_eq!(drain(&mut k), vec![], "an older term's step-down keeps the lease");
        k.handle(Millis(10), LeaseInput::SteppedDown { shard: A, term: Term(4), reason });
        assert_eq!(
            drain(&mut k),
            vec![
                LeaseEffect::Tell { shard: A, news: Input::LeaseLost { term: Term(4) } },
                LeaseEffect::Release { shard: A, revision: 4 }
            ]
        );
        assert_eq!(k.poll_timeout(), Some(Millis(1_010)));
        k.handle(Millis(1_010), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![acquire(A, Term(9))]);
    }

    #[test]
    fn a_restarted_breaker_gets_a_fresh_term_and_shutdown_releases_everything() {
        let mut k = LeaseKeeper::new(TTL);
        for shard in [A, B] {
            k.handle(Millis(0), LeaseInput::Join { shard, restarted: false });
        }
        k.handle(Millis(0), LeaseInput::Tick);
        drain(&mut k);
        granted(&mut k, 0, A, 1);
        granted(&mut k, 0, B, 2);
        drain(&mut k);
        k.handle(Millis(5), LeaseInput::Join { shard: A, restarted: true });
        assert_eq!(
            drain(&mut k),
            vec![
                LeaseEffect::Tell { shard: A, news: Input::LeaseLost { term: Term(1) } },
                LeaseEffect::Release { shard: A, revision: 1 }
            ]
        );
        assert_eq!(k.poll_timeout(), Some(Millis(5)), "competed for again at once");
        k.handle(Millis(5), LeaseInput::Tick);
        assert_eq!(drain(&mut k), vec![acquire(A, Term(1))], "above the term it held");
        k.handle(Millis(6), LeaseInput::Shutdown);
        assert_eq!(
            drain(&mut k),
            vec![
                LeaseEffect::Tell { shard: B, news: Input::LeaseLost { term: Term(2) } },
                LeaseEffect::Release { shard: B, revision: 2 }
            ]
        );
        granted(&mut k, 7, A, 3);
        assert_eq!(drain(&mut k), vec![LeaseEffect::Release { shard: A, revision: 3 }], "a late grant is handed back");
        k.handle(Millis(8), LeaseInput::Join { shard: B, restarted: false });
        k.handle(Millis(5_000), LeaseInput::Tick);
        assert_eq!((drain(&mut k), k.poll_timeout()), (vec![], None));
    }

    #[test]
    fn lease_news_never_lose_a_grant() {
        let gained = Input::LeaseGained { term: Term(3), sent_at: Millis(1), ttl_ms: 100 };
        let renewed = Input::LeaseRenewed { term: Term(3), sent_at: Millis(40), ttl_ms: 100 };
        assert_eq!(
            merge_lease_news(Some(gained), renewed.clone()),
            Input::LeaseGained { term: Term(3), sent_at: Millis(40), ttl_ms: 100 }
        );
        let lost = Input::LeaseLost { term: Term(3) };
        assert_eq!(merge_lease_news(Some(renewed), lost.clone()), lost);
        let newer = Input::LeaseGained { term: Term(9), sent_at: Millis(50), ttl_ms: 100 };
        assert_eq!(merge_lease_news(Some(lost), newer.clone()), newer);
    }
}
