//! The decider role: held by the node whose lease term covers the breaker. It attributes
//! fleet reports to phases by causality, runs the fleet cycle, and turns verdicts into
//! decisions stamped with `(term, seq)` and its vector clock. At most one decision write is
//! in flight; newer ones wait in a bounded queue. Decisions are whole states, so a waiting
//! decision is replaced by a newer one of the same phase; a decision that starts a phase
//! always waits its turn, so the written history never skips a transition (no closed ->
//! half-open without the open between).

use super::config::{HealthChecks, ValidConfig};
use super::cycle::{Arrival, Judge, Phase};
use super::domain::{Command, CommandKind, Decision, FleetState, Reason, Report, WIRE_VERSION};
use super::names::{BreakerName, NodeId};
use super::units::{DecisionId, Millis, Term};
use super::vclock::VectorClock;
use super::window::NodeTable;

/// How often a failed decision write is tried before the decider steps down.
pub const MAX_WRITE_ATTEMPTS: u32 = 5;
/// First retry delay of a failed write; it doubles per attempt.
pub(super) const WRITE_RETRY_BASE_MS: u64 = 50;
/// How often a decider rebases on a newer state within one term before stepping down.
pub const MAX_REBASES: u32 = 8;
/// Decisions waiting behind the one in flight before the decider steps down.
pub const MAX_QUEUED: usize = 8;

/// Why a decider stopped deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDownReason {
    /// The lease was lost or released.
    LeaseLost,
    /// The store showed a newer term (a decision, a lost CAS): another decider exists.
    Deposed {
        /// The newer term seen.
        newer: Term,
    },
    /// Decision writes kept failing.
    WritesFailing,
    /// Too many rebases in one term, or more decisions waiting than writes can land: the
    /// state keeps moving faster than this decider can record it.
    Unstable,
    /// Graceful shutdown.
    Shutdown,
}

impl StepDownReason {
    /// Every reason's label, in declaration order (the `reason` values of the
    /// `fusebox_step_downs_total` metric).
    pub const LABELS: [&'static str; 5] = ["lease_lost", "deposed", "writes_failing", "unstable", "shutdown"];

    /// Its label (snake case), one of [`StepDownReason::LABELS`].
    pub fn as_str(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Its index in [`StepDownReason::LABELS`].
    pub fn index(self) -> usize {
        match self {
            Self::LeaseLost => 0,
            Self::Deposed { .. } => 1,
            Self::WritesFailing => 2,
            Self::Unstable => 3,
            Self::Shutdown => 4,
        }
    }
}

#[derive(Debug, Clone)]
struct HealthState {
    policy: HealthChecks,
    next_at: Millis,
    interval_ms: u64,
    in_flight: Option<u64>,
    successes: u32,
    attempts: u64,
}

#[derive(Debug, Clone)]
struct PendingWrite {
    decision: Decision,
    attempts: u32,
    /// `Some` while waiting to retry after a failure.
    retry_at: Option<Millis>,
    /// A decision that had landed, written again because the bucket went back.
    restore: bool,
}

/// What the decider wants the machine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
// A decision is made a few times a minute at most; boxing it would allocate for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum DeciderOut {
    /// A decision was made (announced once, when made).
    Decided(DecisionId, super::domain::StateLabel),
    /// Write this decision (CAS-fenced by the transport).
    Write(Decision),
    /// Run a health check.
    HealthCheck(u64),
    /// A metrics-only breaker would have tripped.
    WouldTrip(super::domain::TripRule),
    /// Stop deciding.
    StepDown(StepDownReason),
}

/// Where a report went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportFate {
    /// Counted towards the current phase.
    Counted,
    /// From before the current phase: dropped.
    Stale,
    /// Already seen.
    Duplicate,
    /// Ignored under a manual state.
    Manual,
    /// The lease is suspended (its renewal is overdue): not judged.
    NotDeciding,
}

/// The decider's state for one breaker and one term.
#[derive(Debug, Clone)]
pub(super) struct Decider {
    breaker: BreakerName,
    me: NodeId,
    term: Term,
    valid_until: Millis,
    seq: u64,
    phase: DecisionId,
    judge: Judge,
    manual: Option<FleetState>,
    /// A time-boxed manual state: its duration and when it ends on this node's clock.
    manual_until: Option<ManualUntil>,
    clock: VectorClock,
    pending: Option<PendingWrite>,
    queued: std::collections::VecDeque<Decision>,
    rebases: u32,
    /// The decision this tenure last restated (`NONE` for the initial one).
    base: DecisionId,
    /// Whether any write of this tenure has landed: until one has, an older term's decision
    /// newer than `base` means the bucket moved under the restatement.
    landed: bool,
    /// The newest operator command this tenure carried out whose decision has not landed,
    /// with that decision's id: a rebase re-applies it (the control stream gave it once).
    unlanded_command: Option<(DecisionId, Command)>,
    seen: NodeTable<Seen>,
    health: Option<HealthState>,
    /// The config version its decisions record.
    config_version: u64,
}

fn health_state(config: &ValidConfig, now: Millis) -> Option<HealthState> {
    config.health_check.clone().map(|policy| HealthState {
        next_at: now,
        interval_ms: policy.initial_interval_ms,
        policy,
        in_flight: None,
        successes: 0,
        attempts: 0,
    })
}

/// When a time-boxed manual state ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ManualUntil {
    /// Its duration, as the decisions record it.
    duration_ms: u64,
    /// When this decider returns to automatic control.
    at: Millis,
}

/// The incarnation of every report a foreign (JSON) publisher's message becomes.
const FOREIGN_INCARNATION: u64 = 0;

/// The newest report seen from one node id, per kind of publisher.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// A Rust node's `(incarnation, seq)`.
    node: (u64, u64),
    /// A foreign publisher's stream sequence.
    foreign: u64,
}

impl Decider {
    /// Takes the lease at `term`, valid until `valid_until`, restating `base` (the newest
    /// decision this node knows) under the new term. Returns the decider and the restating
    /// decision to write.
    pub(super) fn take_over(
        breaker: BreakerName,
        me: NodeId,
        config: &ValidConfig,
        now: Millis,
        term: Term,
        valid_until: Millis,
        base: Option<&Decision>,
    ) -> (Self, Vec<DeciderOut>) {
        let mut decider = Self {
            judge: Judge::new(config.fleet.clone(), config.max_nodes, config.seed ^ term.0, None),
            breaker,
            clock: VectorClock::new(term),
            me,
            term,
            valid_until,
            seq: 0,
            phase: DecisionId::NONE,
            manual: None,
            manual_until: None,
            pending: None,
            queued: std::collections::VecDeque::new(),
            rebases: 0,
            base: DecisionId::NONE,
            landed: false,
            unlanded_command: None,
            seen: NodeTable::new(config.max_nodes),
            health: health_state(config, now),
            config_version: config.version,
        };
        let out = decider.restate(now, base);
        (decider, out)
    }

    fn restate(&mut self, now: Millis, base: Option<&Decision>) -> Vec<DeciderOut> {
        let reason = match base {
            Some(d) => {
                if d.state.is_manual() {
                    self.manual = Some(d.state.clone());
                    // Restarted in full: how much of it passed on the old decider's clock
                    // is unknowable here, and an override must not end early.
                    self.manual_until =
                        d.expires_after_ms.map(|ms| ManualUntil { duration_ms: ms.get(), at: now.plus(ms.get()) });
                    self.judge.reset();
                } else {
                    self.manual = None;
                    self.manual_until = None;
                    self.judge.restore(now, &d.state, d.backoff_level);
                }
                self.phase = d.phase;
                self.base = d.id;
                Reason::TermStarted { previous: d.id }
            }
            None => Reason::Initial,
        };
        self.arm_health(now);
        let new_phase = base.is_none();
        self.decide(reason, new_phase)
    }

    /// The lease term.
    pub(super) fn term(&self) -> Term {
        self.term
    }

    /// Whether the lease is still good on this node's clock.
    pub(super) fn is_valid(&self, now: Millis) -> bool {
        now < self.valid_until
    }

    /// A renewal sent at `sent_at` succeeded.
    pub(super) fn renewed(&mut self, valid_until: Millis) {
        self.valid_until = self.valid_until.max(valid_until);
    }

    /// The fleet cycle (for inspection).
    pub(super) fn judge(&self) -> &Judge {
        &self.judge
    }

    /// The phase reports are attributed against: the newest decision that began one.
    pub(super) fn phase(&self) -> DecisionId {
        self.phase
    }

    /// The id of the newest decision made (written or not).
    pub(super) fn last_decided(&self) -> DecisionId {
        DecisionId { term: self.term, seq: self.seq }
    }

    fn decide(&mut self, reason: Reason, new_phase: bool) -> Vec<DeciderOut> {
        self.seq += 1;
        let id = DecisionId { term: self.term, seq: self.seq };
        if new_phase {
            self.phase = id;
        }
        self.clock.tick(&self.me);
        let decision = Decision {
            version: WIRE_VERSION,
            breaker: self.breaker.clone(),
            id,
            phase: self.phase,
            state: self.manual.clone().unwrap_or_else(|| self.judge.fleet_state()),
            backoff_level: self.judge.backoff_level(),
            reason,
            decider: self.me.clone(),
            clock: self.clock.clone(),
            config_version: self.config_version,
            expires_after_ms: self
                .manual_until
                .filter(|_| self.manual.is_some())
                .and_then(|m| std::num::NonZeroU64::new(m.duration_ms)),
        };
        assert!(decision.phase <= decision.id, "a phase starts at or before its decisions");
        let mut out = vec![DeciderOut::Decided(id, decision.state.label())];
        if self.pending.is_none() {
            self.pending =
                Some(PendingWrite { decision: decision.clone(), attempts: 1, retry_at: None, restore: false });
            out.push(DeciderOut::Write(decision));
            return out;
        }
        let queued = self.queued.len();
        match self.queued.back_mut() {
            Some(last) if last.phase == decision.phase => *last = decision,
            _ if queued >= MAX_QUEUED => out.push(DeciderOut::StepDown(StepDownReason::Unstable)),
            _ => self.queued.push_back(decision),
        }
        out
    }

    fn after_verdict(&mut self, now: Millis, reason: Reason) -> Vec<DeciderOut> {
        let new_phase = reason.starts_phase();
        self.arm_health(now);
        self.decide(reason, new_phase)
    }

    fn arm_health(&mut self, now: Millis) {
        if let Some(h) = &mut self.health {
            h.in_flight = None;
            h.successes = 0;
            h.interval_ms = h.policy.initial_interval_ms;
            h.next_at = now.plus(h.interval_ms);
        }
    }

    /// Judges a report. Its `applied` must not be ahead of [`Decider::last_decided`] (the
    /// machine refuses such reports before they get here): a report never deposes.
    pub(super) fn ingest(&mut self, now: Millis, report: &Report, arrival: Arrival) -> (ReportFate, Vec<DeciderOut>) {
        debug_assert!(report.applied <= self.last_decided(), "reports from the future are refused before judging");
        if !self.is_valid(now) {
            // Suspended (renewal overdue): no verdicts, and no evidence half-taken either.
            return (ReportFate::NotDeciding, Vec::new());
        }
        let seen = self.seen.entry(now, &report.node, Seen::default);
        if report.incarnation == FOREIGN_INCARNATION {
            // A foreign (JSON) publisher's messages are ordered by stream sequence, a Rust
            // node's reports by (incarnation, seq): one node id's two kinds are deduplicated
            // apart, so neither can make the other's reports look like redeliveries.
            if report.seq <= seen.foreign {
                return (ReportFate::Duplicate, Vec::new());
            }
            seen.foreign = report.seq;
        } else {
            let last = seen.node;
            if report.incarnation < last.0 || (report.incarnation == last.0 && report.seq <= last.1) {
                return (ReportFate::Duplicate, Vec::new());
            }
            seen.node = (report.incarnation, report.seq);
        }
        if report.clock.term() == self.term {
            self.clock.merge(&report.clock);
        }
        if report.applied < self.phase {
            return (ReportFate::Stale, Vec::new());
        }
        match &self.manual {
            None => {}
            Some(FleetState::MetricsOnly) => {
                let rule = self.judge.shadow(now, &report.node, &report.counts, report.longest_failure_streak);
                return (ReportFate::Counted, rule.map(DeciderOut::WouldTrip).into_iter().collect());
            }
            Some(_) => return (ReportFate::Manual, Vec::new()),
        }
        let out = match self.judge.ingest(now, &report.node, &report.counts, report.longest_failure_streak, arrival) {
            Some(verdict) => self.after_verdict(now, verdict),
            None => Vec::new(),
        };
        (ReportFate::Counted, out)
    }

    /// Moves on by time: open periods, round timeouts, ramps, health checks, write retries.
    pub(super) fn tick(&mut self, now: Millis) -> Vec<DeciderOut> {
        let mut out = Vec::new();
        let valid = self.is_valid(now);
        if let Some(p) = &mut self.pending {
            // Not while the lease has run out on this node's clock: the CAS is the fence, and
            // a bucket rolled back to an older revision would let a stale retry through.
            if valid && p.retry_at.is_some_and(|at| now >= at) {
                p.retry_at = None;
                out.push(DeciderOut::Write(p.decision.clone()));
            }
        }
        if !valid {
            return out;
        }
        if let Some(until) = self.manual_until.filter(|u| now >= u.at) {
            out.extend(self.override_expired(now, until));
            return out;
        }
        if self.manual.is_some() {
            return out;
        }
        if let Some(verdict) = self.judge.tick(now) {
            out.extend(self.after_verdict(now, verdict));
        }
        if let (Some(h), Phase::Open { .. }) = (&mut self.health, self.judge.phase()) {
            if h.in_flight.is_none() && now >= h.next_at {
                h.attempts += 1;
                h.in_flight = Some(h.attempts);
                out.push(DeciderOut::HealthCheck(h.attempts));
            }
        }
        out
    }

    /// The result of health check `attempt`.
    pub(super) fn health_result(&mut self, now: Millis, attempt: u64, healthy: bool) -> Vec<DeciderOut> {
        let Some(h) = &mut self.health else {
            return Vec::new();
        };
        if h.in_flight != Some(attempt) {
            return Vec::new();
        }
        h.in_flight = None;
        if healthy {
            h.successes += 1;
            h.interval_ms = h.policy.initial_interval_ms;
        } else {
            h.successes = 0;
            h.interval_ms = h.interval_ms.saturating_mul(2).min(h.policy.max_interval_ms);
        }
        h.next_at = now.plus(h.interval_ms);
        let (successes, required, closes) = (h.successes, h.policy.successes_required, h.policy.closes_directly);
        if successes < required || !self.is_valid(now) || self.manual.is_some() {
            return Vec::new();
        }
        match self.judge.health_passed(now, closes, successes) {
            Some(verdict) => self.after_verdict(now, verdict),
            None => Vec::new(),
        }
    }

    /// The earliest time `tick` may have work.
    pub(super) fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let retry = self.pending.as_ref().and_then(|p| p.retry_at);
        if !self.is_valid(now) {
            return retry;
        }
        let health = match (&self.health, self.judge.phase()) {
            (Some(h), Phase::Open { .. }) if h.in_flight.is_none() => Some(h.next_at),
            _ => None,
        };
        let judge = if self.manual.is_some() { None } else { self.judge.next_deadline() };
        let manual = self.manual_until.map(|u| u.at);
        [retry, health, judge, manual, Some(self.valid_until)].into_iter().flatten().min()
    }

    /// Runs on `config` from now on: the fleet state and backoff level stay, the windows
    /// and health checks start afresh under the new rules, and a decision in the same state
    /// records the switch ([`Reason::Reconfigured`]). Nothing is decided if the version is
    /// the one already in use.
    pub(super) fn reconfigure(&mut self, now: Millis, config: &ValidConfig) -> Vec<DeciderOut> {
        let from = self.config_version;
        if from == config.version {
            return Vec::new();
        }
        let state = self.judge.fleet_state();
        let backoff = self.judge.backoff_level();
        self.judge = Judge::new(config.fleet.clone(), config.max_nodes, config.seed ^ self.term.0, None);
        if self.manual.is_none() {
            self.judge.restore(now, &state, backoff);
        }
        self.health = health_state(config, now);
        self.config_version = config.version;
        self.arm_health(now);
        self.decide(Reason::Reconfigured { from, to: config.version }, false)
    }

    /// An operator's command (already checked to be for this breaker).
    pub(super) fn command(&mut self, now: Millis, command: &Command) -> Vec<DeciderOut> {
        if !self.is_valid(now) {
            return Vec::new();
        }
        self.carry_out(now, command)
    }

    fn carry_out(&mut self, now: Millis, command: &Command) -> Vec<DeciderOut> {
        self.judge.reset();
        self.manual = command.kind.target();
        self.manual_until = command
            .duration_ms
            .filter(|_| self.manual.is_some())
            .map(|duration_ms| ManualUntil { duration_ms, at: now.plus(duration_ms) });
        self.arm_health(now);
        let reason =
            Reason::Manual { command: command.kind, actor: command.actor.clone(), reason: command.reason.clone() };
        let out = self.decide(reason, true);
        self.unlanded_command = Some((self.last_decided(), command.clone()));
        out
    }

    /// A time-boxed manual state ran out: back to automatic control as a reset would go
    /// (closed, fresh windows, a new phase).
    fn override_expired(&mut self, now: Millis, until: ManualUntil) -> Vec<DeciderOut> {
        let command = self.manual.as_ref().and_then(CommandKind::setting);
        self.manual_until = None;
        self.manual = None;
        self.judge.reset();
        self.arm_health(now);
        let Some(command) = command else {
            return Vec::new();
        };
        self.decide(Reason::OverrideExpired { command, after_ms: until.duration_ms }, true)
    }

    /// What this decider holds at `now`, for operators (`fusebox describe`).
    pub(super) fn view(&self, now: Millis) -> super::DeciderView {
        let (calls, failures, slow) = self.judge.window_totals(now);
        let narrow = |wide: u128| u64::try_from(wide).unwrap_or(u64::MAX);
        super::DeciderView {
            term: self.term,
            last_decided: self.last_decided(),
            phase: self.phase,
            state: self.manual.clone().unwrap_or_else(|| self.judge.fleet_state()),
            backoff_level: self.judge.backoff_level(),
            window: super::WindowCounts { calls: narrow(calls), failures: narrow(failures), slow: narrow(slow) },
            contributions: self.judge.contributions(),
            override_ends_in_ms: self
                .manual_until
                .filter(|_| self.manual.is_some())
                .map(|u| u.at.0.saturating_sub(now.0)),
        }
    }

    /// The decision being written, if its id is `id`.
    pub(super) fn pending_decision(&self, id: DecisionId) -> Option<&Decision> {
        self.pending.as_ref().map(|p| &p.decision).filter(|d| d.id == id)
    }

    /// The transport confirmed decision `id`.
    pub(super) fn written(&mut self, id: DecisionId) -> Vec<DeciderOut> {
        if self.pending.as_ref().is_none_or(|p| p.decision.id != id) {
            return Vec::new();
        }
        self.pending = None;
        self.landed = true;
        if self.unlanded_command.as_ref().is_some_and(|(decided, _)| *decided <= id) {
            self.unlanded_command = None;
        }
        match self.queued.pop_front() {
            Some(next) => {
                self.pending =
                    Some(PendingWrite { decision: next.clone(), attempts: 1, retry_at: None, restore: false });
                vec![DeciderOut::Write(next)]
            }
            None => Vec::new(),
        }
    }

    /// The write of `id` failed for a transport reason (not a CAS conflict).
    pub(super) fn write_failed(&mut self, now: Millis, id: DecisionId) -> Vec<DeciderOut> {
        let Some(p) = &mut self.pending else {
            return Vec::new();
        };
        if p.decision.id != id {
            return Vec::new();
        }
        if p.attempts >= MAX_WRITE_ATTEMPTS {
            return vec![DeciderOut::StepDown(StepDownReason::WritesFailing)];
        }
        let delay = WRITE_RETRY_BASE_MS.saturating_mul(1 << p.attempts.min(16));
        p.attempts += 1;
        p.retry_at = Some(now.plus(delay));
        Vec::new()
    }

    /// This node observed `decision` of an older term. Before any write of this tenure has
    /// landed, one newer than the restated base means the bucket moved after this decider
    /// read it (its read was stale, or a deposed decider's write landed late): a retry of
    /// the pending restatement could now pass the CAS and roll the bucket back, so rebase
    /// on `decision` as if the write had lost its CAS to it. Once a write has landed, an
    /// older term's decision is only a late delivery of what came before it.
    pub(super) fn older_term_observed(&mut self, now: Millis, decision: &Decision) -> Vec<DeciderOut> {
        if self.landed || decision.id.term >= self.term || decision.id <= self.base {
            return Vec::new();
        }
        let Some(pending) = self.pending.as_ref().map(|p| p.decision.id) else {
            return Vec::new();
        };
        self.write_rejected(now, pending, Some(decision))
    }

    /// The bucket showed a decision older than `newest`, this tenure's newest landed one:
    /// it went back (acknowledged writes lost, an older backup restored; or a read that
    /// crossed a write, which costs one harmless write of the same value). Writes `newest`
    /// again so that nodes bootstrapping from the bucket learn what the fleet applied,
    /// unless a write is in flight (its CAS meets the rollback and rebases).
    pub(super) fn bucket_went_back(&mut self, newest: &Decision) -> Vec<DeciderOut> {
        if self.pending.is_some() || !self.landed || newest.id != self.last_decided() {
            return Vec::new();
        }
        self.pending = Some(PendingWrite { decision: newest.clone(), attempts: 1, retry_at: None, restore: true });
        vec![DeciderOut::Write(newest.clone())]
    }

    /// The CAS write of `id` lost: `current` is what the bucket holds now.
    pub(super) fn write_rejected(
        &mut self,
        now: Millis,
        id: DecisionId,
        current: Option<&Decision>,
    ) -> Vec<DeciderOut> {
        if self.pending.as_ref().is_none_or(|p| p.decision.id != id) {
            return Vec::new();
        }
        if let Some(current) = current {
            if current.id.term > self.term {
                return vec![DeciderOut::StepDown(StepDownReason::Deposed { newer: current.id.term })];
            }
            let restore = self.pending.as_ref().is_some_and(|p| p.restore);
            if current.id == id && !restore {
                // The write landed; only its acknowledgement was lost.
                return self.written(id);
            }
        }
        self.rebases += 1;
        if self.rebases > MAX_REBASES {
            return vec![DeciderOut::StepDown(StepDownReason::Unstable)];
        }
        if let Some(p) = self.pending.as_ref().filter(|p| p.restore) {
            // A restoring write met the revision the bucket went back to: the transport
            // has read it; write the same decision again.
            return vec![DeciderOut::Write(p.decision.clone())];
        }
        if let (Some(current), Some(p)) = (current, &self.pending) {
            if current.id.term == self.term && current.id > self.last_decided() {
                // This term holds decisions this tenure never made (an earlier tenure of the
                // same term on this node): writing would roll the bucket back.
                return vec![DeciderOut::StepDown(StepDownReason::Unstable)];
            }
            if current.id.term == self.term {
                // This term's own earlier decision: the write raced a stale revision.
                // The transport has read the current one; write the same decision again.
                return vec![DeciderOut::Write(p.decision.clone())];
            }
        }
        let Some(lost) = self.pending.take() else {
            return Vec::new();
        };
        self.queued.clear();
        let mut out = match current {
            // An older term's decision landed after this decider read the bucket: take
            // its state as the truth and restate it under this term.
            Some(current) => self.restate(now, Some(current)),
            // The key is gone (purged): write the same state again.
            None => self.decide(lost.decision.reason, false),
        };
        // An operator's command among the decisions dropped is carried out again over the
        // new base: it was taken once from the control stream and would be lost.
        if let Some((_, command)) = self.unlanded_command.take() {
            out.extend(self.carry_out(now, &command));
        }
        out
    }
}
