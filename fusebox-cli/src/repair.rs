//! What `fusebox status` flags and `fusebox repair` fixes, judged from what the buckets
//! hold for one breaker: its shard's lease value, the shard's term record and the decision.
//!
//! - A lease value no node holds: one that does not decode, or one without a TTL on a
//!   bucket whose leases expire by per-key TTL (it never expires; nodes replace it only
//!   after it stood still for a whole TTL).
//! - A decision no decider can supersede in order: one that does not decode, or one of a
//!   term no lease ever had (above the term record and the lease's term), or one the term
//!   record notes as such (`unexplained`: nodes have since taken terms above it, and may
//!   have restated the state it forced).
//!
//! The repair writes, in this order: the term record, moved to a term above everything
//! seen (so that every later lease is above the repair); the restatement, a decision of
//! that term, closed, with the operator's actor and reason (`Manual { command: reset }`,
//! the reason prefixed `repair: `), by CAS on the decision's revision; and a delete of a bad
//! lease value by CAS on its revision. Nodes apply the restatement (its term is above all
//! they applied), the decider is deposed by it, and the next lease's holder restates it.
//!
//! Pure functions of what was read: `run` does the reading and the writing.

use breaker_actors::machine::{
    BreakerName, CommandKind, Decision, DecisionId, FleetState, MAX_TERM, MAX_TEXT_LEN, NodeId, Reason, Term,
    VectorClock, WIRE_VERSION,
};
use transport_nats::codec::{LeaseHolder, TermRecord};

/// The lease key's value as read, with the headers that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSeen {
    /// Its revision.
    pub revision: u64,
    /// The value decoded, or why it does not decode.
    pub holder: Result<LeaseHolder, String>,
    /// Whether the message carries a TTL (`Nats-TTL`).
    pub has_ttl: bool,
}

/// What is wrong with one breaker's lease and decision (nothing, mostly).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems {
    /// What is wrong with the lease value.
    pub lease: Option<String>,
    /// What is wrong with the decision.
    pub decision: Option<String>,
}

impl Problems {
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.lease.is_none() && self.decision.is_none()
    }

    /// Everything wrong, in one line (`None` if nothing).
    pub fn summary(&self) -> Option<String> {
        let all: Vec<&str> = [&self.lease, &self.decision].into_iter().flatten().map(String::as_str).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// The highest term a lease of the shard was granted, as far as the buckets tell
/// (`None`: they do not, e.g. right after the lease bucket was rebuilt).
pub fn highest_granted(lease: Option<&LeaseSeen>, record: Option<&TermRecord>) -> Option<u64> {
    let leased = lease.and_then(|l| l.holder.as_ref().ok()).and_then(LeaseHolder::term).map(|t| t.0);
    let recorded = record.map(|r| r.term.0);
    leased.max(recorded)
}

/// Judges what was read; `per_key_ttl`: whether the lease bucket expires values by per-key
/// TTL (a value without one then never expires).
pub fn diagnose(
    lease: Option<&LeaseSeen>,
    per_key_ttl: bool,
    record: Option<&TermRecord>,
    decision: Option<&Result<Decision, String>>,
) -> Problems {
    let lease_problem = lease.and_then(|l| match &l.holder {
        Err(e) => Some(format!("lease value at revision {} does not decode ({e})", l.revision)),
        Ok(_) if per_key_ttl && !l.has_ttl => {
            Some(format!("lease value at revision {} has no TTL: it never expires", l.revision))
        }
        Ok(_) => None,
    });
    let highest = highest_granted(lease, record);
    let decision_problem = match decision {
        Some(Err(e)) => Some(format!("the decision does not decode ({e})")),
        Some(Ok(d)) if d.id.term.0 > MAX_TERM => {
            Some(format!("decision term {} is above the largest term", d.id.term.0))
        }
        Some(Ok(d)) if highest.is_some_and(|h| d.id.term.0 > h) => {
            Some(format!("decision term {} is above every term a lease had ({})", d.id.term.0, highest.unwrap_or(0)))
        }
        _ => record
            .and_then(|r| r.unexplained)
            .map(|t| format!("a decision of term {} that no lease had was seen; later terms were taken above it", t.0)),
    };
    Problems { lease: lease_problem, decision: decision_problem }
}

/// The term of the restatement: above the record, the lease and every decision term nodes
/// may have applied (a decision above [`MAX_TERM`] was refused by every node).
pub fn repair_term(lease: Option<&LeaseSeen>, record: Option<&TermRecord>, decision_terms: &[u64]) -> Term {
    let applied = decision_terms.iter().copied().filter(|t| *t <= MAX_TERM).max().unwrap_or(0);
    let noted = record.and_then(|r| r.unexplained).map_or(0, |t| t.0);
    let base = highest_granted(lease, record).unwrap_or(0).max(applied).max(noted);
    Term(base.saturating_add(1).min(MAX_TERM))
}

/// The decider a repair's restatement names.
pub const REPAIRER: &str = "fusebox-repair";

/// The restatement `fusebox repair` writes: closed under `term`, audited like a reset,
/// made by `decider` ([`REPAIRER`]).
pub fn restatement(breaker: &BreakerName, term: Term, decider: NodeId, actor: &str, reason: &str) -> Decision {
    let id = DecisionId { term, seq: 1 };
    let mut reason = format!("repair: {reason}");
    while reason.len() > MAX_TEXT_LEN {
        reason.pop();
    }
    Decision {
        version: WIRE_VERSION,
        breaker: breaker.clone(),
        id,
        phase: id,
        state: FleetState::Closed,
        backoff_level: 0,
        reason: Reason::Manual { command: CommandKind::Reset, actor: actor.to_owned(), reason },
        decider,
        clock: VectorClock::new(term),
        config_version: 1,
        expires_after_ms: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use transport_nats::codec::{LEASE_VERSION, LeaseValue};

    use super::*;

    fn lease(term: u64, has_ttl: bool) -> LeaseSeen {
        let value =
            LeaseValue { version: LEASE_VERSION, node: NodeId::new("n1").unwrap(), term: Term(term), ttl_ms: 2_000 };
        LeaseSeen { revision: 9, holder: Ok(LeaseHolder::Holder(value)), has_ttl }
    }

    fn record(term: u64, unexplained: Option<u64>) -> TermRecord {
        TermRecord { version: LEASE_VERSION, term: Term(term), unexplained: unexplained.map(Term) }
    }

    #[allow(clippy::unnecessary_wraps)] // the shape `diagnose` takes
    fn decision(term: u64) -> Result<Decision, String> {
        Ok(restatement(&BreakerName::new("payments").unwrap(), Term(term), NodeId::new(REPAIRER).unwrap(), "a", "b"))
    }

    #[test]
    fn a_healthy_breaker_has_no_problem() {
        let p = diagnose(Some(&lease(7, true)), true, Some(&record(7, None)), Some(&decision(7)));
        assert!(p.is_empty(), "{p:?}");
        // Right after a rebuilt lease bucket nothing tells what terms were granted.
        assert!(diagnose(None, true, None, Some(&decision(20_012))).is_empty());
    }

    #[test]
    fn bad_leases_and_impossible_decisions_are_named() {
        let garbage = LeaseSeen { revision: 4, holder: Err("bad".into()), has_ttl: false };
        let p = diagnose(Some(&garbage), true, Some(&record(3, None)), Some(&decision(1_000_000_000_000)));
        assert!(p.lease.unwrap().contains("does not decode"));
        assert!(p.decision.unwrap().contains("above every term a lease had (3)"));
        let p = diagnose(Some(&lease(3, false)), true, None, None);
        assert!(p.lease.unwrap().contains("no TTL"));
        assert!(diagnose(Some(&lease(3, false)), false, None, None).is_empty(), "bucket max_age: no TTL is normal");
        let p = diagnose(None, true, Some(&record(12, Some(11))), Some(&decision(12)));
        assert!(p.decision.unwrap().contains("term 11 that no lease had"));
        assert!(diagnose(None, true, None, Some(&Err("x".into()))).decision.is_some());
    }

    #[test]
    fn the_repair_term_is_above_everything_seen_and_bounded() {
        assert_eq!(repair_term(Some(&lease(7, true)), Some(&record(5, None)), &[1_000]), Term(1_001));
        assert_eq!(repair_term(None, Some(&record(5, Some(9))), &[]), Term(10));
        assert_eq!(repair_term(None, None, &[u64::MAX]), Term(1), "a term nodes refused does not count");
        let long = "x".repeat(MAX_TEXT_LEN);
        let d = restatement(&BreakerName::new("p").unwrap(), Term(3), NodeId::new(REPAIRER).unwrap(), "alice", &long);
        assert!(matches!(&d.reason, Reason::Manual { reason, .. } if reason.len() == MAX_TEXT_LEN));
    }
}
