//! The lease store's two rules, pure so that every store applies the same code: the NATS
//! transport, the in-process broker and the fleet harness of `model-check`.
//!
//! # Terms
//!
//! A term is the fencing token of one tenure. Terms used to be the lease key's revision,
//! which restarts at 1 when the lease bucket is deleted and recreated (an operator's
//! mistake, a restore from backup) while the decision bucket keeps decisions of much
//! higher terms: every new holder's term was below what the nodes had applied, so none
//! could decide until the revisions had climbed past the stored terms. Now a store grants
//! [`next_term`]: the larger of the acquiring revision, one more than the last term the
//! store granted for the shard (its term record), and one more than the newest term the
//! acquiring node knows from the decisions it has seen. A new holder therefore decides at
//! once whatever terms the decision bucket holds, and two holders never share a term: the
//! store grants terms in the order of acquisitions and each is above the last.
//!
//! # Stale lease values
//!
//! A live holder renews its lease every third of its TTL, and each renewal moves the key's
//! revision. A value that has not moved for a whole TTL on the observer's own clock (which
//! started observing no earlier than the value was written) is therefore dead whoever
//! wrote it: a holder's own deadline is `sent_at + ttl - margin`, before that. This covers
//! values that never expire by themselves (written by hand without a TTL, garbage that
//! does not decode), which would otherwise leave a shard without a decider forever.
//! [`StaleLease`] applies the rule; the store may then overwrite the value by CAS on the
//! revision it saw.

use super::units::{Millis, Term};

/// The largest term a decision may carry (2^53 - 1, the largest integer every JSON reader
/// holds exactly). A decision claiming more is malformed: a term near `u64::MAX` would leave
/// no room for a later term to fence it.
pub const MAX_TERM: u64 = (1 << 53) - 1;

/// The term a store grants to an acquisition at `revision`, given the last term it granted
/// for the shard (`Term(0)`: none recorded) and the newest term the acquiring node knows
/// (from decisions; `Term(0)`: none). Never above [`MAX_TERM`] unless the revision is.
pub fn next_term(revision: u64, last_granted: Term, known: Term) -> Term {
    let after = |t: Term| t.0.min(MAX_TERM - 1).saturating_add(1);
    Term(revision.max(after(last_granted)).max(after(known)))
}

/// Watches one lease key's value for staleness (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StaleLease {
    seen: Option<(u64, Millis)>,
}

impl StaleLease {
    /// Nothing observed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key holds a value at `revision`, seen `now` on this node's clock: whether that
    /// value has stood unchanged for at least `ttl_ms`, so that it may be overwritten.
    pub fn observe(&mut self, now: Millis, revision: u64, ttl_ms: u64) -> bool {
        match self.seen {
            Some((seen, since)) if seen == revision => now.since(since) >= ttl_ms,
            _ => {
                self.seen = Some((revision, now));
                false
            }
        }
    }

    /// The key is free or held by this node: forget what was seen.
    pub fn clear(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_above_the_revision_the_record_and_every_known_term() {
        assert_eq!(next_term(7, Term(0), Term(0)), Term(7), "an intact bucket: terms are revisions");
        assert_eq!(next_term(7, Term(5), Term(6)), Term(7));
        assert_eq!(next_term(1, Term(0), Term(20_012)), Term(20_013), "a rebuilt bucket");
        assert_eq!(next_term(3, Term(20_013), Term(20_012)), Term(20_014), "the record orders holders");
        assert_eq!(next_term(3, Term(0), Term(u64::MAX)), Term(MAX_TERM), "bounded");
    }

    #[test]
    fn a_value_is_stale_after_standing_still_for_a_ttl() {
        let mut s = StaleLease::new();
        assert!(!s.observe(Millis(100), 4, 1_000));
        assert!(!s.observe(Millis(1_099), 4, 1_000));
        assert!(s.observe(Millis(1_100), 4, 1_000));
        assert!(!s.observe(Millis(1_200), 5, 1_000), "a renewal starts the watch again");
        assert!(!s.observe(Millis(2_199), 5, 1_000));
        s.clear();
        assert!(!s.observe(Millis(5_000), 5, 1_000));
    }
}
