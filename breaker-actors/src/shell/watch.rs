//! [`DecisionDemux`]: a node's one watch of the state bucket, demultiplexed to its breakers,
//! and its one resync request per period beside it. Pure (time and entries in, offers and
//! requests out); the NATS transport drives it with its watch (an ordered consumer of the
//! whole bucket) and its direct gets, and `model-check`'s scale preset with its simulated
//! bucket.
//!
//! Rules:
//! - Every entry seen, by the watch or a resync, moves `seen` (the newest bucket revision
//!   delivered) on; the watch restarts from `seen + 1` (first: the last value per key).
//! - The newest value per key is kept, bounded ([`DecisionDemux::new`]'s `max_cached`): once
//!   the cache is complete (the watch's first pass, or a resync walk, is through), a
//!   breaker registered later, or an actor restarted, gets the current value without a
//!   request; beyond the bound values of breakers the node does not have are not kept, and the
//!   cache stops being complete (an unknown breaker then costs a direct read). An entry at or
//!   below the revision kept for its key was offered already and is not offered again.
//! - A breaker registered before the cache is complete is *pending*: it is offered nothing
//!   until it has a value known to be current, its direct read (which the transport makes
//!   and hands back with [`DecisionDemux::handle_read`]) or the complete cache, whichever
//!   comes first. Until then the entries delivered may be history (the resync walk reads the
//!   bucket's revisions in order, superseded ones included) and its first value is what it
//!   starts on: a node joining while a breaker is open would start closed. After that, only
//!   revisions above the one last offered to it are offered.
//! - Once per period, and at once after a reconnection, one resync request asks for the
//!   entries after `seen` on any key; if it found entries and the watch has not delivered
//!   them [`WATCH_GRACE_MS`] later, the watch died without noticing and is restarted; the
//!   next request waits a period (plus the grace when there was something to check).
//!
//! Methods: getters, `register`/`unregister`, `handle_*` (watch and resync news), `poll_*`
//! (the next resync request, whether to restart the watch, when to be called again).

use std::collections::HashMap;

use crate::machine::{BreakerName, Decision, DecisionId, FleetState, Millis};
use crate::transport::DecisionRead;

/// How long after a resync found entries the watch must have delivered them too.
pub const WATCH_GRACE_MS: u64 = 100;

/// Who delivered an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The watch.
    Watch,
    /// A resync request.
    Resync,
}

/// Where a (re)started watch begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Nothing seen yet: the last value of every key, then every change.
    LastPerKey,
    /// After what was seen: from this bucket revision on.
    From(u64),
}

/// A breaker's registration: where its decisions go, and the revision last offered to it
/// (`None`: pending, see the module documentation).
#[derive(Debug, Clone)]
struct Registration<R> {
    inbox: R,
    offered: Option<u64>,
}

/// An offer to make: a registration's inbox and the read it is offered.
pub type Offer<R> = (R, DecisionRead);

/// The node's decision watch and resync; see the module documentation.
#[derive(Debug, Clone)]
pub struct DecisionDemux<R> {
    regs: HashMap<BreakerName, Registration<R>>,
    cache: HashMap<BreakerName, DecisionRead>,
    max_cached: usize,
    complete: bool,
    seen: u64,
    /// The newest revision the watch itself delivered.
    watch_seen: u64,
    watching: bool,
    period_ms: u64,
    /// When the next resync request is due (`None`: one is in flight).
    next_resync: Option<Millis>,
    /// `seen` when the request in flight went out.
    resync_from: u64,
    /// The grace check due: at, and the revision the resync found.
    check: Option<(Millis, u64)>,
    resyncs: u64,
}

impl<R: Clone> DecisionDemux<R> {
    /// A demux asking once per `period_ms` (the first request at once), keeping at most
    /// `max_cached` values.
    pub fn new(period_ms: u64, max_cached: usize) -> Self {
        Self {
            regs: HashMap::new(),
            cache: HashMap::new(),
            max_cached,
            complete: false,
            seen: 0,
            watch_seen: 0,
            watching: false,
            period_ms: period_ms.max(1),
            next_resync: Some(Millis(0)),
            resync_from: 0,
            check: None,
            resyncs: 0,
        }
    }

    // ----- getters ---------------------------------------------------------------------

    /// The newest bucket revision delivered.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether the cache holds every key's newest value as of `seen`.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Resync requests sent so far.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Whether `breaker` is registered and pending (waits for a direct read or the complete
    /// cache).
    pub fn is_pending(&self, breaker: &BreakerName) -> bool {
        self.regs.get(breaker).is_some_and(|r| r.offered.is_none())
    }

    /// Breakers registered.
    pub fn registered(&self) -> usize {
        self.regs.len()
    }

    /// Values kept.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// What the node knows of `breaker`'s decision once the cache is complete: the value
    /// kept, or its absence; `None` when only a direct read can tell. Before, a value kept
    /// may be superseded already: the resync walk delivers the bucket's history in revision
    /// order, so it can offer a key's old revision before the watch's first pass brings the
    /// newest (a node joining while a breaker is open would start closed).
    pub fn known(&self, breaker: &BreakerName) -> Option<DecisionRead> {
        if !self.complete {
            return None;
        }
        let absent = DecisionRead { decision: None, revision: 0 };
        Some(self.cache.get(breaker).cloned().unwrap_or(absent))
    }

    /// The id of the newest decision kept for `breaker` (what an unattributed foreign report
    /// counts towards), and whether its fleet state is closed (no decision: closed).
    pub fn latest(&self, breaker: &BreakerName) -> (DecisionId, bool) {
        match self.cache.get(breaker).and_then(|r| r.decision.as_ref()) {
            Some(d) => (d.id, matches!(d.state, FleetState::Closed)),
            None => (DecisionId::default(), true),
        }
    }

    // ----- registrations ---------------------------------------------------------------

    /// Delivers `breaker`'s decisions to `inbox` from now on; what is known of it already
    /// (`None`: it is pending, ask the bucket directly and hand the answer to
    /// [`DecisionDemux::handle_read`]).
    pub fn register(&mut self, breaker: &BreakerName, inbox: R) -> Option<DecisionRead> {
        let known = self.known(breaker);
        let offered = known.as_ref().map(|read| read.revision);
        self.regs.insert(breaker.clone(), Registration { inbox, offered });
        known
    }

    /// Stops delivering `breaker`'s decisions.
    pub fn unregister(&mut self, breaker: &BreakerName) {
        self.regs.remove(breaker);
    }

    // ----- handle ----------------------------------------------------------------------

    /// A watch session starts: where it begins.
    pub fn handle_watch_started(&mut self) -> WatchStart {
        self.watching = true;
        self.watch_seen = self.seen;
        if self.seen == 0 { WatchStart::LastPerKey } else { WatchStart::From(self.seen + 1) }
    }

    /// The watch session ended (it is started again).
    pub fn handle_watch_ended(&mut self) {
        self.watching = false;
    }

    /// The connection is back: resync at once (a request in flight when it was lost is
    /// abandoned).
    pub fn handle_reconnected(&mut self, now: Millis) {
        self.next_resync = Some(now);
    }

    /// An entry: `breaker`'s key at `revision`, a value (`None`: a delete, a purge, an expiry,
    /// or a value that does not decode, offered as no value so a decider overwrites it). The
    /// registration to offer the read to, if it is news for a registered breaker.
    #[must_use]
    pub fn handle_entry(
        &mut self,
        source: Source,
        breaker: &BreakerName,
        revision: u64,
        decision: Option<Decision>,
    ) -> Option<(R, DecisionRead)> {
        self.handle_seen(source, revision);
        // Only entries fill the cache, so a revision kept here was offered already. (A write
        // of this node's own is not kept ahead of its delivery: the breaker must be offered
        // it, which is how the lease upkeep learns the term of every decision.)
        if self.cache.get(breaker).is_some_and(|old| old.revision >= revision) {
            return None;
        }
        let read = DecisionRead { decision, revision };
        let registered = self.regs.contains_key(breaker);
        if registered || self.cache.contains_key(breaker) || self.cache.len() < self.max_cached {
            self.cache.insert(breaker.clone(), read.clone());
        } else {
            self.complete = false;
        }
        let reg = self.regs.get_mut(breaker)?;
        // A pending registration waits for a value known to be current (this may be history).
        let offered = reg.offered.as_mut()?;
        if *offered >= revision {
            return None;
        }
        *offered = revision;
        Some((reg.inbox.clone(), read))
    }

    /// The direct read of a pending registration of `breaker` is through: the offer to
    /// make, the newest of the read and the value kept. (A read that failed changes nothing:
    /// the registration stays pending until another read, or the complete cache.)
    #[must_use]
    pub fn handle_read(&mut self, breaker: &BreakerName, read: DecisionRead) -> Option<Offer<R>> {
        let reg = self.regs.get_mut(breaker).filter(|r| r.offered.is_none())?;
        // A value kept that is newer than the read was written after it: current too.
        let newest = match self.cache.get(breaker) {
            Some(kept) if kept.revision > read.revision => kept.clone(),
            _ => read,
        };
        reg.offered = Some(newest.revision);
        Some((reg.inbox.clone(), newest))
    }

    /// An entry at `revision` that is no breaker's (a subject that is not a valid key).
    pub fn handle_seen(&mut self, source: Source, revision: u64) {
        self.seen = self.seen.max(revision);
        if source == Source::Watch {
            self.watch_seen = self.watch_seen.max(revision);
        }
    }

    /// Every key's newest value up to `seen` has been delivered (the watch's first pass is
    /// through, or a resync found nothing after it): complete, unless values were left out.
    /// The offers to make: every pending registration gets the value kept (or its absence).
    #[must_use]
    pub fn mark_complete(&mut self) -> Vec<Offer<R>> {
        if self.cache.len() >= self.max_cached {
            return Vec::new();
        }
        self.complete = true;
        let absent = DecisionRead { decision: None, revision: 0 };
        let mut offers = Vec::new();
        for (breaker, reg) in &mut self.regs {
            if reg.offered.is_none() {
                let read = self.cache.get(breaker).cloned().unwrap_or_else(|| absent.clone());
                reg.offered = Some(read.revision);
                offers.push((reg.inbox.clone(), read));
            }
        }
        offers
    }

    /// The resync request sent by [`DecisionDemux::poll_resync`] is through (`caught_up`:
    /// it found everything after `seen`) at `now`: the offers to make (see
    /// [`DecisionDemux::mark_complete`]).
    #[must_use]
    pub fn handle_resync_done(&mut self, now: Millis, caught_up: bool) -> Vec<Offer<R>> {
        let offers = if caught_up { self.mark_complete() } else { Vec::new() };
        let found = self.seen;
        let mut next = now.plus(self.period_ms);
        if found > self.resync_from && self.watching {
            // The watch may only have been a moment slower than this read: give it one.
            self.check = Some((now.plus(WATCH_GRACE_MS), found));
            next = next.plus(WATCH_GRACE_MS);
        }
        self.next_resync = Some(next);
        offers
    }

    // ----- poll ------------------------------------------------------------------------

    /// A resync request due at `now`: ask for the entries after the revision returned.
    pub fn poll_resync(&mut self, now: Millis) -> Option<u64> {
        if self.next_resync.is_none_or(|at| at > now) {
            return None;
        }
        self.next_resync = None;
        self.resync_from = self.seen;
        self.resyncs += 1;
        Some(self.seen)
    }

    /// Whether the watch must be restarted now: a resync found entries it has not delivered
    /// within the grace.
    pub fn poll_restart(&mut self, now: Millis) -> bool {
        match self.check {
            Some((at, found)) if at <= now => {
                self.check = None;
                self.watching && self.watch_seen < found
            }
            _ => false,
        }
    }

    /// When to call `poll_*` again.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.next_resync, self.check.map(|(at, _)| at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(n: &str) -> BreakerName {
        BreakerName::new(n).unwrap()
    }

    #[test]
    fn entries_reach_the_registered_breaker_once_and_the_cache_answers_later_ones() {
        let mut d: DecisionDemux<u8> = DecisionDemux::new(1_000, 3);
        assert_eq!(d.register(&name("a"), 1), None, "nothing known yet: ask the bucket");
        assert_eq!(d.handle_watch_started(), WatchStart::LastPerKey);
        assert_eq!(d.handle_entry(Source::Resync, &name("a"), 2, None), None, "pending: maybe history");
        let read = |revision| DecisionRead { decision: None, revision };
        assert!(d.is_pending(&name("a")));
        assert_eq!(d.handle_read(&name("a"), read(1)).map(|(r, read)| (r, read.revision)), Some((1, 2)), "the newer");
        assert_eq!(d.handle_read(&name("a"), read(2)), None, "no longer pending");
        assert!(!d.is_pending(&name("a")));
        assert_eq!(
            d.handle_entry(Source::Watch, &name("a"), 3, None).map(|(r, read)| (r, read.revision)),
            Some((1, 3))
        );
        assert_eq!(d.handle_entry(Source::Resync, &name("a"), 3, None), None, "offered already");
        assert_eq!(d.handle_entry(Source::Watch, &name("b"), 4, None), None, "nobody registered");
        assert_eq!(d.register(&name("p"), 5), None, "pending until complete");
        let offers: Vec<_> = d.mark_complete().into_iter().map(|(r, read)| (r, read.revision)).collect();
        assert_eq!(offers, vec![(5, 0)], "the pending one learns its breaker has no value");
        assert_eq!(d.register(&name("b"), 2).map(|r| r.revision), Some(4), "kept for later");
        assert_eq!(d.register(&name("c"), 3).map(|r| r.revision), Some(0), "complete: known absent");
        assert_eq!(d.handle_entry(Source::Watch, &name("e"), 5, None), None);
        assert_eq!(d.handle_entry(Source::Watch, &name("d"), 6, None), None);
        assert!(!d.is_complete(), "a value left out for lack of room");
        assert_eq!(d.register(&name("d"), 4), None);
        assert_eq!(d.handle_watch_started(), WatchStart::From(7));
    }

    #[test]
    fn one_resync_per_period_and_a_watch_that_missed_entries_is_restarted() {
        let mut d: DecisionDemux<u8> = DecisionDemux::new(1_000, 10);
        d.handle_watch_started();
        assert_eq!(d.poll_resync(Millis(0)), Some(0));
        assert_eq!(d.poll_resync(Millis(0)), None, "one in flight");
        let _ = d.handle_resync_done(Millis(5), true);
        assert_eq!(d.poll_timeout(), Some(Millis(1_005)));
        assert_eq!(d.poll_resync(Millis(1_004)), None);
        assert_eq!(d.poll_resync(Millis(1_005)), Some(0));
        let _ = d.handle_entry(Source::Resync, &name("a"), 7, None);
        let _ = d.handle_resync_done(Millis(1_010), true);
        assert_eq!(d.poll_timeout(), Some(Millis(1_110)), "the grace check first");
        assert!(!d.poll_restart(Millis(1_109)));
        assert!(d.poll_restart(Millis(1_110)), "the watch did not deliver revision 7");
        assert_eq!(d.poll_timeout(), Some(Millis(2_110)));
        assert_eq!(d.poll_resync(Millis(2_110)), Some(7));
        let _ = d.handle_entry(Source::Resync, &name("a"), 8, None);
        let _ = d.handle_resync_done(Millis(2_111), true);
        d.handle_seen(Source::Watch, 8);
        assert!(!d.poll_restart(Millis(2_211)), "the watch caught up within the grace");
        d.handle_reconnected(Millis(2_300));
        assert_eq!(d.poll_resync(Millis(2_300)), Some(8), "at once after a reconnection");
        d.handle_reconnected(Millis(2_400));
        assert_eq!(d.poll_resync(Millis(2_400)), Some(8), "one lost with the connection is abandoned");
        assert_eq!(d.resyncs(), 5);
    }

    #[test]
    fn latest_is_closed_without_a_decision() {
        let d: DecisionDemux<u8> = DecisionDemux::new(1_000, 10);
        assert_eq!(d.latest(&name("a")), (DecisionId::default(), true));
    }
}
