//! The JSON shapes of version 1 of the decisions (state bucket values) and operator
//! commands (control stream) promised to other languages in `docs/wire-format.md` and
//! `schemas/decision-v1.schema.json` / `schemas/command-v1.schema.json`, and of the
//! answers to `describe` requests (whose `config` is spelled by `wire_config.rs`).
//!
//! These types, not the core's (`breaker_actors::machine`), spell the JSON: their field
//! names, tags, optional fields and tolerance of unknown fields are the format, so a rename
//! or a serde attribute in the pure core cannot change what other languages read. Every
//! encoder and decoder of a decision or a command goes through them: `From<&core>` to
//! write, `TryFrom<dto>` (or `From`) to read, with the refusals of the codec
//! ([`DecodeError`]). The conversions are exhaustive matches, so a variant added to the
//! core does not compile until it has a spelling here.
//!
//! The types are named as the core's are (`Decision`, `DecisionId`, `FleetState`, ...):
//! serde's messages name them (`expected struct DecisionId`), and a refusal's message is
//! the same as when the core's derives read the message.
//!
//! What the shapes tolerate, as the decoders always have: unknown fields are ignored in a
//! decision, a command and a describe answer at every level except `Contribution` (`reason.evidence.top[]`),
//! which refuses them; `null` reads as absent for `duration_ms` and `expires_after_ms`.

use std::borrow::Cow;
use std::num::NonZeroU64;

use breaker_actors::machine::{self as core, BreakerName, NameError, NodeId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DecodeError;
use super::wire_config::BreakerConfig;

/// A validated name (a breaker's or a node's), spelled as a JSON string. Validated while
/// it is read, as the names themselves are, so that an invalid name is refused where it
/// stands in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name<T>(pub(super) T);

/// The names a [`Name`] holds.
pub(super) trait Named: Sized {
    fn parse(text: &str) -> Result<Self, NameError>;
    fn text(&self) -> &str;
}

impl Named for BreakerName {
    fn parse(text: &str) -> Result<Self, NameError> {
        Self::new(text)
    }

    fn text(&self) -> &str {
        self.as_str()
    }
}

impl Named for NodeId {
    fn parse(text: &str) -> Result<Self, NameError> {
        Self::new(text)
    }

    fn text(&self) -> &str {
        self.as_str()
    }
}

impl<T: Named> Serialize for Name<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.text())
    }
}

impl<'de, T: Named> Deserialize<'de> for Name<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <Cow<'de, str>>::deserialize(d)?;
        T::parse(&raw).map(Name).map_err(serde::de::Error::custom)
    }
}

impl<T: Clone> From<&T> for Name<T> {
    fn from(name: &T) -> Self {
        Self(name.clone())
    }
}

/// `{"term": 412, "seq": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DecisionId {
    term: u64,
    seq: u64,
}

impl From<core::DecisionId> for DecisionId {
    fn from(id: core::DecisionId) -> Self {
        Self { term: id.term.0, seq: id.seq }
    }
}

impl From<DecisionId> for core::DecisionId {
    fn from(id: DecisionId) -> Self {
        Self::new(id.term, id.seq)
    }
}

/// `{"term": 412, "entries": [["node-1", 2], ["node-2", 1]]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct VectorClock {
    term: u64,
    entries: Vec<(Name<NodeId>, u64)>,
}

impl From<&core::VectorClock> for VectorClock {
    fn from(clock: &core::VectorClock) -> Self {
        Self { term: clock.term().0, entries: clock.entries().map(|(node, count)| (node.into(), count)).collect() }
    }
}

impl TryFrom<VectorClock> for core::VectorClock {
    type Error = DecodeError;

    fn try_from(clock: VectorClock) -> Result<Self, DecodeError> {
        let entries = clock.entries.into_iter().map(|(Name(node), count)| (node, count)).collect();
        Self::from_entries(core::Term(clock.term), entries).ok_or(DecodeError::MalformedClock)
    }
}

/// `{"node": "node-1", "probes": 5}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Grant {
    node: Name<NodeId>,
    probes: u32,
}

/// `{"state": "open", "duration_ms": 60000}` and the other states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub(super) enum FleetState {
    Closed,
    Ramping { stage: u8, admit_per_mille: u16 },
    Open { duration_ms: u64 },
    HalfOpen { budget: u32, grants: Vec<Grant> },
    ForcedOpen,
    ForcedClosed,
    Disabled,
    MetricsOnly,
}

impl From<&core::FleetState> for FleetState {
    fn from(state: &core::FleetState) -> Self {
        match state {
            core::FleetState::Closed => Self::Closed,
            &core::FleetState::Ramping { stage, admit_per_mille } => Self::Ramping { stage, admit_per_mille },
            &core::FleetState::Open { duration_ms } => Self::Open { duration_ms },
            core::FleetState::HalfOpen { budget, grants } => Self::HalfOpen {
                budget: *budget,
                grants: grants.iter().map(|g| Grant { node: (&g.node).into(), probes: g.probes }).collect(),
            },
            core::FleetState::ForcedOpen => Self::ForcedOpen,
            core::FleetState::ForcedClosed => Self::ForcedClosed,
            core::FleetState::Disabled => Self::Disabled,
            core::FleetState::MetricsOnly => Self::MetricsOnly,
        }
    }
}

impl From<FleetState> for core::FleetState {
    fn from(state: FleetState) -> Self {
        match state {
            FleetState::Closed => Self::Closed,
            FleetState::Ramping { stage, admit_per_mille } => Self::Ramping { stage, admit_per_mille },
            FleetState::Open { duration_ms } => Self::Open { duration_ms },
            FleetState::HalfOpen { budget, grants } => Self::HalfOpen {
                budget,
                grants: grants.into_iter().map(|g| core::Grant { node: g.node.0, probes: g.probes }).collect(),
            },
            FleetState::ForcedOpen => Self::ForcedOpen,
            FleetState::ForcedClosed => Self::ForcedClosed,
            FleetState::Disabled => Self::Disabled,
            FleetState::MetricsOnly => Self::MetricsOnly,
        }
    }
}

/// `failure_rate`, `slow_call_rate`, `consecutive_failures`, `burn_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum TripRule {
    FailureRate,
    SlowCallRate,
    ConsecutiveFailures,
    BurnRate,
}

impl From<core::TripRule> for TripRule {
    fn from(rule: core::TripRule) -> Self {
        match rule {
            core::TripRule::FailureRate => Self::FailureRate,
            core::TripRule::SlowCallRate => Self::SlowCallRate,
            core::TripRule::ConsecutiveFailures => Self::ConsecutiveFailures,
            core::TripRule::BurnRate => Self::BurnRate,
        }
    }
}

impl From<TripRule> for core::TripRule {
    fn from(rule: TripRule) -> Self {
        match rule {
            TripRule::FailureRate => Self::FailureRate,
            TripRule::SlowCallRate => Self::SlowCallRate,
            TripRule::ConsecutiveFailures => Self::ConsecutiveFailures,
            TripRule::BurnRate => Self::BurnRate,
        }
    }
}

/// `{"node": "node-1", "failed": 20, "slow": 0}`; unknown fields refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Contribution {
    node: Name<NodeId>,
    failed: u64,
    slow: u64,
}

impl From<&core::Contribution> for Contribution {
    fn from(c: &core::Contribution) -> Self {
        Self { node: (&c.node).into(), failed: c.failed, slow: c.slow }
    }
}

impl From<Contribution> for core::Contribution {
    fn from(c: Contribution) -> Self {
        Self { node: c.node.0, failed: c.failed, slow: c.slow }
    }
}

/// A trip's `evidence`; `top` absent when empty (and in decisions before it existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Evidence {
    decisive: u64,
    failed: u64,
    slow: u64,
    nodes: u32,
    streak: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    top: Vec<Contribution>,
}

impl From<&core::Evidence> for Evidence {
    fn from(e: &core::Evidence) -> Self {
        Self {
            decisive: e.decisive,
            failed: e.failed,
            slow: e.slow,
            nodes: e.nodes,
            streak: e.streak,
            top: e.top.iter().map(Contribution::from).collect(),
        }
    }
}

impl From<Evidence> for core::Evidence {
    fn from(e: Evidence) -> Self {
        Self {
            decisive: e.decisive,
            failed: e.failed,
            slow: e.slow,
            nodes: e.nodes,
            streak: e.streak,
            top: e.top.into_iter().map(core::Contribution::from).collect(),
        }
    }
}

/// `force_open`, `force_closed`, `disable`, `metrics_only`, `reset`, `reconfigure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CommandKind {
    ForceOpen,
    ForceClosed,
    Disable,
    MetricsOnly,
    Reset,
    Reconfigure,
}

impl From<core::CommandKind> for CommandKind {
    fn from(kind: core::CommandKind) -> Self {
        match kind {
            core::CommandKind::ForceOpen => Self::ForceOpen,
            core::CommandKind::ForceClosed => Self::ForceClosed,
            core::CommandKind::Disable => Self::Disable,
            core::CommandKind::MetricsOnly => Self::MetricsOnly,
            core::CommandKind::Reset => Self::Reset,
            core::CommandKind::Reconfigure => Self::Reconfigure,
        }
    }
}

impl From<CommandKind> for core::CommandKind {
    fn from(kind: CommandKind) -> Self {
        match kind {
            CommandKind::ForceOpen => Self::ForceOpen,
            CommandKind::ForceClosed => Self::ForceClosed,
            CommandKind::Disable => Self::Disable,
            CommandKind::MetricsOnly => Self::MetricsOnly,
            CommandKind::Reset => Self::Reset,
            CommandKind::Reconfigure => Self::Reconfigure,
        }
    }
}

/// A decision's `reason`, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(super) enum Reason {
    Initial,
    TermStarted { previous: DecisionId },
    Tripped { rule: TripRule, evidence: Evidence },
    OpenElapsed,
    HealthCheckPassed { successes: u32 },
    ProbesGranted,
    ProbesSucceeded { successes: u32 },
    ProbeFailed { failures: u32 },
    HalfOpenTimedOut,
    RampAdvanced,
    Reconfigured { from: u64, to: u64 },
    Manual { command: CommandKind, actor: String, reason: String },
    OverrideExpired { command: CommandKind, after_ms: u64 },
}

impl From<&core::Reason> for Reason {
    fn from(reason: &core::Reason) -> Self {
        use core::Reason as R;
        match reason {
            R::Initial => Self::Initial,
            &R::TermStarted { previous } => Self::TermStarted { previous: previous.into() },
            R::Tripped { rule, evidence } => Self::Tripped { rule: (*rule).into(), evidence: evidence.into() },
            R::OpenElapsed => Self::OpenElapsed,
            &R::HealthCheckPassed { successes } => Self::HealthCheckPassed { successes },
            R::ProbesGranted => Self::ProbesGranted,
            &R::ProbesSucceeded { successes } => Self::ProbesSucceeded { successes },
            &R::ProbeFailed { failures } => Self::ProbeFailed { failures },
            R::HalfOpenTimedOut => Self::HalfOpenTimedOut,
            R::RampAdvanced => Self::RampAdvanced,
            &R::Reconfigured { from, to } => Self::Reconfigured { from, to },
            R::Manual { command, actor, reason } => {
                Self::Manual { command: (*command).into(), actor: actor.clone(), reason: reason.clone() }
            }
            &R::OverrideExpired { command, after_ms } => Self::OverrideExpired { command: command.into(), after_ms },
        }
    }
}

impl From<Reason> for core::Reason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Initial => Self::Initial,
            Reason::TermStarted { previous } => Self::TermStarted { previous: previous.into() },
            Reason::Tripped { rule, evidence } => Self::Tripped { rule: rule.into(), evidence: evidence.into() },
            Reason::OpenElapsed => Self::OpenElapsed,
            Reason::HealthCheckPassed { successes } => Self::HealthCheckPassed { successes },
            Reason::ProbesGranted => Self::ProbesGranted,
            Reason::ProbesSucceeded { successes } => Self::ProbesSucceeded { successes },
            Reason::ProbeFailed { failures } => Self::ProbeFailed { failures },
            Reason::HalfOpenTimedOut => Self::HalfOpenTimedOut,
            Reason::RampAdvanced => Self::RampAdvanced,
            Reason::Reconfigured { from, to } => Self::Reconfigured { from, to },
            Reason::Manual { command, actor, reason } => Self::Manual { command: command.into(), actor, reason },
            Reason::OverrideExpired { command, after_ms } => {
                Self::OverrideExpired { command: command.into(), after_ms }
            }
        }
    }
}

/// A state bucket value. Unknown fields are ignored, so that a decider may add optional
/// fields without a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Decision {
    version: u16,
    pub(super) breaker: Name<BreakerName>,
    id: DecisionId,
    phase: DecisionId,
    state: FleetState,
    backoff_level: u32,
    reason: Reason,
    decider: Name<NodeId>,
    clock: VectorClock,
    /// Absent (0) in decisions written before config versions existed.
    #[serde(default)]
    config_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_after_ms: Option<NonZeroU64>,
}

impl From<&core::Decision> for Decision {
    fn from(d: &core::Decision) -> Self {
        Self {
            version: d.version,
            breaker: (&d.breaker).into(),
            id: d.id.into(),
            phase: d.phase.into(),
            state: (&d.state).into(),
            backoff_level: d.backoff_level,
            reason: (&d.reason).into(),
            decider: (&d.decider).into(),
            clock: (&d.clock).into(),
            config_version: d.config_version,
            expires_after_ms: d.expires_after_ms,
        }
    }
}

impl TryFrom<Decision> for core::Decision {
    type Error = DecodeError;

    /// Refused: a clock breaking its invariants ([`DecodeError::MalformedClock`]).
    fn try_from(d: Decision) -> Result<Self, DecodeError> {
        Ok(Self {
            version: d.version,
            breaker: d.breaker.0,
            id: d.id.into(),
            phase: d.phase.into(),
            state: d.state.into(),
            backoff_level: d.backoff_level,
            reason: d.reason.into(),
            decider: d.decider.0,
            clock: d.clock.try_into()?,
            config_version: d.config_version,
            expires_after_ms: d.expires_after_ms,
        })
    }
}

/// A control stream message. Unknown fields are ignored, as in decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Command {
    version: u16,
    pub(super) breaker: Name<BreakerName>,
    kind: CommandKind,
    actor: String,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

impl From<&core::Command> for Command {
    fn from(c: &core::Command) -> Self {
        Self {
            version: c.version,
            breaker: (&c.breaker).into(),
            kind: c.kind.into(),
            actor: c.actor.clone(),
            reason: c.reason.clone(),
            duration_ms: c.duration_ms,
        }
    }
}

impl From<Command> for core::Command {
    fn from(c: Command) -> Self {
        Self {
            version: c.version,
            breaker: c.breaker.0,
            kind: c.kind.into(),
            actor: c.actor,
            reason: c.reason,
            duration_ms: c.duration_ms,
        }
    }
}

/// The evidence window's totals in a describe answer: `{"calls": 40, "failures": 12, "slow": 1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WindowReply {
    calls: u64,
    failures: u64,
    slow: u64,
}

/// A describe answer. Unknown fields are ignored; `override_ends_in_ms` written as `null`
/// when there is none, and read as none when absent. Its `state`, ids and contributions
/// are spelled as in a decision, its `config` as in the config bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct DescribeReply {
    version: u16,
    pub(super) breaker: Name<BreakerName>,
    node: Name<NodeId>,
    term: u64,
    last_decided: DecisionId,
    phase: DecisionId,
    state: FleetState,
    backoff_level: u32,
    window: WindowReply,
    contributions: Vec<Contribution>,
    override_ends_in_ms: Option<u64>,
    config: BreakerConfig,
}

impl From<&super::DescribeReply> for DescribeReply {
    fn from(r: &super::DescribeReply) -> Self {
        let super::DescribeReply {
            version,
            breaker,
            node,
            term,
            last_decided,
            phase,
            state,
            backoff_level,
            window,
            contributions,
            override_ends_in_ms,
            config,
        } = r;
        let super::WindowReply { calls, failures, slow } = *window;
        Self {
            version: *version,
            breaker: breaker.into(),
            node: node.into(),
            term: term.0,
            last_decided: (*last_decided).into(),
            phase: (*phase).into(),
            state: state.into(),
            backoff_level: *backoff_level,
            window: WindowReply { calls, failures, slow },
            contributions: contributions.iter().map(Contribution::from).collect(),
            override_ends_in_ms: *override_ends_in_ms,
            config: config.into(),
        }
    }
}

impl From<DescribeReply> for super::DescribeReply {
    fn from(r: DescribeReply) -> Self {
        let WindowReply { calls, failures, slow } = r.window;
        Self {
            version: r.version,
            breaker: r.breaker.0,
            node: r.node.0,
            term: core::Term(r.term),
            last_decided: r.last_decided.into(),
            phase: r.phase.into(),
            state: r.state.into(),
            backoff_level: r.backoff_level,
            window: super::WindowReply { calls, failures, slow },
            contributions: r.contributions.into_iter().map(core::Contribution::from).collect(),
            override_ends_in_ms: r.override_ends_in_ms,
            config: r.config.into(),
        }
    }
}
