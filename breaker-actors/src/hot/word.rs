//! The published snapshot: the one word `try_acquire` reads on every call, and the full
//! [`Snapshot`] behind it that only [`HotPath::snapshot`](super::HotPath::snapshot) and a
//! rejection read.
//!
//! The word packs everything admission needs, so a reader can never pair one snapshot's
//! admission with another's generation, round or state (bit 0 is the lowest):
//!
//! | bits  | field |
//! |-------|-------|
//! | 0-1   | mode: allow, fraction, probe, reject |
//! | 2     | shut down (set by `close`, kept by every later install) |
//! | 3     | record outcomes (clear when disabled) |
//! | 4-6   | effective state label |
//! | 7-22  | per-mille of a fraction admission; otherwise the install tag |
//! | 23-46 | generation tag: the generation's low 24 bits |
//! | 47-63 | probe-round tag: the round's low 17 bits; with a fraction, the install tag |
//!
//! In allow and reject modes bits 47-63 carry no round; bit 47 is the streak trip: in
//! allow mode, the snapshot lets the hot path trip itself on the call that completes the
//! overlay's consecutive-failure run ([`Snapshot::trip_on_streak`]); in reject mode, the
//! word is such a trip's ([`Published::trip_on_streak`]): the allow word it replaced with
//! the mode set to reject and the label to open, everything else (the install tag above
//! all, so the rejection finds its install's retry slot) unchanged. The next install
//! replaces it like any word.
//!
//! Allow without shut down is the value `0` in bits 0-2, so the closed state costs one load
//! and one mask test. The probe grant is not in the word but in the probe allowance, next
//! to the count it bounds (see `probes`).
//!
//! The rest of the snapshot sits beside the word on the same cache line (the installer is
//! its only writer, so the line is read-shared between installs) under a sequence lock: the
//! installer never waits, a `snapshot()` reader retries if an install overlapped it.
//!
//! A rejection needs `retry_at` too, and must not pair one install's state with another's
//! hint, nor wait for an installer. So each install also writes its hint into one of two
//! retry slots (by the parity of its install number), tagged with the install number's low
//! 16 bits, before publishing a word that carries the same tag. A rejecting reader finds
//! its own install's hint in the slot, or a newer install's tag, which tells it that its
//! word is at least two installs old: it decides again under the newer word.

use crate::machine::{Admission, Millis, Snapshot, StateLabel};
use crate::sync::{AtomicU64, Ordering, fence, spin_loop};

const MODE_MASK: u64 = 0b11;
const MODE_FRACTION: u64 = 1;
const MODE_PROBE: u64 = 2;
const MODE_REJECT: u64 = 3;
const SHUT: u64 = 1 << 2;
const RECORD: u64 = 1 << 3;
const LABEL_SHIFT: u32 = 4;
const LABEL_MASK: u64 = 0b111 << LABEL_SHIFT;
const PARAM_SHIFT: u32 = 7;
const GEN_SHIFT: u32 = 23;
/// Width of the generation tag in the word and in every counter cell.
pub(super) const GEN_TAG_BITS: u32 = 24;
/// The generation tag's mask.
pub(super) const GEN_TAG_MASK: u64 = (1 << GEN_TAG_BITS) - 1;
/// Where the round tag sits, in the word and in the probe allowance alike.
pub(super) const ROUND_SHIFT: u32 = 47;
const TAG16: u64 = 0xFFFF;
const RETRY_TAG_SHIFT: u32 = 48;
/// Allow mode: the hot path may trip on the streak; reject mode: it did.
const STREAK_TRIP: u64 = 1 << ROUND_SHIFT;
/// A retry slot's "no hint" (and what hints of 2^48 - 1 ms or later read as).
const RETRY_NONE: u64 = (1 << RETRY_TAG_SHIFT) - 1;

/// The generation tag of `generation`.
pub(super) fn gen_tag(generation: u64) -> u64 {
    generation & GEN_TAG_MASK
}

/// The newest generation not after `current` whose tag is `tag`. Exact while no permit
/// outlives 2^24 generation changes; `current` must be at least the tag's generation.
pub(super) fn generation_of(tag: u64, current: u64) -> u64 {
    let behind = gen_tag(current).wrapping_sub(tag) & GEN_TAG_MASK;
    current.saturating_sub(behind)
}

/// How the word admits calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Allow,
    Fraction,
    Probe,
    Reject,
}

/// One decoded-on-demand snapshot word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Word(u64);

impl Word {
    /// The word of `snapshot`, the `install`th installed.
    fn encode(snapshot: &Snapshot, install: u64) -> Self {
        let tag = install & TAG16;
        let (mode, param, round) = match snapshot.admission {
            Admission::Allow => (0, tag, u64::from(snapshot.trip_on_streak)),
            Admission::Fraction { per_mille } => (MODE_FRACTION, u64::from(per_mille), tag),
            Admission::Probe { round, .. } => (MODE_PROBE, tag, round),
            Admission::Reject => (MODE_REJECT, tag, 0),
        };
        let record = if snapshot.record { RECORD } else { 0 };
        Self(
            mode | record
                | (label_code(snapshot.state) << LABEL_SHIFT)
                | (param << PARAM_SHIFT)
                | (gen_tag(snapshot.generation) << GEN_SHIFT)
                | (round << ROUND_SHIFT),
        )
    }

    /// Admits every call: allow, and not shut down.
    #[inline]
    pub(super) fn admits_all(self) -> bool {
        self.0 & (MODE_MASK | SHUT) == 0
    }

    #[inline]
    pub(super) fn mode(self) -> Mode {
        match self.0 & MODE_MASK {
            0 => Mode::Allow,
            MODE_FRACTION => Mode::Fraction,
            MODE_PROBE => Mode::Probe,
            _ => Mode::Reject,
        }
    }

    #[inline]
    pub(super) fn is_shut(self) -> bool {
        self.0 & SHUT != 0
    }

    #[inline]
    pub(super) fn records(self) -> bool {
        self.0 & RECORD != 0
    }

    #[inline]
    pub(super) fn label(self) -> StateLabel {
        label_of((self.0 >> LABEL_SHIFT) & 0b111)
    }

    #[inline]
    pub(super) fn per_mille(self) -> u16 {
        // Sixteen bits by construction.
        u16::try_from((self.0 >> PARAM_SHIFT) & 0xFFFF).unwrap_or(u16::MAX)
    }

    /// The low 16 bits of the number of the install that published this word.
    #[inline]
    fn install_tag(self) -> u64 {
        if self.mode() == Mode::Fraction { (self.0 >> ROUND_SHIFT) & TAG16 } else { (self.0 >> PARAM_SHIFT) & TAG16 }
    }

    #[inline]
    pub(super) fn gen_tag(self) -> u64 {
        (self.0 >> GEN_SHIFT) & GEN_TAG_MASK
    }

    /// Whether this allow word lets the hot path trip itself on the overlay's streak.
    #[inline]
    pub(super) fn streak_armed(self) -> bool {
        self.0 & (MODE_MASK | STREAK_TRIP) == STREAK_TRIP
    }

    /// Whether this word is the hot path's own streak trip.
    #[inline]
    pub(super) fn streak_tripped(self) -> bool {
        self.0 & (MODE_MASK | STREAK_TRIP) == MODE_REJECT | STREAK_TRIP
    }

    /// The word of a streak trip of this armed allow word: reject, open, the rest kept.
    fn tripped(self) -> Self {
        debug_assert!(self.streak_armed(), "only an armed allow word trips");
        Self((self.0 & !(MODE_MASK | LABEL_MASK)) | MODE_REJECT | (label_code(StateLabel::Open) << LABEL_SHIFT))
    }

    /// The round tag, left in place (bits 47-63) to compare with the allowance's.
    #[inline]
    pub(super) fn round_bits(self) -> u64 {
        self.0 & (u64::MAX << ROUND_SHIFT)
    }
}

pub(super) fn label_code(label: StateLabel) -> u64 {
    match label {
        StateLabel::Closed => 0,
        StateLabel::Ramping => 1,
        StateLabel::Open => 2,
        StateLabel::HalfOpen => 3,
        StateLabel::ForcedOpen => 4,
        StateLabel::ForcedClosed => 5,
        StateLabel::Disabled => 6,
        StateLabel::MetricsOnly => 7,
    }
}

pub(super) fn label_of(code: u64) -> StateLabel {
    match code & 0b111 {
        0 => StateLabel::Closed,
        1 => StateLabel::Ramping,
        2 => StateLabel::Open,
        3 => StateLabel::HalfOpen,
        4 => StateLabel::ForcedOpen,
        5 => StateLabel::ForcedClosed,
        6 => StateLabel::Disabled,
        _ => StateLabel::MetricsOnly,
    }
}

// The cold copy's encodings. `labels`: state, fleet, local (8 = none) in four bits each,
// then record, outage and whether `retry_at` is set.
const LOCAL_NONE: u64 = 8;
const LABELS_RECORD: u64 = 1 << 12;
const LABELS_OUTAGE: u64 = 1 << 13;
const LABELS_RETRY: u64 = 1 << 14;
const LABELS_STREAK_TRIP: u64 = 1 << 15;

/// Retry slot `install mod 2`'s value for `retry_at`.
fn retry_slot(install: u64, retry_at: Option<Millis>) -> u64 {
    ((install & TAG16) << RETRY_TAG_SHIFT) | retry_at.map_or(RETRY_NONE, |at| at.0.min(RETRY_NONE))
}

fn encode_admission(admission: Admission) -> (u64, u64) {
    match admission {
        Admission::Allow => (0, 0),
        Admission::Fraction { per_mille } => (MODE_FRACTION | (u64::from(per_mille) << 32), 0),
        Admission::Probe { grant, round } => (MODE_PROBE | (u64::from(grant) << 32), round),
        Admission::Reject => (MODE_REJECT, 0),
    }
}

fn decode_admission(admission: u64, round: u64) -> Admission {
    let value = admission >> 32;
    match admission & MODE_MASK {
        0 => Admission::Allow,
        MODE_FRACTION => Admission::Fraction { per_mille: u16::try_from(value).unwrap_or(u16::MAX) },
        MODE_PROBE => Admission::Probe { grant: u32::try_from(value).unwrap_or(u32::MAX), round },
        _ => Admission::Reject,
    }
}

fn encode_labels(s: &Snapshot) -> u64 {
    let local = s.local.map_or(LOCAL_NONE, label_code);
    let mut labels = label_code(s.state) | (label_code(s.fleet) << 4) | (local << 8);
    if s.record {
        labels |= LABELS_RECORD;
    }
    if s.outage {
        labels |= LABELS_OUTAGE;
    }
    if s.retry_at.is_some() {
        labels |= LABELS_RETRY;
    }
    if s.trip_on_streak {
        labels |= LABELS_STREAK_TRIP;
    }
    labels
}

/// The word and the cold snapshot, on one cache line of their own: written only by
/// `install` (and once by `close`), read by everyone.
#[repr(align(128))]
pub(super) struct Published {
    word: AtomicU64,
    /// Odd while an install is writing.
    version: AtomicU64,
    generation: AtomicU64,
    admission: AtomicU64,
    round: AtomicU64,
    labels: AtomicU64,
    retry_at: AtomicU64,
    /// The rejections' hints, by install parity.
    retry: [AtomicU64; 2],
    /// The installer's own memory of the last probe round armed, plus one (0: none).
    last_round: AtomicU64,
}

impl Published {
    pub(super) fn new(snapshot: &Snapshot) -> Self {
        let (admission, round) = encode_admission(snapshot.admission);
        let last_round = match snapshot.admission {
            Admission::Probe { round, .. } => round.wrapping_add(1),
            _ => 0,
        };
        // The first snapshot is install 0.
        Self {
            word: AtomicU64::new(Word::encode(snapshot, 0).0),
            version: AtomicU64::new(0),
            generation: AtomicU64::new(snapshot.generation),
            admission: AtomicU64::new(admission),
            round: AtomicU64::new(round),
            labels: AtomicU64::new(encode_labels(snapshot)),
            retry_at: AtomicU64::new(snapshot.retry_at.map_or(0, |at| at.0)),
            retry: [AtomicU64::new(retry_slot(0, snapshot.retry_at)), AtomicU64::new(retry_slot(1, None))],
            last_round: AtomicU64::new(last_round),
        }
    }

    /// The word in force. Acquire: whatever the installer stored before publishing it (the
    /// probe allowance's reset above all) is visible to whoever acts on it.
    #[inline]
    pub(super) fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    /// The retry hint of `word`'s install, for a rejection; `Err` if `word` is out of date
    /// (two or more installs old), so the caller decides again under a newer one. Inlined:
    /// in the open state this is part of every call (an out-of-line call here cost about
    /// a third of a rejection).
    #[inline]
    pub(super) fn retry_at(&self, word: Word) -> Result<Option<u64>, OutOfDate> {
        let tag = word.install_tag();
        // `word` was loaded with Acquire, so this slot holds its install's hint or a newer
        // install's. Acquire: finding a newer install's tag then guarantees that reloading
        // the word yields a newer word (that install published one before writing here),
        // so the caller's retry makes progress.
        #[expect(clippy::cast_possible_truncation, reason = "only the low bit picks the slot")]
        let slot = self.retry[tag as usize % 2].load(Ordering::Acquire);
        if slot >> RETRY_TAG_SHIFT != tag {
            return Err(OutOfDate);
        }
        let at = slot & RETRY_NONE;
        Ok((at != RETRY_NONE).then_some(at))
    }

    /// The newest generation installed. Acquire, and read by the drainer after it took the
    /// cells: every tag it found was published by an install it now sees.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Starts an install: writes the cold copy of `snapshot` and says whether its probe round
    /// is new (the caller then re-arms the allowance before [`Self::publish`]).
    pub(super) fn begin_install(&self, snapshot: &Snapshot) -> InstallTicket {
        let version = self.version.load(Ordering::Relaxed);
        let install = version / 2 + 1;
        self.version.store(version.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd version before the field stores below, so a reader that sees any
        // of them also sees the odd version when it checks again.
        fence(Ordering::Release);
        let (admission, round) = encode_admission(snapshot.admission);
        self.generation.store(snapshot.generation, Ordering::Relaxed);
        self.admission.store(admission, Ordering::Relaxed);
        self.round.store(round, Ordering::Relaxed);
        self.labels.store(encode_labels(snapshot), Ordering::Relaxed);
        self.retry_at.store(snapshot.retry_at.map_or(0, |at| at.0), Ordering::Relaxed);
        #[expect(clippy::cast_possible_truncation, reason = "only the low bit picks the slot")]
        self.retry[install as usize % 2].store(retry_slot(install, snapshot.retry_at), Ordering::Release);
        let new_round = match snapshot.admission {
            Admission::Probe { round, .. } => {
                let key = round.wrapping_add(1);
                self.last_round.swap(key, Ordering::Relaxed) != key
            }
            _ => false,
        };
        InstallTicket { version, new_round, word: Word::encode(snapshot, install) }
    }

    /// Publishes the word (Release: after the allowance) and ends the install. A
    /// read-modify-write, so a concurrent `close` is never overwritten.
    pub(super) fn publish(&self, ticket: &InstallTicket) {
        let (version, Word(word)) = (ticket.version, ticket.word);
        let _ = self.word.fetch_update(Ordering::Release, Ordering::Relaxed, |old| Some(word | (old & SHUT)));
        self.version.store(version.wrapping_add(2), Ordering::Release);
    }

    /// Trips the word on the overlay's streak: `granted`, the armed allow word the crossing
    /// call's permit was granted under, becomes its reject word, if it is still the word in
    /// force but for the shut-down bit (one CAS, on the crossing call only). A newer
    /// install wins: the machine has moved on and judges the run at the next drain.
    /// Whether this call tripped it.
    pub(super) fn trip_on_streak(&self, granted: Word) -> bool {
        debug_assert!(granted.streak_armed(), "only an armed word trips");
        let mut current = self.word.load(Ordering::Relaxed);
        while current & !SHUT == granted.0 {
            // Release, as an install: a reader of the tripped word acts on it as on any.
            match self.word.compare_exchange_weak(
                current,
                Word(current).tripped().0,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
        false
    }

    /// Marks the word shut down, for good.
    pub(super) fn shut(&self) {
        self.word.fetch_or(SHUT, Ordering::Release);
    }

    /// The snapshot in force: a consistent copy of one install.
    pub(super) fn snapshot(&self) -> Snapshot {
        loop {
            let before = self.version.load(Ordering::Acquire);
            if before & 1 == 0 {
                let generation = self.generation.load(Ordering::Relaxed);
                let admission = self.admission.load(Ordering::Relaxed);
                let round = self.round.load(Ordering::Relaxed);
                let labels = self.labels.load(Ordering::Relaxed);
                let retry_at = self.retry_at.load(Ordering::Relaxed);
                // Pairs with the installer's release fence: if any load above saw an
                // install's store, the version check below sees that install's odd version.
                fence(Ordering::Acquire);
                if self.version.load(Ordering::Relaxed) == before {
                    let local = (labels >> 8) & 0xF;
                    return Snapshot {
                        generation,
                        admission: decode_admission(admission, round),
                        record: labels & LABELS_RECORD != 0,
                        state: label_of(labels),
                        fleet: label_of(labels >> 4),
                        local: (local != LOCAL_NONE).then(|| label_of(local)),
                        retry_at: (labels & LABELS_RETRY != 0).then_some(Millis(retry_at)),
                        outage: labels & LABELS_OUTAGE != 0,
                        trip_on_streak: labels & LABELS_STREAK_TRIP != 0,
                    };
                }
            }
            spin_loop();
        }
    }
}

/// A word two or more installs older than the newest.
#[derive(Debug)]
pub(super) struct OutOfDate;

/// An install in progress: it must end with [`Published::publish`].
#[must_use]
pub(super) struct InstallTicket {
    version: u64,
    /// Whether the snapshot starts a probe round the allowance has not seen.
    pub(super) new_round: bool,
    word: Word,
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn snapshot(generation: u64, admission: Admission, state: StateLabel) -> Snapshot {
        Snapshot {
            generation,
            admission,
            record: true,
            state,
            fleet: state,
            local: None,
            retry_at: None,
            outage: false,
            trip_on_streak: false,
        }
    }

    #[test]
    fn the_word_carries_admission_state_generation_and_round() {
        let s = snapshot(0x0001_2345_6789, Admission::Probe { grant: 3, round: 0x1_2345 }, StateLabel::HalfOpen);
        let w = Word::encode(&s, 3);
        assert_eq!(w.mode(), Mode::Probe);
        assert_eq!(w.label(), StateLabel::HalfOpen);
        assert_eq!(w.gen_tag(), gen_tag(0x0001_2345_6789));
        assert_eq!(w.round_bits() >> ROUND_SHIFT, 0x1_2345);
        assert!(w.records() && !w.is_shut() && !w.admits_all());
        assert_eq!(w.install_tag(), 3);
        let f = Word::encode(&snapshot(2, Admission::Fraction { per_mille: 999 }, StateLabel::Ramping), 0x1_0004);
        assert_eq!((f.mode(), f.per_mille(), f.install_tag()), (Mode::Fraction, 999, 4));
        let a = Word::encode(&snapshot(2, Admission::Allow, StateLabel::MetricsOnly), 0);
        assert!(a.admits_all());
        assert_eq!(a.label(), StateLabel::MetricsOnly);
    }

    #[test]
    fn tags_map_back_to_the_newest_generation_with_those_bits() {
        let current = 5 << GEN_TAG_BITS | 3;
        assert_eq!(generation_of(gen_tag(current), current), current);
        assert_eq!(generation_of(gen_tag(current - 7), current), current - 7);
        assert_eq!(generation_of(gen_tag(current - GEN_TAG_MASK), current), current - GEN_TAG_MASK);
    }

    #[test]
    fn the_cold_copy_round_trips_every_field() {
        let mut s = snapshot(9, Admission::Probe { grant: u32::MAX, round: u64::MAX - 1 }, StateLabel::HalfOpen);
        s.local = Some(StateLabel::Open);
        s.fleet = StateLabel::ForcedClosed;
        s.retry_at = Some(Millis(u64::MAX));
        s.outage = true;
        s.record = false;
        s.trip_on_streak = true;
        let p = Published::new(&snapshot(1, Admission::Allow, StateLabel::Closed));
        let ticket = p.begin_install(&s);
        assert!(ticket.new_round);
        p.publish(&ticket);
        assert_eq!(p.snapshot(), s);
        let first = p.load();
        assert_eq!(p.retry_at(first).unwrap(), None, "\"never\" reads as no hint");
        let again = p.begin_install(&s);
        assert!(!again.new_round, "the same round again is not new");
        p.publish(&again);
        assert!(p.retry_at(first).is_ok(), "one install old: its hint is still there");
        s.retry_at = Some(Millis(12));
        let third = p.begin_install(&s);
        p.publish(&third);
        assert!(p.retry_at(first).is_err(), "a word two installs old is out of date");
        assert_eq!(p.retry_at(p.load()).unwrap(), Some(12));
    }
}
