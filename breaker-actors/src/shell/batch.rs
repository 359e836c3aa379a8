//! [`ReportBatcher`]: which of a node's reports leave in which message, and when. Pure
//! (time is an input, as in the machine): the NATS transport drives it with its clock and
//! publish acks, and the rule is the same wherever it runs.
//!
//! A node sends **at most one message per flush interval**, whatever the number of its
//! breakers and their call rates: every breaker's waiting reports ride in it. A report that
//! could matter to a decision (a failure, a slow call, a rejected or ignored call, a failure
//! streak, an open overlay, or any report of a breaker whose fleet state is not closed) is
//! *urgent*: the next message leaves as soon as the interval allows, and it carries every
//! waiting report of every breaker, so successes never arrive after the failures they came
//! before. A node whose breakers see nothing but successes in the closed state sends lazily,
//! once per [`BatchLimits::lazy_ms`] (<= 10 messages a second at 100 ms).
//!
//! While a message is in flight nothing else is sent (one in flight keeps a node's reports in
//! order); reports arriving meanwhile wait and merge with the waiting report of the same
//! breaker when the decider would count them the same way ([`coalesce`]). A message holds at
//! most [`BatchLimits::max_bytes`] (by [`size_hint`]); what does not fit waits for the next
//! interval, urgent breakers first. Everything is bounded: reports waiting per breaker,
//! breakers waiting, and the age of a waiting report (older than the outcome stream keeps
//! reports, it would be discarded by the stream anyway); what is dropped is counted.
//!
//! Methods, in the manner of a sans-I/O connection: getters (`pending`, `lost`, ...), one
//! mutator (`set_interval`), `handle_*` (news from outside: a report, an ack, a failed
//! publish), `poll_*` (what to do now, when to be called again).

use std::collections::{BTreeMap, VecDeque};

use crate::machine::{BreakerName, Millis, Report};

/// How a node batches its reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// The least time between two messages (the flush interval).
    pub interval_ms: u64,
    /// How long reports that cannot matter to a decision may wait before they are sent.
    pub lazy_ms: u64,
    /// The most bytes of reports one message carries (by [`size_hint`]).
    pub max_bytes: usize,
    /// Reports waiting per breaker (only grows while the broker is unreachable: reports of
    /// one applied decision merge).
    pub max_per_breaker: usize,
    /// Breakers with reports waiting.
    pub max_breakers: usize,
    /// A waiting report older than this is dropped (counted).
    pub max_age_ms: u64,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            interval_ms: 5,
            lazy_ms: 100,
            max_bytes: 256 * 1024,
            max_per_breaker: 64,
            max_breakers: 100_000,
            max_age_ms: 60_000,
        }
    }
}

/// Whether a report could change a decision soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// It could: send at the next interval.
    Urgent,
    /// It cannot (successes in the closed state): it may wait up to `lazy_ms`.
    Lazy,
}

impl Urgency {
    /// The rule: anything but successes, or anything while the fleet is not closed, is urgent.
    pub fn of(report: &Report, fleet_closed: bool) -> Self {
        let c = &report.counts;
        let quiet = fleet_closed
            && !report.local_open
            && report.longest_failure_streak == 0
            && c.failure == 0
            && c.slow == 0
            && c.rejected == 0
            && c.ignored == 0;
        if quiet { Self::Lazy } else { Self::Urgent }
    }
}

/// One message's worth of reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Position among this batcher's messages, from 1 (the message id derives from it, so a
    /// retried message is deduplicated by the stream).
    pub seq: u64,
    /// The reports, at most one run per breaker, in the order they were handed over per
    /// breaker.
    pub reports: Vec<Report>,
}

#[derive(Debug, Clone)]
struct InFlight {
    batch: Batch,
    first_sent: Millis,
    failed: bool,
}

#[derive(Debug, Clone)]
struct Waiting {
    report: Report,
    since: Millis,
    urgent: bool,
}

/// The node's report batcher: see the module documentation.
#[derive(Debug, Clone)]
pub struct ReportBatcher {
    limits: BatchLimits,
    waiting: BTreeMap<BreakerName, VecDeque<Waiting>>,
    /// The message in flight, when it was first sent, and whether its publish failed (it
    /// is then sent again, unchanged).
    in_flight: Option<InFlight>,
    next_seq: u64,
    last_sent: Option<Millis>,
    lost: u64,
    /// Reports dropped since the last [`ReportBatcher::take_lost`], by breaker.
    lost_by: BTreeMap<BreakerName, u64>,
    coalesced: u64,
    sent: u64,
}

impl ReportBatcher {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        let limits = BatchLimits {
            interval_ms: limits.interval_ms.max(1),
            max_per_breaker: limits.max_per_breaker.max(1),
            max_breakers: limits.max_breakers.max(1),
            max_bytes: limits.max_bytes.max(1),
            ..limits
        };
        Self {
            limits,
            waiting: BTreeMap::new(),
            in_flight: None,
            next_seq: 1,
            last_sent: None,
            lost: 0,
            lost_by: BTreeMap::new(),
            coalesced: 0,
            sent: 0,
        }
    }

    // ---- getters ----

    /// The limits in force.
    pub fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    /// Reports waiting to be sent, plus those of the message in flight.
    pub fn pending(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum::<usize>()
            + self.in_flight.as_ref().map_or(0, |f| f.batch.reports.len())
    }

    /// Whether a message is in flight.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Reports dropped so far (bounds or age).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The reports dropped since the last call, by breaker (what the node's metrics count
    /// per breaker); bounded by the breakers that lost any.
    pub fn take_lost(&mut self) -> BTreeMap<BreakerName, u64> {
        std::mem::take(&mut self.lost_by)
    }

    fn lose(&mut self, breaker: &BreakerName, n: u64) {
        self.lost = self.lost.saturating_add(n);
        match self.lost_by.get_mut(breaker) {
            Some(lost) => *lost = lost.saturating_add(n),
            None => {
                self.lost_by.insert(breaker.clone(), n);
            }
        }
    }

    /// Reports merged into a waiting one so far.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Messages acknowledged so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    // ---- mutators ----

    /// Sets the least time between two messages (the node's flush interval).
    pub fn set_interval(&mut self, interval_ms: u64) {
        self.limits.interval_ms = interval_ms.max(1);
    }

    // ---- handle_* ----

    /// A breaker's report, handed over at `now`.
    pub fn handle_report(&mut self, now: Millis, report: Report, urgency: Urgency) {
        let urgent = urgency == Urgency::Urgent;
        if !self.waiting.contains_key(&report.breaker) && self.waiting.len() >= self.limits.max_breakers {
            // Full: the newcomer is dropped rather than some other breaker's evidence.
            self.lose(&report.breaker, 1);
            return;
        }
        let queue = self.waiting.entry(report.breaker.clone()).or_default();
        if let Some(last) = queue.back_mut()
            && coalesce(&mut last.report, &report)
        {
            last.urgent |= urgent;
            self.coalesced = self.coalesced.saturating_add(1);
            return;
        }
        let dropped = (queue.len() >= self.limits.max_per_breaker).then(|| queue.pop_front());
        let breaker = dropped.is_some().then(|| report.breaker.clone());
        queue.push_back(Waiting { report, since: now, urgent });
        if let Some(breaker) = breaker {
            self.lose(&breaker, 1);
        }
    }

    /// The message `seq` was acknowledged by the stream.
    pub fn handle_acked(&mut self, seq: u64) {
        if self.in_flight.as_ref().is_some_and(|f| f.batch.seq == seq) {
            self.in_flight = None;
            self.sent = self.sent.saturating_add(1);
        }
    }

    /// The message `seq` failed (or its fate is unknown): it is sent again, unchanged and
    /// under the same seq (so the stream deduplicates it if the first attempt did land), at
    /// the next poll, before anything that waits; given up once older than `max_age_ms`.
    pub fn handle_failed(&mut self, seq: u64) {
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.batch.seq == seq) {
            f.failed = true;
        }
    }

    /// Everything waiting is to leave as soon as the interval allows (a clean stop).
    pub fn handle_hurry(&mut self) {
        for w in self.waiting.values_mut().flatten() {
            w.urgent = true;
        }
    }

    // ---- poll_* ----

    /// The message to send now, if any: a retry of the one in flight whose publish failed,
    /// or a new one when the interval has passed and something is due.
    pub fn poll_transmit(&mut self, now: Millis) -> Option<Batch> {
        self.drop_old(now);
        if let Some(f) = &mut self.in_flight {
            if !f.failed {
                return None;
            }
            if now.since(f.first_sent) < self.limits.max_age_ms {
                f.failed = false;
                self.last_sent = Some(now);
                return Some(f.batch.clone());
            }
            if let Some(f) = self.in_flight.take() {
                for report in &f.batch.reports {
                    self.lose(&report.breaker, 1);
                }
            }
        }
        if !self.is_due(now) {
            return None;
        }
        let batch = self.take_batch();
        debug_assert!(!batch.reports.is_empty(), "a due batcher has something to send");
        self.last_sent = Some(now);
        self.in_flight = Some(InFlight { batch: batch.clone(), first_sent: now, failed: false });
        Some(batch)
    }

    /// When to poll again (`None`: only when something is handed over or acked).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if let Some(f) = &self.in_flight {
            return f.failed.then_some(Millis(0));
        }
        if self.waiting.is_empty() {
            return None;
        }
        let next_interval = self.last_sent.map_or(Millis(0), |t| Millis(t.0.saturating_add(self.limits.interval_ms)));
        let due = if self.any_urgent() {
            next_interval
        } else {
            let oldest = self.waiting.values().filter_map(|q| q.front()).map(|w| w.since).min()?;
            Millis(oldest.0.saturating_add(self.limits.lazy_ms)).max(next_interval)
        };
        Some(due)
    }

    fn any_urgent(&self) -> bool {
        self.waiting.values().flatten().any(|w| w.urgent)
    }

    fn is_due(&self, now: Millis) -> bool {
        self.in_flight.is_none() && self.poll_timeout().is_some_and(|due| due <= now)
    }

    /// Takes what fits in one message: urgent breakers first, then the oldest.
    fn take_batch(&mut self) -> Batch {
        let mut order: Vec<(bool, Millis, BreakerName)> = self
            .waiting
            .iter()
            .filter_map(|(name, q)| {
                let urgent = q.iter().any(|w| w.urgent);
                q.front().map(|w| (!urgent, w.since, name.clone()))
            })
            .collect();
        order.sort();
        let mut reports = Vec::new();
        let mut bytes = 0usize;
        'breakers: for (_, _, name) in order {
            let Some(queue) = self.waiting.get_mut(&name) else { continue };
            while let Some(front) = queue.front() {
                let size = size_hint(&front.report);
                if !reports.is_empty() && bytes.saturating_add(size) > self.limits.max_bytes {
                    break 'breakers;
                }
                bytes = bytes.saturating_add(size);
                if let Some(w) = queue.pop_front() {
                    reports.push(w.report);
                }
            }
            if queue.is_empty() {
                self.waiting.remove(&name);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        Batch { seq, reports }
    }

    fn drop_old(&mut self, now: Millis) {
        let max_age = self.limits.max_age_ms;
        let mut lost = Vec::new();
        self.waiting.retain(|breaker, q| {
            let mut n = 0u64;
            while q.front().is_some_and(|w| now.since(w.since) >= max_age) {
                q.pop_front();
                n += 1;
            }
            if n > 0 {
                lost.push((breaker.clone(), n));
            }
            !q.is_empty()
        });
        for (breaker, n) in lost {
            self.lose(&breaker, n);
        }
    }
}

/// Merges `later` into `earlier` when the decider would count them the same way (one node,
/// one incarnation, the same applied decision): the counts add up, the later report's
/// sequence, clock and overlay stand.
pub fn coalesce(earlier: &mut Report, later: &Report) -> bool {
    if earlier.breaker != later.breaker
        || earlier.node != later.node
        || earlier.incarnation != later.incarnation
        || earlier.applied != later.applied
    {
        return false;
    }
    earlier.counts.add(&later.counts);
    earlier.longest_failure_streak = earlier.longest_failure_streak.max(later.longest_failure_streak);
    earlier.seq = later.seq;
    earlier.clock = later.clock.clone();
    earlier.local_open = later.local_open;
    true
}

/// An upper estimate of a report's encoded size in bytes (postcard: names as length-prefixed
/// strings, integers as varints of at most 10 bytes).
pub fn size_hint(report: &Report) -> usize {
    let clock: usize = report.clock.entries().map(|(node, _)| node.as_str().len() + 1 + 10).sum();
    // version, incarnation, seq, applied (2), counts (5), streak, clock term and length, flag.
    let fixed = 3 + 10 * 12 + 1;
    fixed + report.breaker.as_str().len() + 1 + report.node.as_str().len() + 1 + clock
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::machine::{DecisionId, NodeId, OutcomeCounts, VectorClock, WIRE_VERSION};

    fn report(breaker: &str, seq: u64, failures: u64, successes: u64) -> Report {
        Report {
            version: WIRE_VERSION,
            breaker: BreakerName::new(breaker).unwrap(),
            node: NodeId::new("n1").unwrap(),
            incarnation: 7,
            seq,
            applied: DecisionId::new(1, 1),
            clock: VectorClock::default(),
            counts: OutcomeCounts { success: successes, failure: failures, ..OutcomeCounts::default() },
            longest_failure_streak: failures,
            local_open: false,
        }
    }

    fn urgency(r: &Report) -> Urgency {
        Urgency::of(r, true)
    }

    #[test]
    fn one_message_per_interval_whatever_the_breakers() {
        let mut b = ReportBatcher::new(BatchLimits::default());
        let mut sent = 0;
        // 1,000 breakers, each with a failure every millisecond, for 100 ms.
        for t in 0..100u64 {
            for i in 0..1_000u64 {
                let r = report(&format!("b{i}"), t + 1, 1, 0);
                let u = urgency(&r);
                b.handle_report(Millis(t), r, u);
            }
            if let Some(batch) = b.poll_transmit(Millis(t)) {
                sent += 1;
                b.handle_acked(batch.seq);
            }
        }
        // At 5 ms: at most 100 / 5 messages.
        assert!(sent <= 20, "{sent} messages in 100 ms");
        assert!(sent >= 19, "{sent} messages in 100 ms");
        assert_eq!(b.lost(), 0);
    }

    #[test]
    fn successes_wait_but_leave_with_a_failure() {
        let mut b = ReportBatcher::new(BatchLimits::default());
        let ok = report("a", 1, 0, 10);
        b.handle_report(Millis(0), ok.clone(), urgency(&ok));
        assert_eq!(b.poll_transmit(Millis(10)), None, "successes alone wait");
        assert_eq!(b.poll_timeout(), Some(Millis(100)));
        let bad = report("b", 1, 1, 0);
        b.handle_report(Millis(20), bad.clone(), urgency(&bad));
        let batch = b.poll_transmit(Millis(20)).unwrap();
        let names: Vec<&str> = batch.reports.iter().map(|r| r.breaker.as_str()).collect();
        assert_eq!(names, ["b", "a"], "the failure first, the successes with it");
    }

    #[test]
    fn lazy_reports_leave_after_the_lazy_period() {
        let mut b = ReportBatcher::new(BatchLimits::default());
        let mut sent = 0;
        for t in 0..1_000u64 {
            let ok = report("a", t + 1, 0, 5);
            b.handle_report(Millis(t), ok.clone(), urgency(&ok));
            if let Some(batch) = b.poll_transmit(Millis(t)) {
                sent += 1;
                b.handle_acked(batch.seq);
            }
        }
        assert!((9..=10).contains(&sent), "{sent} messages in a second of successes");
    }

    #[test]
    fn a_failed_message_is_sent_again_unchanged_and_nothing_overtakes_it() {
        let mut b = ReportBatcher::new(BatchLimits::default());
        let bad = report("a", 1, 1, 0);
        b.handle_report(Millis(0), bad.clone(), urgency(&bad));
        let first = b.poll_transmit(Millis(0)).unwrap();
        let later = report("a", 2, 1, 0);
        b.handle_report(Millis(1), later.clone(), urgency(&later));
        assert_eq!(b.poll_transmit(Millis(50)), None, "one in flight");
        b.handle_failed(first.seq);
        let again = b.poll_transmit(Millis(51)).unwrap();
        assert_eq!(again, first);
        b.handle_acked(first.seq);
        let next = b.poll_transmit(Millis(60)).unwrap();
        assert_eq!((next.seq, next.reports[0].seq), (first.seq + 1, 2));
    }

    #[test]
    fn a_message_holds_at_most_max_bytes_and_the_rest_waits() {
        let one = size_hint(&report("b0000", 1, 1, 0));
        let mut b = ReportBatcher::new(BatchLimits { max_bytes: one * 10, ..BatchLimits::default() });
        for i in 0..25u64 {
            let r = report(&format!("b{i:04}"), 1, 1, 0);
            b.handle_report(Millis(0), r.clone(), urgency(&r));
        }
        let mut sizes = Vec::new();
        let mut t = 0;
        while b.pending() > 0 {
            if let Some(batch) = b.poll_transmit(Millis(t)) {
                sizes.push(batch.reports.len());
                b.handle_acked(batch.seq);
            }
            t += 1;
        }
        assert_eq!(sizes, [10, 10, 5]);
    }

    #[test]
    fn bounds_hold_and_losses_are_counted() {
        let limits = BatchLimits { max_per_breaker: 2, max_breakers: 2, max_age_ms: 1_000, ..BatchLimits::default() };
        let mut b = ReportBatcher::new(limits);
        for (i, applied) in [1u64, 2, 3].into_iter().enumerate() {
            let mut r = report("a", i as u64 + 1, 1, 0);
            r.applied = DecisionId::new(1, applied);
            b.handle_report(Millis(0), r.clone(), urgency(&r));
        }
        let other = report("b", 1, 1, 0);
        b.handle_report(Millis(0), other.clone(), urgency(&other));
        let third = report("c", 1, 1, 0);
        b.handle_report(Millis(0), third.clone(), urgency(&third));
        assert_eq!((b.pending(), b.lost()), (3, 2));
        let name = |n: &str| BreakerName::new(n).unwrap();
        assert_eq!(b.take_lost(), BTreeMap::from([(name("a"), 1), (name("c"), 1)]), "by breaker");
        assert_eq!(b.poll_transmit(Millis(2_000)), None, "too old to matter");
        assert_eq!((b.pending(), b.lost()), (0, 5));
        assert_eq!(b.take_lost(), BTreeMap::from([(name("a"), 2), (name("b"), 1)]), "only what is new");
    }

    #[test]
    fn anything_but_closed_successes_is_urgent() {
        let ok = report("a", 1, 0, 3);
        assert_eq!(Urgency::of(&ok, true), Urgency::Lazy);
        assert_eq!(Urgency::of(&ok, false), Urgency::Urgent, "half-open, ramping or open");
        let mut slow = ok.clone();
        slow.counts.slow = 1;
        assert_eq!(Urgency::of(&slow, true), Urgency::Urgent);
        let mut overlay = ok;
        overlay.local_open = true;
        assert_eq!(Urgency::of(&overlay, true), Urgency::Urgent);
    }
}
