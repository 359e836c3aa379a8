//! The JSON of version 1 of the config envelope (config bucket values), and of the breaker
//! config inside it (also the `config` of a describe answer), promised to other languages
//! in `docs/wire-format.md` and `docs/tuning.md`.
//!
//! As with decisions and commands (`wire.rs`), these types, not the core's
//! (`breaker_actors::machine::BreakerConfig` and its policies), spell the JSON: field names,
//! tags, the optional fields, the defaults of absent fields and the refusal of unknown
//! ones. `From<&core>` writes, `From<dto>` reads; the matches are exhaustive, so a field or
//! a variant added to the core does not compile until it has a spelling here.
//!
//! What a reader accepts, as the codec always has: every field may be absent (it takes the
//! core's default; the overlay's fields take the overlay's defaults); every `<name>_ms`
//! integer may instead be `<name>` as humantime text (`"60s"`), not both (the `Raw*` twins
//! below read that form, as the core's twins do for config files); unknown fields are
//! refused at every level. Configs are written with `_ms` integers only.
//!
//! The types are named as the core's (and its twins) are, so that serde's messages
//! (`expected struct RawTripPolicy`, `unknown variant ...`) are those the codec gave when
//! the core's derives read the config.

use breaker_actors::machine::{self as core, HumanMillis, NodeId};
use serde::{Deserialize, Serialize};

use super::json::ObjectOnly;
use super::wire::Name;

// ---------------------------------------------------------------------------------------
// The config, as written and read
// ---------------------------------------------------------------------------------------

/// A breaker's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBreakerConfig")]
pub(super) struct BreakerConfig {
    version: u64,
    trip: TripPolicy,
    quorum: u32,
    max_nodes: u32,
    slow_call_threshold_ms: Option<u64>,
    open: OpenPolicy,
    half_open: HalfOpenPolicy,
    health_check: Option<HealthCheckPolicy>,
    local: Option<LocalOverlayPolicy>,
    outage: OutageConfig,
    seed: u64,
}

/// The evidence window and the rules; `max_evidence_age_ms` left out while it is the
/// default (and so read as the default when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTripPolicy")]
pub(super) struct TripPolicy {
    window: WindowConfig,
    minimum_calls: u32,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    consecutive_failures: Option<u32>,
    burn_rate: Option<BurnRateRule>,
    #[serde(skip_serializing_if = "is_default_evidence_age")]
    max_evidence_age_ms: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_default_evidence_age(ms: &u64) -> bool {
    *ms == core::DEFAULT_MAX_EVIDENCE_AGE_MS
}

/// `{"count": {"calls": 100}}` or `{"time": {"duration_ms": 10000, "buckets": 10}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "RawWindowConfig")]
pub(super) enum WindowConfig {
    Count { calls: u32 },
    Time { duration_ms: u64, buckets: u32 },
}

/// `{"objective": 0.999, "long_window_ms": ..., "short_window_ms": ..., "factor": 14.4}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBurnRateRule")]
pub(super) struct BurnRateRule {
    objective: f64,
    long_window_ms: u64,
    short_window_ms: u64,
    factor: f64,
}

/// `{"fixed": {"duration_ms": 60000}}` or `{"exponential": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "RawOpenPolicy")]
pub(super) enum OpenPolicy {
    Fixed { duration_ms: u64 },
    Exponential { initial_ms: u64, max_ms: u64, multiplier: u32, jitter: f64 },
}

/// The half-open round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHalfOpenPolicy")]
pub(super) struct HalfOpenPolicy {
    probe_budget: u32,
    success_threshold: u32,
    max_wait_ms: u64,
    ramp: Option<RampPolicy>,
}

/// `{"stages_percent": [25, 50], "stage_ms": 60000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRampPolicy")]
pub(super) struct RampPolicy {
    stages_percent: Vec<u8>,
    stage_ms: u64,
}

/// The decider's health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHealthCheckPolicy")]
pub(super) struct HealthCheckPolicy {
    initial_interval_ms: u64,
    max_interval_ms: u64,
    successes_required: u32,
    closes_directly: bool,
}

/// The local overlay; an absent field takes the overlay's default (not the fleet's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LocalOverlayPolicy {
    trip: TripPolicy,
    open: OpenPolicy,
    half_open: HalfOpenPolicy,
}

impl Default for LocalOverlayPolicy {
    fn default() -> Self {
        (&core::LocalOverlayPolicy::default()).into()
    }
}

/// `last_known`, `local_only`, `fail_open`, `fail_closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OutagePolicy {
    LastKnown,
    LocalOnly,
    FailOpen,
    FailClosed,
}

/// `{"policy": "last_known", "grace_ms": 5000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOutageConfig")]
pub(super) struct OutageConfig {
    policy: OutagePolicy,
    grace_ms: u64,
}

// ---------------------------------------------------------------------------------------
// The envelope
// ---------------------------------------------------------------------------------------

/// Who put a config in the bucket: `{"kind": "deployed", "node": "n1"}`,
/// `{"kind": "operator", "actor": "...", "reason": "..."}` or `{"kind": "unknown"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub(super) enum ConfigSource {
    Deployed { node: Name<NodeId> },
    Operator { actor: String, reason: String },
    Unknown,
}

/// A config bucket value as written: `source` left out when there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ConfigEnvelopeOut {
    pub(super) version: u16,
    pub(super) config: BreakerConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<ConfigSource>,
}

/// A config bucket value as read: unknown fields refused; `config` an object; `source`
/// absent (or `null`) in values written before sources were recorded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigEnvelope {
    // Checked by `json::read` before this parse; named so that it is a known field.
    #[serde(rename = "version")]
    _version: u16,
    pub(super) config: ObjectOnly<BreakerConfig>,
    #[serde(default)]
    pub(super) source: Option<ConfigSource>,
}

// ---------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------

impl From<&core::BreakerConfig> for BreakerConfig {
    fn from(c: &core::BreakerConfig) -> Self {
        let core::BreakerConfig {
            version,
            trip,
            quorum,
            max_nodes,
            slow_call_threshold_ms,
            open,
            half_open,
            health_check,
            local,
            outage,
            seed,
        } = c;
        Self {
            version: *version,
            trip: trip.into(),
            quorum: *quorum,
            max_nodes: *max_nodes,
            slow_call_threshold_ms: *slow_call_threshold_ms,
            open: open.into(),
            half_open: half_open.into(),
            health_check: health_check.as_ref().map(Into::into),
            local: local.as_ref().map(Into::into),
            outage: outage.into(),
            seed: *seed,
        }
    }
}

impl From<BreakerConfig> for core::BreakerConfig {
    fn from(c: BreakerConfig) -> Self {
        Self {
            version: c.version,
            trip: c.trip.into(),
            quorum: c.quorum,
            max_nodes: c.max_nodes,
            slow_call_threshold_ms: c.slow_call_threshold_ms,
            open: c.open.into(),
            half_open: c.half_open.into(),
            health_check: c.health_check.map(Into::into),
            local: c.local.map(Into::into),
            outage: c.outage.into(),
            seed: c.seed,
        }
    }
}

impl From<&core::TripPolicy> for TripPolicy {
    fn from(t: &core::TripPolicy) -> Self {
        let core::TripPolicy {
            window,
            minimum_calls,
            failure_rate,
            slow_call_rate,
            consecutive_failures,
            burn_rate,
            max_evidence_age_ms,
        } = t;
        Self {
            window: window.into(),
            minimum_calls: *minimum_calls,
            failure_rate: *failure_rate,
            slow_call_rate: *slow_call_rate,
            consecutive_failures: *consecutive_failures,
            burn_rate: burn_rate.as_ref().map(Into::into),
            max_evidence_age_ms: *max_evidence_age_ms,
        }
    }
}

impl From<TripPolicy> for core::TripPolicy {
    fn from(t: TripPolicy) -> Self {
        Self {
            window: t.window.into(),
            minimum_calls: t.minimum_calls,
            failure_rate: t.failure_rate,
            slow_call_rate: t.slow_call_rate,
            consecutive_failures: t.consecutive_failures,
            burn_rate: t.burn_rate.map(Into::into),
            max_evidence_age_ms: t.max_evidence_age_ms,
        }
    }
}

impl From<&core::WindowConfig> for WindowConfig {
    fn from(w: &core::WindowConfig) -> Self {
        match *w {
            core::WindowConfig::Count { calls } => Self::Count { calls },
            core::WindowConfig::Time { duration_ms, buckets } => Self::Time { duration_ms, buckets },
        }
    }
}

impl From<WindowConfig> for core::WindowConfig {
    fn from(w: WindowConfig) -> Self {
        match w {
            WindowConfig::Count { calls } => Self::Count { calls },
            WindowConfig::Time { duration_ms, buckets } => Self::Time { duration_ms, buckets },
        }
    }
}

impl From<&core::BurnRateRule> for BurnRateRule {
    fn from(b: &core::BurnRateRule) -> Self {
        let core::BurnRateRule { objective, long_window_ms, short_window_ms, factor } = *b;
        Self { objective, long_window_ms, short_window_ms, factor }
    }
}

impl From<BurnRateRule> for core::BurnRateRule {
    fn from(b: BurnRateRule) -> Self {
        Self {
            objective: b.objective,
            long_window_ms: b.long_window_ms,
            short_window_ms: b.short_window_ms,
            factor: b.factor,
        }
    }
}

impl From<&core::OpenPolicy> for OpenPolicy {
    fn from(o: &core::OpenPolicy) -> Self {
        match *o {
            core::OpenPolicy::Fixed { duration_ms } => Self::Fixed { duration_ms },
            core::OpenPolicy::Exponential { initial_ms, max_ms, multiplier, jitter } => {
                Self::Exponential { initial_ms, max_ms, multiplier, jitter }
            }
        }
    }
}

impl From<OpenPolicy> for core::OpenPolicy {
    fn from(o: OpenPolicy) -> Self {
        match o {
            OpenPolicy::Fixed { duration_ms } => Self::Fixed { duration_ms },
            OpenPolicy::Exponential { initial_ms, max_ms, multiplier, jitter } => {
                Self::Exponential { initial_ms, max_ms, multiplier, jitter }
            }
        }
    }
}

impl From<&core::HalfOpenPolicy> for HalfOpenPolicy {
    fn from(h: &core::HalfOpenPolicy) -> Self {
        let core::HalfOpenPolicy { probe_budget, success_threshold, max_wait_ms, ramp } = h;
        Self {
            probe_budget: *probe_budget,
            success_threshold: *success_threshold,
            max_wait_ms: *max_wait_ms,
            ramp: ramp.as_ref().map(Into::into),
        }
    }
}

impl From<HalfOpenPolicy> for core::HalfOpenPolicy {
    fn from(h: HalfOpenPolicy) -> Self {
        Self {
            probe_budget: h.probe_budget,
            success_threshold: h.success_threshold,
            max_wait_ms: h.max_wait_ms,
            ramp: h.ramp.map(Into::into),
        }
    }
}

impl From<&core::RampPolicy> for RampPolicy {
    fn from(r: &core::RampPolicy) -> Self {
        let core::RampPolicy { stages_percent, stage_ms } = r;
        Self { stages_percent: stages_percent.clone(), stage_ms: *stage_ms }
    }
}

impl From<RampPolicy> for core::RampPolicy {
    fn from(r: RampPolicy) -> Self {
        Self { stages_percent: r.stages_percent, stage_ms: r.stage_ms }
    }
}

impl From<&core::HealthCheckPolicy> for HealthCheckPolicy {
    fn from(h: &core::HealthCheckPolicy) -> Self {
        let core::HealthCheckPolicy { initial_interval_ms, max_interval_ms, successes_required, closes_directly } = *h;
        Self { initial_interval_ms, max_interval_ms, successes_required, closes_directly }
    }
}

impl From<HealthCheckPolicy> for core::HealthCheckPolicy {
    fn from(h: HealthCheckPolicy) -> Self {
        Self {
            initial_interval_ms: h.initial_interval_ms,
            max_interval_ms: h.max_interval_ms,
            successes_required: h.successes_required,
            closes_directly: h.closes_directly,
        }
    }
}

impl From<&core::LocalOverlayPolicy> for LocalOverlayPolicy {
    fn from(l: &core::LocalOverlayPolicy) -> Self {
        let core::LocalOverlayPolicy { trip, open, half_open } = l;
        Self { trip: trip.into(), open: open.into(), half_open: half_open.into() }
    }
}

impl From<LocalOverlayPolicy> for core::LocalOverlayPolicy {
    fn from(l: LocalOverlayPolicy) -> Self {
        Self { trip: l.trip.into(), open: l.open.into(), half_open: l.half_open.into() }
    }
}

impl From<core::OutagePolicy> for OutagePolicy {
    fn from(p: core::OutagePolicy) -> Self {
        match p {
            core::OutagePolicy::LastKnown => Self::LastKnown,
            core::OutagePolicy::LocalOnly => Self::LocalOnly,
            core::OutagePolicy::FailOpen => Self::FailOpen,
            core::OutagePolicy::FailClosed => Self::FailClosed,
        }
    }
}

impl From<OutagePolicy> for core::OutagePolicy {
    fn from(p: OutagePolicy) -> Self {
        match p {
            OutagePolicy::LastKnown => Self::LastKnown,
            OutagePolicy::LocalOnly => Self::LocalOnly,
            OutagePolicy::FailOpen => Self::FailOpen,
            OutagePolicy::FailClosed => Self::FailClosed,
        }
    }
}

impl From<&core::OutageConfig> for OutageConfig {
    fn from(o: &core::OutageConfig) -> Self {
        let core::OutageConfig { policy, grace_ms } = *o;
        Self { policy: policy.into(), grace_ms }
    }
}

impl From<OutageConfig> for core::OutageConfig {
    fn from(o: OutageConfig) -> Self {
        Self { policy: o.policy.into(), grace_ms: o.grace_ms }
    }
}

impl From<&core::ConfigSource> for ConfigSource {
    fn from(s: &core::ConfigSource) -> Self {
        match s {
            core::ConfigSource::Deployed { node } => Self::Deployed { node: node.into() },
            core::ConfigSource::Operator { actor, reason } => {
                Self::Operator { actor: actor.clone(), reason: reason.clone() }
            }
            core::ConfigSource::Unknown => Self::Unknown,
        }
    }
}

impl From<ConfigSource> for core::ConfigSource {
    fn from(s: ConfigSource) -> Self {
        match s {
            ConfigSource::Deployed { node } => Self::Deployed { node: node.0 },
            ConfigSource::Operator { actor, reason } => Self::Operator { actor, reason },
            ConfigSource::Unknown => Self::Unknown,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The form a config is read in: each duration as `<name>_ms` or `<name>` (humantime)
// ---------------------------------------------------------------------------------------

/// The core's reading of a humantime duration (`HumanMillis`), and of a field given in
/// both forms: one rule for config files and the wire.
fn either(name: &str, ms: Option<u64>, text: Option<HumanMillis>) -> Result<Option<u64>, String> {
    HumanMillis::either(name, ms, text)
}

fn required(name: &str, ms: Option<u64>, text: Option<HumanMillis>) -> Result<u64, String> {
    HumanMillis::required(name, ms, text)
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBreakerConfig {
    version: u64,
    trip: TripPolicy,
    quorum: u32,
    max_nodes: u32,
    slow_call_threshold_ms: Option<u64>,
    slow_call_threshold: Option<HumanMillis>,
    open: OpenPolicy,
    half_open: HalfOpenPolicy,
    health_check: Option<HealthCheckPolicy>,
    local: Option<LocalOverlayPolicy>,
    outage: OutageConfig,
    seed: u64,
}

impl Default for RawBreakerConfig {
    fn default() -> Self {
        let BreakerConfig {
            version,
            trip,
            quorum,
            max_nodes,
            slow_call_threshold_ms: _,
            open,
            half_open,
            health_check,
            local,
            outage,
            seed,
        } = (&core::BreakerConfig::default()).into();
        Self {
            version,
            trip,
            quorum,
            max_nodes,
            slow_call_threshold_ms: None,
            slow_call_threshold: None,
            open,
            half_open,
            health_check,
            local,
            outage,
            seed,
        }
    }
}

impl TryFrom<RawBreakerConfig> for BreakerConfig {
    type Error = String;

    fn try_from(raw: RawBreakerConfig) -> Result<Self, String> {
        let slow_call_threshold_ms =
            either("slow_call_threshold", raw.slow_call_threshold_ms, raw.slow_call_threshold)?
                .or(core::BreakerConfig::default().slow_call_threshold_ms);
        Ok(Self {
            version: raw.version,
            trip: raw.trip,
            quorum: raw.quorum,
            max_nodes: raw.max_nodes,
            slow_call_threshold_ms,
            open: raw.open,
            half_open: raw.half_open,
            health_check: raw.health_check,
            local: raw.local,
            outage: raw.outage,
            seed: raw.seed,
        })
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTripPolicy {
    window: WindowConfig,
    minimum_calls: u32,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    consecutive_failures: Option<u32>,
    burn_rate: Option<BurnRateRule>,
    max_evidence_age_ms: Option<u64>,
    max_evidence_age: Option<HumanMillis>,
}

impl Default for RawTripPolicy {
    fn default() -> Self {
        let TripPolicy {
            window,
            minimum_calls,
            failure_rate,
            slow_call_rate,
            consecutive_failures,
            burn_rate,
            max_evidence_age_ms: _,
        } = (&core::TripPolicy::default()).into();
        Self {
            window,
            minimum_calls,
            failure_rate,
            slow_call_rate,
            consecutive_failures,
            burn_rate,
            max_evidence_age_ms: None,
            max_evidence_age: None,
        }
    }
}

impl TryFrom<RawTripPolicy> for TripPolicy {
    type Error = String;

    fn try_from(raw: RawTripPolicy) -> Result<Self, String> {
        let max_evidence_age_ms = either("max_evidence_age", raw.max_evidence_age_ms, raw.max_evidence_age)?
            .unwrap_or(core::TripPolicy::default().max_evidence_age_ms);
        Ok(Self {
            window: raw.window,
            minimum_calls: raw.minimum_calls,
            failure_rate: raw.failure_rate,
            slow_call_rate: raw.slow_call_rate,
            consecutive_failures: raw.consecutive_failures,
            burn_rate: raw.burn_rate,
            max_evidence_age_ms,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawWindowConfig {
    Count { calls: u32 },
    Time { duration_ms: Option<u64>, duration: Option<HumanMillis>, buckets: u32 },
}

impl TryFrom<RawWindowConfig> for WindowConfig {
    type Error = String;

    fn try_from(raw: RawWindowConfig) -> Result<Self, String> {
        Ok(match raw {
            RawWindowConfig::Count { calls } => Self::Count { calls },
            RawWindowConfig::Time { duration_ms, duration, buckets } => {
                Self::Time { duration_ms: required("duration", duration_ms, duration)?, buckets }
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurnRateRule {
    objective: f64,
    long_window_ms: Option<u64>,
    long_window: Option<HumanMillis>,
    short_window_ms: Option<u64>,
    short_window: Option<HumanMillis>,
    factor: f64,
}

impl TryFrom<RawBurnRateRule> for BurnRateRule {
    type Error = String;

    fn try_from(raw: RawBurnRateRule) -> Result<Self, String> {
        Ok(Self {
            objective: raw.objective,
            long_window_ms: required("long_window", raw.long_window_ms, raw.long_window)?,
            short_window_ms: required("short_window", raw.short_window_ms, raw.short_window)?,
            factor: raw.factor,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawOpenPolicy {
    Fixed {
        duration_ms: Option<u64>,
        duration: Option<HumanMillis>,
    },
    Exponential {
        initial_ms: Option<u64>,
        initial: Option<HumanMillis>,
        max_ms: Option<u64>,
        max: Option<HumanMillis>,
        multiplier: u32,
        jitter: f64,
    },
}

impl TryFrom<RawOpenPolicy> for OpenPolicy {
    type Error = String;

    fn try_from(raw: RawOpenPolicy) -> Result<Self, String> {
        Ok(match raw {
            RawOpenPolicy::Fixed { duration_ms, duration } => {
                Self::Fixed { duration_ms: required("duration", duration_ms, duration)? }
            }
            RawOpenPolicy::Exponential { initial_ms, initial, max_ms, max, multiplier, jitter } => Self::Exponential {
                initial_ms: required("initial", initial_ms, initial)?,
                max_ms: required("max", max_ms, max)?,
                multiplier,
                jitter,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHalfOpenPolicy {
    probe_budget: u32,
    success_threshold: u32,
    max_wait_ms: Option<u64>,
    max_wait: Option<HumanMillis>,
    ramp: Option<RampPolicy>,
}

impl Default for RawHalfOpenPolicy {
    fn default() -> Self {
        let HalfOpenPolicy { probe_budget, success_threshold, max_wait_ms: _, ramp } =
            (&core::HalfOpenPolicy::default()).into();
        Self { probe_budget, success_threshold, max_wait_ms: None, max_wait: None, ramp }
    }
}

impl TryFrom<RawHalfOpenPolicy> for HalfOpenPolicy {
    type Error = String;

    fn try_from(raw: RawHalfOpenPolicy) -> Result<Self, String> {
        Ok(Self {
            probe_budget: raw.probe_budget,
            success_threshold: raw.success_threshold,
            max_wait_ms: either("max_wait", raw.max_wait_ms, raw.max_wait)?
                .unwrap_or(core::HalfOpenPolicy::default().max_wait_ms),
            ramp: raw.ramp,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRampPolicy {
    stages_percent: Vec<u8>,
    stage_ms: Option<u64>,
    stage: Option<HumanMillis>,
}

impl TryFrom<RawRampPolicy> for RampPolicy {
    type Error = String;

    fn try_from(raw: RawRampPolicy) -> Result<Self, String> {
        Ok(Self { stages_percent: raw.stages_percent, stage_ms: required("stage", raw.stage_ms, raw.stage)? })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheckPolicy {
    initial_interval_ms: Option<u64>,
    initial_interval: Option<HumanMillis>,
    max_interval_ms: Option<u64>,
    max_interval: Option<HumanMillis>,
    successes_required: u32,
    closes_directly: bool,
}

impl TryFrom<RawHealthCheckPolicy> for HealthCheckPolicy {
    type Error = String;

    fn try_from(raw: RawHealthCheckPolicy) -> Result<Self, String> {
        Ok(Self {
            initial_interval_ms: required("initial_interval", raw.initial_interval_ms, raw.initial_interval)?,
            max_interval_ms: required("max_interval", raw.max_interval_ms, raw.max_interval)?,
            successes_required: raw.successes_required,
            closes_directly: raw.closes_directly,
        })
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawOutageConfig {
    policy: OutagePolicy,
    grace_ms: Option<u64>,
    grace: Option<HumanMillis>,
}

impl Default for RawOutageConfig {
    fn default() -> Self {
        Self { policy: core::OutageConfig::default().policy.into(), grace_ms: None, grace: None }
    }
}

impl TryFrom<RawOutageConfig> for OutageConfig {
    type Error = String;

    fn try_from(raw: RawOutageConfig) -> Result<Self, String> {
        Ok(Self {
            policy: raw.policy,
            grace_ms: either("grace", raw.grace_ms, raw.grace)?.unwrap_or(core::OutageConfig::default().grace_ms),
        })
    }
}
