//! How `fusebox` shows decisions: the short and long human forms of a reason, states,
//! timestamps and ages, aligned tables, and the JSON rows of `status`, `history` and `watch`
//! (their field names are a stable interface, documented in the `cli` module). Pure
//! functions of decoded values, so they are unit-tested without a server.

use std::fmt::Write as _;

use async_nats::jetstream::kv::{Entry, Operation};
use breaker_actors::machine::{
    BreakerName, CommandKind, Decision, DecisionId, Evidence, FleetState, Reason, StateLabel, TripRule,
};
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};
use transport_nats::codec::{self, Limits};

/// The wire name of a command (`force_open`).
pub fn command_name(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::ForceOpen => "force_open",
        CommandKind::ForceClosed => "force_closed",
        CommandKind::Disable => "disable",
        CommandKind::MetricsOnly => "metrics_only",
        CommandKind::Reset => "reset",
        CommandKind::Reconfigure => "reconfigure",
    }
}

/// The wire name of a trip rule (`failure_rate`).
pub fn rule_name(rule: TripRule) -> &'static str {
    match rule {
        TripRule::FailureRate => "failure_rate",
        TripRule::SlowCallRate => "slow_call_rate",
        TripRule::ConsecutiveFailures => "consecutive_failures",
        TripRule::BurnRate => "burn_rate",
    }
}

/// The wire name of a reason's kind (`tripped`).
pub fn reason_kind(reason: &Reason) -> &'static str {
    match reason {
        Reason::Initial => "initial",
        Reason::TermStarted { .. } => "term_started",
        Reason::Tripped { .. } => "tripped",
        Reason::OpenElapsed => "open_elapsed",
        Reason::HealthCheckPassed { .. } => "health_check_passed",
        Reason::ProbesGranted => "probes_granted",
        Reason::ProbesSucceeded { .. } => "probes_succeeded",
        Reason::ProbeFailed { .. } => "probe_failed",
        Reason::HalfOpenTimedOut => "half_open_timed_out",
        Reason::RampAdvanced => "ramp_advanced",
        Reason::Reconfigured { .. } => "reconfigured",
        Reason::Manual { .. } => "manual",
        Reason::OverrideExpired { .. } => "override_expired",
    }
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The share of decisive calls the rule measured: slow calls for the slow-call rule,
/// failures for the others. `None` without decisive calls.
pub fn trip_rate(rule: TripRule, evidence: &Evidence) -> Option<f64> {
    let part = if rule == TripRule::SlowCallRate { evidence.slow } else { evidence.failed };
    // Display only: precision loss above 2^52 calls does not matter.
    #[allow(clippy::cast_precision_loss)]
    (evidence.decisive > 0).then(|| part as f64 / evidence.decisive as f64)
}

/// A reason in a few words, for tables: `tripped: failure_rate 10/10 from 1 node`,
/// `manual force_open by alice: INC-42`.
pub fn short_reason(reason: &Reason) -> String {
    match reason {
        Reason::Tripped { rule, evidence } => {
            let from = plural(evidence.nodes, "node", "nodes");
            match rule {
                TripRule::ConsecutiveFailures => {
                    format!("tripped: {} {} in a row from {from}", rule_name(*rule), evidence.streak)
                }
                TripRule::SlowCallRate => {
                    format!("tripped: {} {}/{} from {from}", rule_name(*rule), evidence.slow, evidence.decisive)
                }
                TripRule::FailureRate | TripRule::BurnRate => {
                    format!("tripped: {} {}/{} from {from}", rule_name(*rule), evidence.failed, evidence.decisive)
                }
            }
        }
        _ => common_reason(reason),
    }
}

/// A reason with everything it carries, for history and watch: a trip shows its evidence,
/// `tripped: failure_rate (decisive 10, failed 10, slow 0, rate 100.0%, nodes 1, streak 10)`
/// (the streak only when the decider measured one).
pub fn long_reason(reason: &Reason) -> String {
    match reason {
        Reason::Tripped { rule, evidence } => {
            let rate = trip_rate(*rule, evidence).map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
            // The decider tracks streaks only for the consecutive-failures rule: a 0 from a
            // breaker without it means "not measured", so it is left out.
            let streak = if evidence.streak > 0 { format!(", streak {}", evidence.streak) } else { String::new() };
            let top = contributors(evidence);
            format!(
                "tripped: {} (decisive {}, failed {}, slow {}, rate {rate}, nodes {}{streak}){top}",
                rule_name(*rule),
                evidence.decisive,
                evidence.failed,
                evidence.slow,
                evidence.nodes,
            )
        }
        _ => common_reason(reason),
    }
}

/// ` from py-1 (12 failed), n2 (3 failed, 1 slow)`: the nodes a trip names, or nothing.
fn contributors(evidence: &Evidence) -> String {
    let named: Vec<String> = evidence
        .top
        .iter()
        .map(|c| match (c.failed, c.slow) {
            (f, 0) => format!("{} ({f} failed)", c.node),
            (0, s) => format!("{} ({s} slow)", c.node),
            (f, s) => format!("{} ({f} failed, {s} slow)", c.node),
        })
        .collect();
    if named.is_empty() { String::new() } else { format!(" from {}", named.join(", ")) }
}

fn common_reason(reason: &Reason) -> String {
    match reason {
        Reason::Initial => "initial decision".to_owned(),
        Reason::TermStarted { previous } if *previous == DecisionId::NONE => "new decider".to_owned(),
        Reason::TermStarted { previous } => format!("new decider, restating {}", id(*previous)),
        Reason::Tripped { rule, .. } => format!("tripped: {}", rule_name(*rule)),
        Reason::OpenElapsed => "open period elapsed".to_owned(),
        Reason::HealthCheckPassed { successes } => format!("health check passed ({successes} in a row)"),
        Reason::ProbesGranted => "more probes granted".to_owned(),
        Reason::ProbesSucceeded { successes } => format!("probes succeeded ({successes})"),
        Reason::ProbeFailed { failures } => format!("probe failed ({})", plural(*failures, "failure", "failures")),
        Reason::HalfOpenTimedOut => "half-open round timed out".to_owned(),
        Reason::RampAdvanced => "ramp advanced".to_owned(),
        Reason::Reconfigured { from, to } => format!("config version {from} -> {to}"),
        Reason::Manual { command, actor, reason } => format!("manual {} by {actor}: {reason}", command_name(*command)),
        Reason::OverrideExpired { command, after_ms } => {
            format!("override expired: {} after {}, automatic again", command_name(*command), age(*after_ms))
        }
    }
}

/// `(term, seq)`, the decision id as `docs/wire-format.md` writes it.
pub fn id(id: DecisionId) -> String {
    format!("({}, {})", id.term.0, id.seq)
}

/// A decision's state as [`state_text`] writes it, with a time-boxed override's duration:
/// `forced-open (for 30m00s)`.
pub fn decision_state(decision: &Decision) -> String {
    let state = state_text(&decision.state);
    match decision.expires_after_ms {
        Some(ms) => format!("{state} (for {})", age(ms.get())),
        None => state,
    }
}

/// A state with the detail that matters to an operator: `open (60 s)`,
/// `half-open (budget 2)`, `ramping (25.0%)`; the label alone otherwise.
pub fn state_text(state: &FleetState) -> String {
    let label = state.label().as_str();
    match state {
        FleetState::Open { duration_ms } => format!("{label} ({})", age(*duration_ms)),
        FleetState::HalfOpen { budget, .. } => format!("{label} (budget {budget})"),
        FleetState::Ramping { admit_per_mille, .. } => {
            format!("{label} ({:.1}%)", f64::from(*admit_per_mille) / 10.0)
        }
        _ => label.to_owned(),
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-05-01T12:00:00.123Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds from `then` to `now`, 0 if `then` is later (clocks differ).
pub fn age_ms(then: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((now - then).whole_milliseconds()).unwrap_or(0)
}

/// A duration for people: `850ms`, `42s`, `3m05s`, `2h07m`, `4d03h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line += cell;
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Put => "put",
        Operation::Delete => "delete",
        Operation::Purge => "purge",
    }
}

/// A state bucket entry decoded: the decision, or why there is none (a delete or purge
/// marker, or a value the codec refuses).
pub fn decode(entry: &Entry) -> Result<Decision, String> {
    if entry.operation != Operation::Put {
        return Err(format!("key {}", operation_name(entry.operation)));
    }
    let breaker = BreakerName::new(&entry.key).map_err(|e| format!("key {:?}: {e}", entry.key))?;
    codec::decode_decision(&breaker, &entry.value, &Limits::default()).map_err(|e| format!("undecodable decision: {e}"))
}

/// What a trip was based on, in a JSON row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceRow {
    /// The rule that fired (`failure_rate`, ...).
    pub rule: &'static str,
    /// Decisive calls (success, failure, slow) in the window.
    pub decisive: u64,
    /// Failed calls in the window.
    pub failed: u64,
    /// Slow calls in the window.
    pub slow: u64,
    /// Nodes that contributed bad outcomes.
    pub nodes: u32,
    /// Longest failure streak of any node.
    pub streak: u64,
    /// What the rule measured, 0 to 1 (slow share for `slow_call_rate`, failure share
    /// otherwise); `null` without decisive calls.
    pub rate: Option<f64>,
    /// The nodes that contributed most bad outcomes, most first.
    pub top: Vec<ContributorRow>,
}

/// One node's part in a trip, in a JSON row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContributorRow {
    /// The node.
    pub node: String,
    /// Its failed calls in the window.
    pub failed: u64,
    /// Its slow calls in the window.
    pub slow: u64,
}

impl EvidenceRow {
    /// The evidence of a trip; `None` for any other reason.
    pub fn of(reason: &Reason) -> Option<Self> {
        let Reason::Tripped { rule, evidence } = reason else { return None };
        Some(Self {
            rule: rule_name(*rule),
            decisive: evidence.decisive,
            failed: evidence.failed,
            slow: evidence.slow,
            nodes: evidence.nodes,
            streak: evidence.streak,
            rate: trip_rate(*rule, evidence),
            top: evidence
                .top
                .iter()
                .map(|c| ContributorRow { node: c.node.to_string(), failed: c.failed, slow: c.slow })
                .collect(),
        })
    }
}

/// One decision (or marker) of the state bucket: a `history` or `watch` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    /// The breaker (the key).
    pub breaker: String,
    /// The KV revision (stream sequence of the state bucket).
    pub revision: u64,
    /// When the server stored it, RFC 3339 UTC.
    pub time: String,
    /// `put`, `delete` or `purge`.
    pub operation: &'static str,
    /// The fleet state (`closed`, `open`, `half_open`, `forced_open`, ...).
    pub state: Option<StateLabel>,
    /// `id.term`.
    pub term: Option<u64>,
    /// `id.seq`.
    pub seq: Option<u64>,
    /// The node that decided.
    pub decider: Option<String>,
    /// The reason's kind, as on the wire (`tripped`, `manual`, ...).
    pub reason_kind: Option<&'static str>,
    /// The reason in words, with the evidence of a trip.
    pub reason: Option<String>,
    /// What a trip was based on.
    pub evidence: Option<EvidenceRow>,
    /// For a time-boxed manual state: how long it lasts, in milliseconds.
    pub expires_after_ms: Option<u64>,
    /// The decision as the bucket holds it (`docs/wire-format.md`).
    pub decision: Option<Decision>,
    /// Why there is no decision: a marker or an undecodable value.
    pub error: Option<String>,
}

impl DecisionRow {
    /// The row of a state bucket entry.
    pub fn new(entry: &Entry) -> Self {
        let decoded = decode(entry);
        let decision = decoded.as_ref().ok();
        let evidence = decision.and_then(|d| EvidenceRow::of(&d.reason));
        Self {
            breaker: entry.key.clone(),
            revision: entry.revision,
            time: timestamp(entry.created),
            operation: operation_name(entry.operation),
            state: decision.map(|d| d.state.label()),
            term: decision.map(|d| d.id.term.0),
            seq: decision.map(|d| d.id.seq),
            decider: decision.map(|d| d.decider.to_string()),
            reason_kind: decision.map(|d| reason_kind(&d.reason)),
            reason: decision.map(|d| long_reason(&d.reason)),
            evidence,
            expires_after_ms: decision.and_then(|d| d.expires_after_ms).map(std::num::NonZeroU64::get),
            decision: decision.cloned(),
            error: decoded.err(),
        }
    }

    /// The row as one line of text: time, breaker, state, id, decider, reason.
    pub fn line(&self) -> String {
        match &self.decision {
            Some(d) => format!(
                "{}  {}  {}  {} by {}  {}",
                self.time,
                self.breaker,
                decision_state(d),
                id(d.id),
                d.decider,
                long_reason(&d.reason)
            ),
            None => format!("{}  {}  {}", self.time, self.breaker, self.error.as_deref().unwrap_or("?")),
        }
    }

    /// The cells of a `history` table row: `HISTORY_HEADERS`.
    pub fn cells(&self) -> Vec<String> {
        let Some(d) = &self.decision else {
            let dash = || "-".to_owned();
            let error = self.error.clone().unwrap_or_else(dash);
            return vec![self.revision.to_string(), self.time.clone(), dash(), dash(), dash(), dash(), error];
        };
        vec![
            self.revision.to_string(),
            self.time.clone(),
            d.id.term.0.to_string(),
            d.id.seq.to_string(),
            decision_state(d),
            d.decider.to_string(),
            long_reason(&d.reason),
        ]
    }
}

/// The columns of `history`.
pub const HISTORY_HEADERS: [&str; 7] = ["REV", "TIME", "TERM", "SEQ", "STATE", "DECIDER", "REASON"];

/// One breaker in `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRow {
    /// The breaker.
    pub breaker: String,
    /// The fleet state (`closed`, `open`, `half_open`, `forced_open`, ...); `null` before
    /// the first decision.
    pub state: Option<StateLabel>,
    /// `id.term` of the current decision.
    pub term: Option<u64>,
    /// `id.seq` of the current decision.
    pub seq: Option<u64>,
    /// The node that made it.
    pub decider: Option<String>,
    /// Its reason's kind (`tripped`, `manual`, ...).
    pub reason_kind: Option<&'static str>,
    /// Its reason in a few words.
    pub reason: Option<String>,
    /// The KV revision of the decision.
    pub revision: Option<u64>,
    /// When it was stored, RFC 3339 UTC.
    pub updated: Option<String>,
    /// Milliseconds since then, by this machine's clock.
    pub age_ms: Option<u64>,
    /// Whether the config bucket has a config for it.
    pub configured: bool,
    /// The decision as the bucket holds it.
    pub decision: Option<Decision>,
    /// Why a stored value could not be read.
    pub error: Option<String>,
    /// What `fusebox repair` would fix (see `cli::repair`).
    pub problem: Option<String>,
}

impl StatusRow {
    /// The row of `breaker`, from its state bucket entry if there is one.
    pub fn new(breaker: &str, entry: Option<&Entry>, configured: bool, now: OffsetDateTime) -> Self {
        let decoded = entry.map(decode);
        let decision = decoded.as_ref().and_then(|d| d.as_ref().ok());
        Self {
            breaker: breaker.to_owned(),
            state: decision.map(|d| d.state.label()),
            term: decision.map(|d| d.id.term.0),
            seq: decision.map(|d| d.id.seq),
            decider: decision.map(|d| d.decider.to_string()),
            reason_kind: decision.map(|d| reason_kind(&d.reason)),
            reason: decision.map(|d| short_reason(&d.reason)),
            revision: entry.map(|e| e.revision),
            updated: entry.map(|e| timestamp(e.created)),
            age_ms: entry.map(|e| age_ms(e.created, now)),
            configured,
            decision: decision.cloned(),
            error: decoded.and_then(Result::err),
            problem: None,
        }
    }

    /// The cells of a `status` table row: `STATUS_HEADERS`.
    pub fn cells(&self) -> Vec<String> {
        let dash = || "-".to_owned();
        let opt = |v: Option<u64>| v.map_or_else(dash, |v| v.to_string());
        let reason = match (&self.reason, &self.error) {
            (Some(reason), _) => reason.clone(),
            (None, Some(error)) => error.clone(),
            (None, None) => "no decision yet".to_owned(),
        };
        vec![
            self.breaker.clone(),
            self.decision.as_ref().map_or_else(dash, decision_state),
            opt(self.term),
            opt(self.seq),
            self.decider.clone().unwrap_or_else(dash),
            self.age_ms.map_or_else(dash, age),
            reason,
            self.problem.as_ref().map_or_else(dash, |p| format!("NEEDS REPAIR: {p}")),
        ]
    }
}

/// The columns of `status`.
pub const STATUS_HEADERS: [&str; 8] = ["BREAKER", "STATE", "TERM", "SEQ", "DECIDER", "AGE", "REASON", "PROBLEM"];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use breaker_actors::machine::{Contribution, NodeId, Term, VectorClock};
    use time::Duration;

    use super::*;

    fn evidence() -> Evidence {
        Evidence { decisive: 10, failed: 10, slow: 0, nodes: 1, streak: 10, top: Vec::new() }
    }

    fn decision(state: FleetState, reason: Reason) -> Decision {
        Decision {
            version: 1,
            breaker: BreakerName::new("payments").unwrap(),
            id: DecisionId::new(7, 3),
            phase: DecisionId::new(7, 3),
            state,
            backoff_level: 0,
            reason,
            decider: NodeId::new("n1").unwrap(),
            clock: VectorClock::new(Term(7)),
            config_version: 1,
            expires_after_ms: None,
        }
    }

    fn entry(d: &Decision, created: OffsetDateTime) -> Entry {
        Entry {
            bucket: "fusebox_state".into(),
            key: d.breaker.to_string(),
            value: codec::encode_decision(d).unwrap().into(),
            revision: 12,
            delta: 0,
            created,
            operation: Operation::Put,
            seen_current: true,
        }
    }

    #[test]
    fn reasons_read_as_documented() {
        let tripped = Reason::Tripped { rule: TripRule::FailureRate, evidence: evidence() };
        assert_eq!(short_reason(&tripped), "tripped: failure_rate 10/10 from 1 node");
        assert_eq!(
            long_reason(&tripped),
            "tripped: failure_rate (decisive 10, failed 10, slow 0, rate 100.0%, nodes 1, streak 10)"
        );
        let slow = Reason::Tripped {
            rule: TripRule::SlowCallRate,
            evidence: Evidence { decisive: 20, failed: 0, slow: 12, nodes: 3, streak: 0, top: Vec::new() },
        };
        assert_eq!(short_reason(&slow), "tripped: slow_call_rate 12/20 from 3 nodes");
        assert_eq!(long_reason(&slow), "tripped: slow_call_rate (decisive 20, failed 0, slow 12, rate 60.0%, nodes 3)");
        let named = Reason::Tripped {
            rule: TripRule::FailureRate,
            evidence: Evidence {
                top: vec![
                    Contribution { node: NodeId::new("py-1").unwrap(), failed: 12, slow: 0 },
                    Contribution { node: NodeId::new("n2").unwrap(), failed: 3, slow: 1 },
                ],
                ..evidence()
            },
        };
        assert_eq!(
            long_reason(&named),
            "tripped: failure_rate (decisive 10, failed 10, slow 0, rate 100.0%, nodes 1, streak 10) \
             from py-1 (12 failed), n2 (3 failed, 1 slow)"
        );
        let streak = Reason::Tripped { rule: TripRule::ConsecutiveFailures, evidence: evidence() };
        assert_eq!(short_reason(&streak), "tripped: consecutive_failures 10 in a row from 1 node");
        let manual = Reason::Manual { command: CommandKind::ForceOpen, actor: "alice".into(), reason: "INC-42".into() };
        assert_eq!(short_reason(&manual), "manual force_open by alice: INC-42");
        assert_eq!(long_reason(&manual), short_reason(&manual));
        assert_eq!(
            short_reason(&Reason::TermStarted { previous: DecisionId::new(4, 2) }),
            "new decider, restating (4, 2)"
        );
        assert_eq!(short_reason(&Reason::ProbeFailed { failures: 1 }), "probe failed (1 failure)");
    }

    #[test]
    fn states_times_and_ages() {
        assert_eq!(state_text(&FleetState::Open { duration_ms: 60_000 }), "open (1m00s)");
        assert_eq!(state_text(&FleetState::ForcedOpen), "forced-open");
        assert_eq!(state_text(&FleetState::Ramping { stage: 0, admit_per_mille: 250 }), "ramping (25.0%)");
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_777_636_800_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2026-05-01T12:00:00.123Z");
        assert_eq!(age_ms(t, t + Duration::milliseconds(1500)), 1500);
        assert_eq!(age_ms(t + Duration::seconds(1), t), 0);
        let ages: Vec<String> = [850, 42_000, 185_000, 7_620_000, 356_400_000].into_iter().map(age).collect();
        assert_eq!(ages, ["850ms", "42s", "3m05s", "2h07m", "4d03h"]);
    }

    #[test]
    fn tables_align_their_columns() {
        let rows =
            vec![vec!["payments".into(), "open".into(), "x".into()], vec!["b".into(), "closed".into(), String::new()]];
        assert_eq!(
            table(&["NAME", "STATE", "REASON"], &rows),
            "NAME      STATE   REASON\npayments  open    x\nb         closed\n"
        );
    }

    #[test]
    fn rows_carry_the_decision_and_its_evidence() {
        let t = OffsetDateTime::from_unix_timestamp(1_777_636_800).unwrap();
        let d = decision(
            FleetState::Open { duration_ms: 60_000 },
            Reason::Tripped { rule: TripRule::FailureRate, evidence: evidence() },
        );
        let status = StatusRow::new("payments", Some(&entry(&d, t)), true, t + Duration::seconds(3));
        assert_eq!(
            status.cells(),
            ["payments", "open (1m00s)", "7", "3", "n1", "3s", "tripped: failure_rate 10/10 from 1 node", "-"]
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "open");
        assert_eq!(
            (json["term"].as_u64(), json["seq"].as_u64(), json["age_ms"].as_u64()),
            (Some(7), Some(3), Some(3000))
        );
        assert_eq!(json["decision"]["reason"]["evidence"]["failed"], 10);

        let unconfigured = StatusRow::new("refunds", None, true, t);
        assert_eq!(unconfigured.cells()[6], "no decision yet");
        assert_eq!(serde_json::to_value(&unconfigured).unwrap()["state"], serde_json::Value::Null);

        let row = DecisionRow::new(&entry(&d, t));
        assert_eq!(row.evidence.as_ref().map(|e| (e.rule, e.rate)), Some(("failure_rate", Some(1.0))));
        assert_eq!(
            row.line(),
            "2026-05-01T12:00:00.000Z  payments  open (1m00s)  (7, 3) by n1  \
             tripped: failure_rate (decisive 10, failed 10, slow 0, rate 100.0%, nodes 1, streak 10)"
        );
        let mut garbage = entry(&d, t);
        garbage.value = "{".into();
        assert!(DecisionRow::new(&garbage).error.is_some_and(|e| e.starts_with("undecodable")));
    }
}
