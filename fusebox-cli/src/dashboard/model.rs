//! The dashboard's view model: one [`Row`] per breaker, folded from the state bucket's
//! changes ([`Change`]) in revision order, and the JSON the browser receives. Pure: it
//! knows no NATS, no HTTP and no clock (times are the server's timestamps of the entries),
//! so every rule here is unit-tested with plain values.
//!
//! Folding rather than mapping each entry on its own is what lets a row keep what a single
//! decision does not carry: when the breaker entered its state (a restatement under a new
//! term is not a transition) and who set a manual state (a new decider's restatement keeps
//! the state but names no actor).

use std::collections::BTreeMap;

use async_nats::jetstream::kv::{Entry, Operation};
use breaker_actors::machine::{CommandKind, Decision, FleetState, Reason, StateLabel};
use serde::Serialize;

use crate::render::{self, EvidenceRow};

/// At most this many breakers are shown; changes to others are counted, not kept, so a
/// bucket full of junk keys cannot grow the dashboard without bound.
pub const MAX_BREAKERS: usize = 10_000;

/// One change of the state bucket, decoded: what the model folds.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The key: the breaker's name.
    pub key: String,
    /// The KV revision (the bucket's order).
    pub revision: u64,
    /// When the server stored it, milliseconds since the Unix epoch.
    pub stored_ms: i64,
    /// `false` for a delete or purge marker: the breaker is gone.
    pub put: bool,
    /// The decision, or why the value does not decode.
    pub decision: Result<Decision, String>,
}

impl Change {
    /// The change a watched entry makes.
    pub fn of(entry: &Entry) -> Self {
        Self {
            key: entry.key.clone(),
            revision: entry.revision,
            stored_ms: unix_ms(entry.created),
            put: entry.operation == Operation::Put,
            decision: render::decode(entry),
        }
    }
}

/// Milliseconds since the Unix epoch, saturating.
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The probes of the current half-open round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbesView {
    /// Probes for the whole round, fleet-wide.
    pub budget: u32,
    /// Who may probe, and how many.
    pub grants: Vec<(String, u32)>,
}

/// A manual state an operator set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideView {
    /// The command (`force_open`, ...).
    pub command: &'static str,
    /// Who: `None` when the dashboard only saw a restatement of it.
    pub actor: Option<String>,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
    /// When it ends (ms since the Unix epoch, from the server's timestamp of the decision
    /// that last (re)started it); `None`: until reset.
    pub expires_ms: Option<i64>,
}

/// One breaker as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The breaker.
    pub breaker: String,
    /// The revision of its latest entry.
    pub revision: u64,
    /// When the server stored that entry (ms since the Unix epoch).
    pub stored_ms: i64,
    /// The fleet state's label (`open`, `half_open`, ...); `None` if the value is unreadable.
    pub state: Option<StateLabel>,
    /// The state with its detail (`open (1m00s)`, `half-open (budget 2)`).
    pub state_text: Option<String>,
    /// When the breaker entered this state, as far as the dashboard knows: the stored time of
    /// the first decision it saw in the state (a restatement keeps it). For a breaker whose
    /// latest entry, when the dashboard started, was a restatement, that restatement's time.
    pub since_ms: i64,
    /// The decision's term.
    pub term: Option<u64>,
    /// Its sequence number within the term.
    pub seq: Option<u64>,
    /// The decider: the node holding the breaker's lease shard in that term.
    pub decider: Option<String>,
    /// The reason's kind (`tripped`, `manual`, ...).
    pub reason_kind: Option<&'static str>,
    /// The reason with everything it carries (`render::long_reason`).
    pub reason: Option<String>,
    /// A trip's evidence.
    pub evidence: Option<EvidenceRow>,
    /// The half-open round's probes.
    pub probes: Option<ProbesView>,
    /// A manual state's actor, reason and expiry.
    pub manual: Option<OverrideView>,
    /// The config version the decider ran on.
    pub config_version: Option<u64>,
    /// Why the value could not be read.
    pub error: Option<String>,
}

/// What a fold did, for the browsers.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// This row is new or changed.
    Row(Box<Row>),
    /// The breaker's key was deleted or purged.
    Removed(String),
}

/// Every breaker the dashboard shows.
#[derive(Debug, Clone)]
pub struct Model {
    rows: BTreeMap<String, Row>,
    max: usize,
    refused: u64,
}

/// The page's full state, as one JSON object.
#[derive(Debug, Serialize)]
pub struct Snapshot<'a> {
    /// Every row, by name.
    pub rows: Vec<&'a Row>,
    /// Changes to breakers beyond [`MAX_BREAKERS`] that were not kept.
    pub refused: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self::with_capacity(MAX_BREAKERS)
    }
}

impl Model {
    /// A model showing at most `max` breakers.
    pub fn with_capacity(max: usize) -> Self {
        Self { rows: BTreeMap::new(), max, refused: 0 }
    }

    /// The row of `breaker`.
    pub fn row(&self, breaker: &str) -> Option<&Row> {
        self.rows.get(breaker)
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row, for the page.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { rows: self.rows.values().collect(), refused: self.refused }
    }

    /// Folds `change` in. `None` if it changes nothing: a revision the row already has
    /// (a watch that started again delivers the latest values once more), a marker for an
    /// unknown breaker, or a new breaker beyond the bound (counted in `refused`).
    pub fn apply(&mut self, change: Change) -> Option<Update> {
        let previous = self.rows.get(&change.key);
        if previous.is_some_and(|row| row.revision >= change.revision) {
            return None;
        }
        if !change.put {
            return self.rows.remove(&change.key).map(|_| Update::Removed(change.key));
        }
        if previous.is_none() && self.rows.len() >= self.max {
            self.refused = self.refused.saturating_add(1);
            return None;
        }
        let row = fold(previous, change);
        self.rows.insert(row.breaker.clone(), row.clone());
        Some(Update::Row(Box::new(row)))
    }
}

/// The row after `change`, given the row before it.
fn fold(previous: Option<&Row>, change: Change) -> Row {
    let Change { key, revision, stored_ms, decision, .. } = change;
    let decision = match decision {
        Ok(decision) => decision,
        Err(error) => {
            // An unreadable value says nothing about the state: keep what was known.
            let mut row = previous.cloned().unwrap_or_else(|| empty_row(&key, stored_ms));
            row.revision = revision;
            row.stored_ms = stored_ms;
            row.error = Some(error);
            return row;
        }
    };
    let state = decision.state.label();
    let same_state = previous.is_some_and(|row| row.state == Some(state));
    let since_ms = match previous {
        Some(row) if same_state => row.since_ms,
        _ => stored_ms,
    };
    Row {
        breaker: key,
        revision,
        stored_ms,
        state: Some(state),
        state_text: Some(render::decision_state(&decision)),
        since_ms,
        term: Some(decision.id.term.0),
        seq: Some(decision.id.seq),
        decider: Some(decision.decider.to_string()),
        reason_kind: Some(render::reason_kind(&decision.reason)),
        reason: Some(render::long_reason(&decision.reason)),
        evidence: EvidenceRow::of(&decision.reason),
        probes: probes(&decision.state),
        manual: manual(previous.filter(|_| same_state), &decision, stored_ms),
        config_version: Some(decision.config_version),
        error: None,
    }
}

fn empty_row(key: &str, stored_ms: i64) -> Row {
    Row {
        breaker: key.to_owned(),
        revision: 0,
        stored_ms,
        state: None,
        state_text: None,
        since_ms: stored_ms,
        term: None,
        seq: None,
        decider: None,
        reason_kind: None,
        reason: None,
        evidence: None,
        probes: None,
        manual: None,
        config_version: None,
        error: None,
    }
}

fn probes(state: &FleetState) -> Option<ProbesView> {
    let FleetState::HalfOpen { budget, grants } = state else { return None };
    Some(ProbesView { budget: *budget, grants: grants.iter().map(|g| (g.node.to_string(), g.probes)).collect() })
}

/// The override a manual state carries: its command's actor and reason come with the
/// decision that set it; a restatement of the same state keeps them from the row before.
/// A time box restarts in full with every restatement (the decider's rule), so the expiry
/// is counted from this decision's stored time.
fn manual(previous: Option<&Row>, decision: &Decision, stored_ms: i64) -> Option<OverrideView> {
    let command = CommandKind::setting(&decision.state)?;
    let expires_ms =
        decision.expires_after_ms.map(|ms| stored_ms.saturating_add(i64::try_from(ms.get()).unwrap_or(i64::MAX)));
    let (actor, reason) = match &decision.reason {
        Reason::Manual { actor, reason, .. } => (Some(actor.clone()), Some(reason.clone())),
        _ => previous.and_then(|row| row.manual.as_ref()).map_or((None, None), |m| (m.actor.clone(), m.reason.clone())),
    };
    Some(OverrideView { command: render::command_name(command), actor, reason, expires_ms })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::num::NonZeroU64;

    use breaker_actors::machine::{
        BreakerName, Contribution, DecisionId, Evidence, Grant, NodeId, Term, TripRule, VectorClock,
    };

    use super::*;

    fn decision(term: u64, seq: u64, state: FleetState, reason: Reason) -> Decision {
        Decision {
            version: 1,
            breaker: BreakerName::new("payments").unwrap(),
            id: DecisionId::new(term, seq),
            phase: DecisionId::new(term, seq),
            state,
            backoff_level: 0,
            reason,
            decider: NodeId::new(&format!("n{term}")).unwrap(),
            clock: VectorClock::new(Term(term)),
            config_version: 3,
            expires_after_ms: None,
        }
    }

    fn put(revision: u64, stored_ms: i64, decision: Decision) -> Change {
        Change { key: "payments".into(), revision, stored_ms, put: true, decision: Ok(decision) }
    }

    fn tripped() -> Reason {
        Reason::Tripped {
            rule: TripRule::FailureRate,
            evidence: Evidence {
                decisive: 10,
                failed: 9,
                slow: 1,
                nodes: 2,
                streak: 0,
                top: vec![Contribution { node: NodeId::new("n2").unwrap(), failed: 7, slow: 1 }],
            },
        }
    }

    fn row(update: Option<Update>) -> Row {
        match update {
            Some(Update::Row(row)) => *row,
            other => panic!("not a row: {other:?}"),
        }
    }

    #[test]
    fn a_trip_shows_its_decider_term_evidence_and_contributing_nodes() {
        let mut model = Model::default();
        row(model.apply(put(1, 1_000, decision(1, 1, FleetState::Closed, Reason::Initial))));
        let open = row(model.apply(put(2, 5_000, decision(1, 2, FleetState::Open { duration_ms: 60_000 }, tripped()))));
        assert_eq!((open.state, open.term, open.seq), (Some(StateLabel::Open), Some(1), Some(2)));
        assert_eq!(open.decider.as_deref(), Some("n1"));
        assert_eq!(open.state_text.as_deref(), Some("open (1m00s)"));
        assert_eq!(open.since_ms, 5_000, "a transition starts the clock");
        assert_eq!(open.reason_kind, Some("tripped"));
        assert!(open.reason.as_deref().unwrap().contains("from n2 (7 failed, 1 slow)"), "{open:?}");
        let evidence = open.evidence.unwrap();
        assert_eq!((evidence.rule, evidence.failed, evidence.rate), ("failure_rate", 9, Some(0.9)));
        assert_eq!(evidence.top, [render::ContributorRow { node: "n2".into(), failed: 7, slow: 1 }]);
        let json = serde_json::to_value(model.snapshot()).unwrap();
        assert_eq!(json["rows"][0]["state"], "open");
        assert_eq!(json["rows"][0]["evidence"]["top"][0]["node"], "n2");
    }

    #[test]
    fn a_restatement_under_a_new_term_keeps_the_transition_time_and_the_operator() {
        let mut model = Model::default();
        let manual = Reason::Manual { command: CommandKind::ForceOpen, actor: "alice".into(), reason: "INC-42".into() };
        let mut forced = decision(1, 5, FleetState::ForcedOpen, manual);
        forced.expires_after_ms = NonZeroU64::new(60_000);
        let set = row(model.apply(put(7, 10_000, forced)));
        let expected = OverrideView {
            command: "force_open",
            actor: Some("alice".into()),
            reason: Some("INC-42".into()),
            expires_ms: Some(70_000),
        };
        assert_eq!(set.manual.as_ref(), Some(&expected));
        let mut restated =
            decision(2, 1, FleetState::ForcedOpen, Reason::TermStarted { previous: DecisionId::new(1, 5) });
        restated.expires_after_ms = NonZeroU64::new(60_000);
        let restated = row(model.apply(put(9, 20_000, restated)));
        assert_eq!((restated.term, restated.decider.as_deref()), (Some(2), Some("n2")));
        assert_eq!(restated.since_ms, 10_000, "same state: not a transition");
        assert_eq!(
            restated.manual,
            Some(OverrideView { expires_ms: Some(80_000), ..expected }),
            "the actor stays; the time box restarts in full"
        );
        let reset = row(model.apply(put(10, 30_000, decision(2, 2, FleetState::Closed, Reason::Initial))));
        assert_eq!((reset.manual, reset.since_ms), (None, 30_000));
    }

    #[test]
    fn a_restatement_seen_first_names_no_actor() {
        let mut model = Model::default();
        let d = decision(2, 1, FleetState::Disabled, Reason::TermStarted { previous: DecisionId::new(1, 1) });
        let seen = row(model.apply(put(3, 1, d)));
        assert_eq!(seen.manual, Some(OverrideView { command: "disable", actor: None, reason: None, expires_ms: None }));
    }

    #[test]
    fn half_open_rounds_show_their_grants() {
        let mut model = Model::default();
        let grants = vec![Grant { node: NodeId::new("n1").unwrap(), probes: 1 }];
        let half = row(model.apply(put(
            4,
            1,
            decision(1, 3, FleetState::HalfOpen { budget: 2, grants }, Reason::OpenElapsed),
        )));
        assert_eq!(half.probes, Some(ProbesView { budget: 2, grants: vec![("n1".into(), 1)] }));
    }

    #[test]
    fn old_revisions_markers_junk_and_too_many_breakers() {
        let mut model = Model::with_capacity(2);
        let closed = || decision(1, 1, FleetState::Closed, Reason::Initial);
        assert!(model.apply(put(5, 1, closed())).is_some());
        assert_eq!(model.apply(put(5, 1, closed())), None, "a watch restarting delivers it again");
        assert_eq!(model.apply(put(4, 1, closed())), None);
        let junk = Change { revision: 6, decision: Err("undecodable decision: eof".into()), ..put(6, 2, closed()) };
        let junk = row(model.apply(junk));
        assert_eq!((junk.state, junk.error.as_deref()), (Some(StateLabel::Closed), Some("undecodable decision: eof")));
        let other = |key: &str, revision| Change { key: key.into(), ..put(revision, 3, closed()) };
        assert!(model.apply(other("refunds", 7)).is_some());
        assert_eq!(model.apply(other("ledger", 8)), None, "beyond the bound");
        assert_eq!((model.len(), model.snapshot().refused), (2, 1));
        let marker = Change { put: false, decision: Err("key delete".into()), ..other("refunds", 9) };
        assert_eq!(model.apply(marker.clone()), Some(Update::Removed("refunds".into())));
        assert_eq!(model.apply(Change { key: "ledger".into(), revision: 10, ..marker }), None);
        assert!(model.row("refunds").is_none() && model.row("payments").is_some());
    }
}
