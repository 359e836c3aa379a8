//! The probe allowance: how many probes of the current round this node has handed out, in
//! one `AtomicU64` with the round's tag and its grant, so taking a probe is one CAS that
//! checks all three at once.
//!
//! Layout: issued in bits 0-23, grant in bits 24-46 (saturated at 2^23 - 1), round tag in
//! bits 47-63 (the same bits as in the snapshot word, so the two compare with one xor).
//!
//! Why it cannot over-issue:
//! - the round total: a probe is taken only by a CAS from `issued < grant` to `issued + 1`
//!   on the allowance of the reader's round; only a new round resets `issued`, and an
//!   install with the same round (a new generation inside one round) keeps it, changing
//!   only the grant;
//! - a reset happens before the word naming the new round is published (Release), so a
//!   reader of the new word sees the reset; a reader still holding the old word finds a
//!   different tag, never takes from the new round under the old snapshot, and rejects if
//!   re-reading the word shows nothing newer (the installer is between its two stores:
//!   rejecting beats spinning on it);
//! - the grant lives here, next to the count, so a grant lowered within a round applies to
//!   every later CAS, even by a reader of the older word.
//!
//! A probe permit dropped without an outcome, or ended with an ignored (neutral) one, gives
//! its slot back, if its round is still the allowance's round (a slot of a finished round
//! is worthless). So `issued` counts the round's probes in flight plus those that ended in
//! a success or a failure, and that is what the grant bounds.

use crate::sync::{AtomicU64, Ordering};

use super::word::{ROUND_SHIFT, Word};

const ISSUED_MASK: u64 = (1 << 24) - 1;
const GRANT_SHIFT: u32 = 24;
/// The largest grant the allowance holds; larger grants are cut to it (fewer probes, never
/// more).
pub(super) const GRANT_MAX: u32 = (1 << 23) - 1;
const GRANT_MASK: u64 = (GRANT_MAX as u64) << GRANT_SHIFT;
const ROUND_MASK: u64 = u64::MAX << ROUND_SHIFT;

fn issued(allowance: u64) -> u64 {
    allowance & ISSUED_MASK
}

fn grant(allowance: u64) -> u64 {
    (allowance & GRANT_MASK) >> GRANT_SHIFT
}

fn grant_bits(grant: u32) -> u64 {
    u64::from(grant.min(GRANT_MAX)) << GRANT_SHIFT
}

/// What an attempt to take a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Take {
    /// A probe slot of the reader's round is the caller's.
    Taken,
    /// The round's grant is used up.
    Exhausted,
    /// The round grants this node nothing (so far).
    NoGrant,
    /// The allowance is on another round: the reader's word is out of date.
    OtherRound,
}

/// The probe allowance, on its own cache line (probes are rare; the word's readers should
/// not see its line bounce).
#[repr(align(128))]
pub(super) struct ProbeAllowance(AtomicU64);

impl ProbeAllowance {
    /// An allowance on round tag 0 with no grant: nothing can be taken before an install
    /// arms a probe round.
    pub(super) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Takes one probe of `word`'s round.
    pub(super) fn take(&self, word: Word) -> Take {
        let round = word.round_bits();
        // Relaxed: `word` was loaded with Acquire, so the reset of its round (stored before
        // the word was published) or something newer is what this load sees.
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            if current & ROUND_MASK != round {
                return Take::OtherRound;
            }
            if issued(current) >= grant(current) {
                return if grant(current) == 0 { Take::NoGrant } else { Take::Exhausted };
            }
            match self.0.compare_exchange_weak(current, current + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Take::Taken,
                Err(now) => current = now,
            }
        }
    }

    /// Gives back a slot of the round tagged as in `word`, if that round is still armed.
    pub(super) fn give_back(&self, word: Word) {
        let round = word.round_bits();
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
            (current & ROUND_MASK == round && issued(current) > 0).then(|| current - 1)
        });
    }

    /// Arms the allowance for an install of round `round` with `grant`: a new round starts
    /// from nothing issued, the same round keeps its count under the new grant. Must come
    /// before the word is published.
    pub(super) fn arm(&self, round: u64, grant: u32, new_round: bool) {
        if new_round {
            self.0.store((round << ROUND_SHIFT) | grant_bits(grant), Ordering::Relaxed);
        } else {
            let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                Some((current & !GRANT_MASK) | grant_bits(grant))
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::hot::word::Published;
    use crate::machine::{Admission, Snapshot, StateLabel};

    fn probe_word(round: u64) -> Word {
        let snapshot = Snapshot {
            generation: 2,
            admission: Admission::Probe { grant: 1, round },
            record: true,
            state: StateLabel::HalfOpen,
            fleet: StateLabel::HalfOpen,
            local: None,
            retry_at: None,
            outage: false,
            trip_on_streak: false,
        };
        let published = Published::new(&snapshot);
        published.load()
    }

    #[test]
    fn a_round_grants_at_most_its_grant_and_keeps_its_count_across_grant_changes() {
        let allowance = ProbeAllowance::new();
        let word = probe_word(4);
        allowance.arm(4, 2, true);
        assert_eq!(allowance.take(word), Take::Taken);
        assert_eq!(allowance.take(word), Take::Taken);
        assert_eq!(allowance.take(word), Take::Exhausted);
        allowance.arm(4, 3, false);
        assert_eq!(allowance.take(word), Take::Taken);
        assert_eq!(allowance.take(word), Take::Exhausted);
        allowance.give_back(word);
        assert_eq!(allowance.take(word), Take::Taken);
        allowance.arm(5, 1, true);
        assert_eq!(allowance.take(word), Take::OtherRound);
        allowance.give_back(word);
        assert_eq!(allowance.take(probe_word(5)), Take::Taken);
        assert_eq!(allowance.take(probe_word(5)), Take::Exhausted, "an old round's slot is not given to a new one");
    }

    #[test]
    fn huge_grants_saturate() {
        let allowance = ProbeAllowance::new();
        allowance.arm(1, u32::MAX, true);
        assert_eq!(grant(allowance.0.load(Ordering::Relaxed)), u64::from(GRANT_MAX));
    }
}
