//! Domain types that cross between nodes: outcome counts, reports, decisions and manual
//! commands. They are serde types with a version field; the codecs that put them on the
//! wire (postcard, JSON) live in `transport-nats`, not here.

use serde::{Deserialize, Serialize};

use super::names::{BreakerName, NodeId};
use super::units::DecisionId;
use super::vclock::VectorClock;

/// The version of reports, decisions and commands this code writes and reads.
pub const WIRE_VERSION: u16 = 1;
/// The longest free text (a command's actor or reason) a decision carries, in characters
/// (Unicode scalar values, as JSON Schema's `maxLength` counts them).
pub const MAX_TEXT_LEN: usize = 256;
/// The longest time-boxed override ([`Command::duration_ms`]): 7 days, in milliseconds.
/// Longer than that is not an override but a policy: leave the state manual and reset it.
pub const MAX_OVERRIDE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Outcomes of calls, by class. Every counter saturates instead of wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Calls that succeeded in time.
    pub success: u64,
    /// Calls that failed (whatever their duration).
    pub failure: u64,
    /// Calls that succeeded but took at least the slow-call threshold.
    pub slow: u64,
    /// Calls whose error the classifier excludes: neutral.
    pub ignored: u64,
    /// Calls the breaker rejected: the demand the breaker held back.
    pub rejected: u64,
}

impl OutcomeCounts {
    /// Calls that count towards rates: success, failure and slow.
    pub fn decisive(&self) -> u64 {
        self.success.saturating_add(self.failure).saturating_add(self.slow)
    }

    /// Whether nothing at all was recorded.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Adds `other` into `self`, saturating.
    pub fn add(&mut self, other: &Self) {
        self.success = self.success.saturating_add(other.success);
        self.failure = self.failure.saturating_add(other.failure);
        self.slow = self.slow.saturating_add(other.slow);
        self.ignored = self.ignored.saturating_add(other.ignored);
        self.rejected = self.rejected.saturating_add(other.rejected);
    }

    /// Every call, of every class.
    pub fn total(&self) -> u64 {
        self.decisive().saturating_add(self.ignored).saturating_add(self.rejected)
    }
}

/// What the hot path recorded under one snapshot generation since the last drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalOutcomes {
    /// The snapshot generation the calls were admitted under.
    pub generation: u64,
    /// The outcomes.
    pub counts: OutcomeCounts,
    /// The longest run of consecutive failures reached since the last drain, counting a
    /// run carried over from before it.
    pub longest_failure_streak: u64,
}

/// One node's outcomes for one breaker over one flush: the unit of fleet evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The breaker.
    pub breaker: BreakerName,
    /// The reporting node.
    pub node: NodeId,
    /// The node's incarnation (new at every process start).
    pub incarnation: u64,
    /// Position among this incarnation's reports for this breaker, from 1.
    pub seq: u64,
    /// The decision the node had applied while these calls ran: the decider counts the
    /// report only towards that decision's phase.
    pub applied: DecisionId,
    /// The node's clock after ticking for this report.
    pub clock: VectorClock,
    /// The outcomes.
    pub counts: OutcomeCounts,
    /// Longest failure streak seen in the flush.
    pub longest_failure_streak: u64,
    /// Whether the node's local overlay was open.
    pub local_open: bool,
}

/// A node's probe allowance within a half-open round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The node.
    pub node: NodeId,
    /// Probes it may have decided in this round, in total.
    pub probes: u32,
}

/// The fleet state a decision sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FleetState {
    /// Calls flow; the trip rules watch.
    Closed,
    /// Back from half-open: a share of calls flows while the rules watch.
    Ramping {
        /// Stage index from 0.
        stage: u8,
        /// Calls admitted per thousand.
        admit_per_mille: u16,
    },
    /// Calls are rejected.
    Open {
        /// How long the decider keeps it open, on its own clock.
        duration_ms: u64,
    },
    /// Only granted probes flow.
    HalfOpen {
        /// Probes for the whole round.
        budget: u32,
        /// Who may probe, sorted by node; the sum never exceeds `budget`.
        grants: Vec<Grant>,
    },
    /// Manual: every call rejected.
    ForcedOpen,
    /// Manual: every call permitted, outcomes recorded, never trips.
    ForcedClosed,
    /// Manual: every call permitted, nothing recorded.
    Disabled,
    /// Manual: every call permitted; rules evaluated and reported, never enforced.
    MetricsOnly,
}

impl FleetState {
    /// Its label.
    pub fn label(&self) -> StateLabel {
        match self {
            Self::Closed => StateLabel::Closed,
            Self::Ramping { .. } => StateLabel::Ramping,
            Self::Open { .. } => StateLabel::Open,
            Self::HalfOpen { .. } => StateLabel::HalfOpen,
            Self::ForcedOpen => StateLabel::ForcedOpen,
            Self::ForcedClosed => StateLabel::ForcedClosed,
            Self::Disabled => StateLabel::Disabled,
            Self::MetricsOnly => StateLabel::MetricsOnly,
        }
    }

    /// Whether an operator set it.
    pub fn is_manual(&self) -> bool {
        self.label().is_manual()
    }

    /// The probes granted to `node` in a half-open round (0 otherwise).
    pub fn grant_for(&self, node: &NodeId) -> u32 {
        match self {
            Self::HalfOpen { grants, .. } => grants.iter().find(|g| &g.node == node).map_or(0, |g| g.probes),
            _ => 0,
        }
    }
}

/// A state without its data, for events, metrics and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateLabel {
    /// See [`FleetState::Closed`].
    Closed,
    /// See [`FleetState::Ramping`].
    Ramping,
    /// See [`FleetState::Open`].
    Open,
    /// See [`FleetState::HalfOpen`].
    HalfOpen,
    /// See [`FleetState::ForcedOpen`].
    ForcedOpen,
    /// See [`FleetState::ForcedClosed`].
    ForcedClosed,
    /// See [`FleetState::Disabled`].
    Disabled,
    /// See [`FleetState::MetricsOnly`].
    MetricsOnly,
}

impl StateLabel {
    /// Every state, in declaration order (the label values of the `fusebox_state` metric).
    pub const ALL: [Self; 8] = [
        Self::Closed,
        Self::Ramping,
        Self::Open,
        Self::HalfOpen,
        Self::ForcedOpen,
        Self::ForcedClosed,
        Self::Disabled,
        Self::MetricsOnly,
    ];

    /// Its index in [`StateLabel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether an operator set it.
    pub fn is_manual(self) -> bool {
        matches!(self, Self::ForcedOpen | Self::ForcedClosed | Self::Disabled | Self::MetricsOnly)
    }

    /// The name used in tables and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Ramping => "ramping",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::ForcedOpen => "forced-open",
            Self::ForcedClosed => "forced-closed",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics-only",
        }
    }
}

/// The trip rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripRule {
    /// Failure rate over the window.
    FailureRate,
    /// Slow-call rate over the window.
    SlowCallRate,
    /// Consecutive failures on a node.
    ConsecutiveFailures,
    /// Error-budget burn rate.
    BurnRate,
}

/// The most nodes a trip's evidence names in [`Evidence::top`].
pub const MAX_CONTRIBUTORS: usize = 4;

/// One node's share of a trip's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    /// The node (a Rust node's id, or a foreign publisher's subject token).
    pub node: NodeId,
    /// Failed calls it reported in the phase that tripped.
    pub failed: u64,
    /// Slow calls it reported in the phase that tripped.
    pub slow: u64,
}

/// What a trip was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Decisive calls in the window.
    pub decisive: u64,
    /// Failed calls in the window.
    pub failed: u64,
    /// Slow calls in the window.
    pub slow: u64,
    /// Distinct nodes that contributed bad outcomes (or long streaks).
    pub nodes: u32,
    /// Longest failure streak of any node.
    pub streak: u64,
    /// The nodes that reported the most bad outcomes (failed, then slow) in the phase that
    /// tripped, most first, at most [`MAX_CONTRIBUTORS`]: who made it open. Absent in
    /// decisions written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Contribution>,
}

/// The manual commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Reject every call until reset.
    ForceOpen,
    /// Permit every call until reset, recording outcomes.
    ForceClosed,
    /// Permit every call, record nothing.
    Disable,
    /// Permit every call, evaluate rules without enforcing them.
    MetricsOnly,
    /// Back to automatic, closed, with fresh windows.
    Reset,
    /// The breaker's config in the config bucket changed (a newer version deployed, or an
    /// operator's `fusebox config set`): the decider re-reads it, runs on it from now on,
    /// and records the switch as a [`Reason::Reconfigured`] decision in the same state. Not
    /// a manual state: the breaker stays under automatic control.
    Reconfigure,
}

impl CommandKind {
    /// The manual state it sets (`None` for reset).
    pub fn target(self) -> Option<FleetState> {
        match self {
            Self::ForceOpen => Some(FleetState::ForcedOpen),
            Self::ForceClosed => Some(FleetState::ForcedClosed),
            Self::Disable => Some(FleetState::Disabled),
            Self::MetricsOnly => Some(FleetState::MetricsOnly),
            Self::Reset | Self::Reconfigure => None,
        }
    }
}

/// An operator's command, consumed by the decider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The breaker.
    pub breaker: BreakerName,
    /// What to do.
    pub kind: CommandKind,
    /// Who asked (at most [`MAX_TEXT_LEN`] characters).
    pub actor: String,
    /// Why (at most [`MAX_TEXT_LEN`] characters).
    pub reason: String,
    /// A time-boxed override: the decider returns the breaker to automatic control (as a
    /// reset would) this many milliseconds after applying the command, with reason
    /// [`Reason::OverrideExpired`]. `None` (absent on the wire, as in every command written
    /// before it existed): until reset. Only for a command that sets a manual state, at
    /// most [`MAX_OVERRIDE_MS`] (see [`check_override`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Why a time-boxed override cannot be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideError {
    /// A duration on `reset`, which sets no manual state to end.
    ForReset,
    /// A duration of zero: nothing would be overridden.
    Zero,
    /// Longer than [`MAX_OVERRIDE_MS`].
    TooLong {
        /// The duration asked for, in milliseconds.
        duration_ms: u64,
    },
}

impl std::fmt::Display for OverrideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForReset => f.write_str("a reset cannot be time-boxed: it already returns to automatic control"),
            Self::Zero => f.write_str("an override must last at least 1 ms"),
            Self::TooLong { duration_ms } => {
                write!(f, "an override of {duration_ms} ms is longer than the maximum of {MAX_OVERRIDE_MS} ms (7 days)")
            }
        }
    }
}

impl std::error::Error for OverrideError {}

/// Checks a command's [`Command::duration_ms`]: `None` always passes; a duration needs a
/// command that sets a manual state and must be in `1..=`[`MAX_OVERRIDE_MS`].
pub fn check_override(kind: CommandKind, duration_ms: Option<u64>) -> Result<(), OverrideError> {
    let Some(duration_ms) = duration_ms else {
        return Ok(());
    };
    if kind.target().is_none() {
        return Err(OverrideError::ForReset);
    }
    match duration_ms {
        0 => Err(OverrideError::Zero),
        1..=MAX_OVERRIDE_MS => Ok(()),
        _ => Err(OverrideError::TooLong { duration_ms }),
    }
}

/// Why a decision was made: the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// The first decision ever made for the breaker.
    Initial,
    /// A new decider took over and restated the state under its term.
    TermStarted {
        /// The decision it restated (`NONE` if it knew of none).
        previous: DecisionId,
    },
    /// A trip rule fired.
    Tripped {
        /// Which.
        rule: TripRule,
        /// On what.
        evidence: Evidence,
    },
    /// The open period elapsed.
    OpenElapsed,
    /// Active health checks succeeded.
    HealthCheckPassed {
        /// Successes in a row.
        successes: u32,
    },
    /// More probes granted in the same round, to nodes that showed demand.
    ProbesGranted,
    /// The probes succeeded.
    ProbesSucceeded {
        /// Successes in the round.
        successes: u32,
    },
    /// A probe failed.
    ProbeFailed {
        /// Failures in the round.
        failures: u32,
    },
    /// The round did not settle within its maximum wait.
    HalfOpenTimedOut,
    /// The ramp moved to its next stage.
    RampAdvanced,
    /// The decider switched to another config version (the state stays as it was; the
    /// windows start afresh under the new rules).
    Reconfigured {
        /// The version the previous decision was made under (0: not recorded).
        from: u64,
        /// The version this and later decisions are made under.
        to: u64,
    },
    /// An operator's command.
    Manual {
        /// The command.
        command: CommandKind,
        /// Who.
        actor: String,
        /// Why.
        reason: String,
    },
    /// A time-boxed override ran out: back to automatic control (closed, fresh windows),
    /// as a reset does.
    OverrideExpired {
        /// The command whose state ended.
        command: CommandKind,
        /// How long it lasted, in milliseconds on the decider's clock.
        after_ms: u64,
    },
}

impl Reason {
    /// Whether a decision for this reason starts a new phase (fresh window, new attribution
    /// boundary). More probes and ramp stages stay in their phase; a restatement keeps the
    /// phase it restates.
    pub fn starts_phase(&self) -> bool {
        !matches!(self, Self::ProbesGranted | Self::RampAdvanced | Self::TermStarted { .. } | Self::Reconfigured { .. })
    }
}

/// A fleet decision, written by the decider (fenced by its term) to the state bucket and
/// applied by every node whose last applied decision is older.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The breaker.
    pub breaker: BreakerName,
    /// `(term, seq)`: its identity and order.
    pub id: DecisionId,
    /// The decision that entered the current state (itself, for a transition): reports are
    /// counted towards a phase only if their node had applied at least this decision.
    pub phase: DecisionId,
    /// The state.
    pub state: FleetState,
    /// Failed half-open rounds since the breaker last closed.
    pub backoff_level: u32,
    /// Why.
    pub reason: Reason,
    /// The decider.
    pub decider: NodeId,
    /// The decider's clock: which reports this decision had seen.
    pub clock: VectorClock,
    /// The [`BreakerConfig::version`](super::BreakerConfig::version) the decider ran on
    /// (0 in decisions written before versions existed). A node running another version
    /// re-reads the fleet's config.
    #[serde(default)]
    pub config_version: u64,
    /// For a time-boxed manual state: the override's duration in milliseconds. The decider
    /// returns to automatic control that long after it entered the state, and a new decider
    /// (after a lease change) that long after its restatement: it cannot know how much of
    /// it had passed on another node's clock, so like an open period the override is
    /// restarted in full, never cut short. `None` (absent on the wire): until reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_ms: Option<std::num::NonZeroU64>,
}

impl CommandKind {
    /// The command that sets manual state `state` (`None` for an automatic one).
    pub fn setting(state: &FleetState) -> Option<Self> {
        match state {
            FleetState::ForcedOpen => Some(Self::ForceOpen),
            FleetState::ForcedClosed => Some(Self::ForceClosed),
            FleetState::Disabled => Some(Self::Disable),
            FleetState::MetricsOnly => Some(Self::MetricsOnly),
            _ => None,
        }
    }
}
