//! Breaker configuration: the serde-friendly form users write, its validation into typed
//! errors naming the field, and the compiled form the machine runs on.
//!
//! Defaults follow resilience4j's `CircuitBreakerConfig` where it has one (count window of
//! 100 calls, minimum 100 calls, 50 % failure rate, 60 s open, 10 calls in half-open),
//! because it is the most widely read reference; where Fusebox differs, the field says why.
//!
//! The semantics every breaker library has to pick, picked here:
//! - thresholds are `>=`: a 50 % rule trips at exactly half the calls failing (resilience4j);
//! - rules are evaluated after every report, whatever it holds (resilience4j evaluates on
//!   every recorded call; a report is the fleet's unit of recording);
//! - the open period ends when `now >= opened_at + duration`, exactly at its duration;
//! - half-open closes on a *count* of probe successes; any probe failure reopens (gobreaker);
//! - excluded errors (`ignored`) are neutral: neither success nor failure, not in the
//!   minimum-calls count, no part of a failure run; an ignored half-open probe gives its
//!   slot back (gobreaker, resilience4j);
//! - a slow call that succeeded counts as `slow`; a slow failure counts as a failure only
//!   (resilience4j would count it in both rates);
//! - results from before a transition are dropped, by causality (see `machine`);
//! - every transition starts a fresh window; the backoff level resets only on closing.
//!
//! Every `<name>_ms` field may also be read as `<name>` in humantime text (`"60s"`), through
//! the twins in `raw`; configs are always written with `_ms` integers. [`BreakerConfig::builder`]
//! sets fields from [`Duration`](std::time::Duration)s (`builder`).

mod builder;
mod human;
mod raw;

use std::fmt;

pub use builder::{BreakerConfigBuilder, LocalOverlayBuilder};
pub use human::HumanMillis;

use serde::{Deserialize, Serialize};

/// The largest fleet a breaker can be configured for (bounds every per-node table).
pub const MAX_FLEET: u32 = 1024;
/// The most buckets a time window may have.
pub(super) const MAX_BUCKETS: u32 = 600;
/// The largest count window.
pub(super) const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The most burn-rate buckets (long window / bucket width).
pub(super) const MAX_BURN_BUCKETS: u64 = 256;
/// The highest config version: room for a change a second for 285 million years, and
/// small enough that a decision's JSON carries it exactly in every language (2^53).
pub const MAX_CONFIG_VERSION: u64 = (1 << 53) - 1;
/// The most stages of a progressive ramp.
pub(super) const MAX_RAMP_STAGES: usize = 8;

/// One breaker's configuration, shared by the whole fleet.
///
/// Written in serde's form with every duration in integer milliseconds (`duration_ms`);
/// read, each duration may instead be humantime text under the name without `_ms`
/// (`"duration": "60s"`), not both. Unknown fields are refused at every level. Every field
/// has a default; [`BreakerConfig::builder`] sets them from [`Duration`](std::time::Duration)s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawBreakerConfig")]
pub struct BreakerConfig {
    /// The config's declared version (1 and up), set by whoever tunes the breaker: when
    /// nodes disagree, the fleet runs the highest version deployed, or the one an operator
    /// set (`docs/tuning.md`). Every decision records the version it was made under.
    pub version: u64,
    /// When the fleet trips, on the evidence of every node.
    pub trip: TripPolicy,
    /// Distinct nodes that must have reported bad outcomes in the window before any rule
    /// trips the fleet, so that one sick node cannot open the breaker everywhere. 1 = any.
    pub quorum: u32,
    /// The largest fleet this breaker expects; bounds memory per breaker. Reports from more
    /// distinct nodes than this are refused and counted.
    pub max_nodes: u32,
    /// A call at least this long is `slow`. `None`: no call is slow, and the hot path never
    /// reads a clock.
    pub slow_call_threshold_ms: Option<u64>,
    /// How long the breaker stays open.
    pub open: OpenPolicy,
    /// How the breaker probes its way back.
    pub half_open: HalfOpenPolicy,
    /// Active health checks by the decider while open.
    pub health_check: Option<HealthCheckPolicy>,
    /// Each node's own breaker on its own evidence; `None` turns the overlay off.
    pub local: Option<LocalOverlayPolicy>,
    /// What a node does when it cannot reach the fleet.
    pub outage: OutageConfig,
    /// Seed of the jitter generator: the same seed gives the same open durations.
    pub seed: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            version: 1,
            trip: TripPolicy::default(),
            quorum: 1,
            max_nodes: 128,
            slow_call_threshold_ms: None,
            open: OpenPolicy::default(),
            half_open: HalfOpenPolicy::default(),
            health_check: None,
            local: Some(LocalOverlayPolicy::default()),
            outage: OutageConfig::default(),
            seed: 0,
        }
    }
}

/// The evidence window and the rules that trip on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawTripPolicy")]
pub struct TripPolicy {
    /// Which calls the rate rules look at.
    pub window: WindowConfig,
    /// Rate rules stay silent until the window holds this many decisive calls.
    pub minimum_calls: u32,
    /// Trip when `failed / decisive >= failure_rate`, in (0, 1].
    pub failure_rate: Option<f64>,
    /// Trip when `slow / decisive >= slow_call_rate`, in (0, 1]; needs
    /// `slow_call_threshold_ms`.
    pub slow_call_rate: Option<f64>,
    /// Trip when a node has seen this many failures in a row (per node: one node's streak
    /// is not interleaved with another's).
    pub consecutive_failures: Option<u32>,
    /// SLO error-budget burn rate over two windows.
    pub burn_rate: Option<BurnRateRule>,
    /// Outcomes older than this are not evidence: a replayed report older than this is
    /// not judged, and a count window and the consecutive-failure streaks forget reports
    /// once they are this old (a time window keeps its own duration), by a decider that
    /// decided all along and by one that just took over alike. The outcome stream keeps
    /// reports for 60 s by default, so a new decider could never see older ones. Default
    /// 60 000; at least 100. Left out of the serialised form while it is the default.
    #[serde(skip_serializing_if = "is_default_evidence_age")]
    pub max_evidence_age_ms: u64,
}

/// The default [`TripPolicy::max_evidence_age_ms`]: the outcome stream's default retention.
pub const DEFAULT_MAX_EVIDENCE_AGE_MS: u64 = 60_000;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_default_evidence_age(ms: &u64) -> bool {
    *ms == DEFAULT_MAX_EVIDENCE_AGE_MS
}

impl Default for TripPolicy {
    fn default() -> Self {
        Self {
            window: WindowConfig::Count { calls: 100 },
            minimum_calls: 100,
            failure_rate: Some(0.5),
            slow_call_rate: None,
            consecutive_failures: None,
            burn_rate: None,
            max_evidence_age_ms: DEFAULT_MAX_EVIDENCE_AGE_MS,
        }
    }
}

/// The evidence window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "raw::RawWindowConfig")]
pub enum WindowConfig {
    /// The last `calls` decisive calls, at the granularity of reports: the window keeps
    /// whole reports, dropping the oldest while the rest still hold `calls` calls.
    Count {
        /// Calls in the window.
        calls: u32,
    },
    /// The calls of the last `duration_ms`, in `buckets` buckets on the decider's clock.
    Time {
        /// Length of the window.
        duration_ms: u64,
        /// Number of buckets (resolution of expiry).
        buckets: u32,
    },
}

/// Google SRE-style multi-window burn-rate alerting, as a trip rule: trip when the error
/// rate is at least `factor` times the error budget over *both* the long and the short
/// window (the short window makes the rule stop firing soon after recovery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawBurnRateRule")]
pub struct BurnRateRule {
    /// The SLO, e.g. 0.999; the error budget is `1 - objective`. In (0, 1).
    pub objective: f64,
    /// The long window, e.g. 1 h.
    pub long_window_ms: u64,
    /// The short window, e.g. 5 min; at least 4 ms, shorter than the long window, and the
    /// long window at most 64 short windows.
    pub short_window_ms: u64,
    /// The burn factor, e.g. 14.4; `factor * (1 - objective)` must be at most 1.
    pub factor: f64,
}

/// How long the breaker stays open before probing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "raw::RawOpenPolicy")]
pub enum OpenPolicy {
    /// Always the same duration.
    Fixed {
        /// Open duration.
        duration_ms: u64,
    },
    /// `initial_ms * multiplier^level`, capped at `max_ms`, lengthened by up to
    /// `jitter * duration` drawn from the seeded generator (jitter never shortens, so the
    /// breaker is open at least the un-jittered duration unless the cap binds). The level
    /// rises each time a half-open round fails and returns to 0 when the breaker closes.
    Exponential {
        /// First open duration.
        initial_ms: u64,
        /// Longest open duration.
        max_ms: u64,
        /// Growth per failed round, at least 2.
        multiplier: u32,
        /// Extra random fraction, in [0, 1].
        jitter: f64,
    },
}

impl Default for OpenPolicy {
    fn default() -> Self {
        Self::Fixed { duration_ms: 60_000 }
    }
}

/// The half-open phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawHalfOpenPolicy")]
pub struct HalfOpenPolicy {
    /// Probes per half-open round for the whole fleet (not per node), allocated by the
    /// decider to nodes that showed demand. It bounds the probes in flight plus those that
    /// ended in a success or a failure: a probe that ends ignored (an excluded error) or is
    /// dropped without an outcome gives its slot back, so it can be used again in the round
    /// (gobreaker and resilience4j free an excluded call's slot too).
    pub probe_budget: u32,
    /// Probe successes that close the breaker (any probe failure reopens it); at most
    /// `probe_budget`.
    pub success_threshold: u32,
    /// A round not settled within this time reopens the breaker (at the same backoff
    /// level): no breaker waits in half-open forever (resilience4j's default waits forever).
    pub max_wait_ms: u64,
    /// Optional progressive ramp from half-open back to fully closed.
    pub ramp: Option<RampPolicy>,
}

impl Default for HalfOpenPolicy {
    fn default() -> Self {
        Self { probe_budget: 10, success_threshold: 5, max_wait_ms: 30_000, ramp: None }
    }
}

/// A progressive return to closed: each stage admits a percentage of calls for
/// `stage_ms`; the trip rules stay armed throughout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawRampPolicy")]
pub struct RampPolicy {
    /// Strictly increasing percentages in 1..=99, at most 8 stages.
    pub stages_percent: Vec<u8>,
    /// Duration of each stage.
    pub stage_ms: u64,
}

/// Active health checks run by the decider alone while the breaker is open, with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawHealthCheckPolicy")]
pub struct HealthCheckPolicy {
    /// Interval after the breaker opens, and after a success.
    pub initial_interval_ms: u64,
    /// The interval doubles after each failed check up to this.
    pub max_interval_ms: u64,
    /// Successes in a row that end the open period early.
    pub successes_required: u32,
    /// `true`: those successes close the breaker directly, replacing live probes;
    /// `false`: they start half-open early, complementing live probes.
    pub closes_directly: bool,
}

/// The local overlay: the same trip and recovery logic on one node's own evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalOverlayPolicy {
    /// Local trip rules (`burn_rate` included if wanted).
    pub trip: TripPolicy,
    /// Local open duration.
    pub open: OpenPolicy,
    /// Local half-open: the probe budget is this node's own.
    pub half_open: HalfOpenPolicy,
}

impl Default for LocalOverlayPolicy {
    fn default() -> Self {
        Self {
            trip: TripPolicy {
                window: WindowConfig::Count { calls: 50 },
                minimum_calls: 20,
                failure_rate: Some(0.5),
                ..TripPolicy::default()
            },
            open: OpenPolicy::Fixed { duration_ms: 10_000 },
            half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: 30_000, ramp: None },
        }
    }
}

/// What a node does while it cannot reach NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Keep the last fleet decision, plus the local overlay (the default).
    #[default]
    LastKnown,
    /// Ignore the fleet; only the local overlay decides (needs `local`).
    LocalOnly,
    /// Permit every call.
    FailOpen,
    /// Reject every call.
    FailClosed,
}

/// Outage handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RawOutageConfig")]
pub struct OutageConfig {
    /// The policy.
    pub policy: OutagePolicy,
    /// It applies only after the connection has been lost this long (brief blips change
    /// nothing).
    pub grace_ms: u64,
}

impl Default for OutageConfig {
    fn default() -> Self {
        Self { policy: OutagePolicy::LastKnown, grace_ms: 5_000 }
    }
}

/// A configuration that cannot run, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `half_open.probe_budget`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid breaker config: {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn fail<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError { field: field.into(), problem: problem.into() })
}

/// A rate in parts per million, compiled from a validated `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ppm(pub u32);

impl Ppm {
    /// One whole.
    pub const WHOLE: u64 = 1_000_000;

    /// Whether `part / total >= self`, exactly, in integers. False when `total` is 0.
    pub fn reached(self, part: u128, total: u128) -> bool {
        // `part * 1e6` and `ppm * total` cannot both overflow u128 for sums of u64 counts;
        // saturating keeps the comparison right at the extreme either way.
        total > 0 && part.saturating_mul(u128::from(Self::WHOLE)) >= u128::from(self.0).saturating_mul(total)
    }

    /// `value * self`, rounded down.
    pub fn of(self, value: u64) -> u64 {
        let scaled = u128::from(value) * u128::from(self.0) / u128::from(Self::WHOLE);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

fn rate(field: &str, value: f64) -> Result<Ppm, ConfigError> {
    if !(value > 0.0 && value <= 1.0) {
        return fail(field, format!("{value} is not a rate in (0, 1]"));
    }
    // In (0, 1] so the product is in (0, 1e6]; at least 1 ppm.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = (value * 1e6).round().max(1.0) as u32;
    Ok(Ppm(ppm))
}

fn positive(field: &str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return fail(field, "must be greater than 0");
    }
    Ok(value)
}

/// The compiled evidence window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// Last `calls` decisive calls.
    Count(u64),
    /// `buckets` buckets of `bucket_ms`.
    Time {
        /// Width of one bucket.
        bucket_ms: u64,
        /// Number of buckets.
        buckets: u32,
    },
}

/// The compiled burn-rate rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurnRate {
    /// Error rate that trips, in ppm: `factor * (1 - objective)`.
    pub threshold: Ppm,
    /// Bucket width.
    pub bucket_ms: u64,
    /// Buckets in the long window.
    pub long_buckets: u64,
    /// Buckets in the short window.
    pub short_buckets: u64,
}

/// Compiled trip rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The evidence window.
    pub window: Window,
    /// Decisive calls before rate rules apply.
    pub minimum_calls: u64,
    /// Failure-rate rule.
    pub failure_rate: Option<Ppm>,
    /// Slow-call-rate rule.
    pub slow_call_rate: Option<Ppm>,
    /// Consecutive-failures rule.
    pub consecutive_failures: Option<u64>,
    /// Burn-rate rule.
    pub burn_rate: Option<BurnRate>,
    /// Distinct bad nodes needed.
    pub quorum: u32,
    /// Evidence older than this is not judged.
    pub max_evidence_age_ms: u64,
}

/// Compiled open policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// Fixed duration.
    Fixed(u64),
    /// Exponential.
    Exponential {
        /// First duration.
        initial_ms: u64,
        /// Cap.
        max_ms: u64,
        /// Growth.
        multiplier: u64,
        /// Jitter fraction.
        jitter: Ppm,
    },
}

/// Compiled half-open policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probing {
    /// Probe budget per round.
    pub budget: u32,
    /// Successes that settle the round.
    pub success_threshold: u32,
    /// Longest round.
    pub max_wait_ms: u64,
    /// Ramp stages in per-mille admitted, with stage length.
    pub ramp: Option<(Vec<u16>, u64)>,
}

/// The compiled recovery cycle: rules, open durations and probing. The fleet and the local
/// overlay each run one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Trip rules.
    pub rules: Rules,
    /// Open durations.
    pub backoff: Backoff,
    /// Probing.
    pub probing: Probing,
}

/// Compiled health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChecks {
    /// First interval.
    pub initial_interval_ms: u64,
    /// Longest interval.
    pub max_interval_ms: u64,
    /// Successes that end the open period.
    pub successes_required: u32,
    /// Close directly instead of half-opening.
    pub closes_directly: bool,
}

/// A configuration that passed validation, in the form the machine runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    /// The declared version ([`BreakerConfig::version`]).
    pub version: u64,
    /// The fleet's cycle.
    pub fleet: Cycle,
    /// The local overlay's cycle.
    pub local: Option<Cycle>,
    /// Largest fleet.
    pub max_nodes: u32,
    /// Slow-call threshold for the hot path.
    pub slow_call_threshold_ms: Option<u64>,
    /// Health checks.
    pub health_check: Option<HealthChecks>,
    /// Outage handling.
    pub outage: OutageConfig,
    /// Jitter seed.
    pub seed: u64,
}

impl BreakerConfig {
    /// Checks every field and compiles the configuration. The error names the first field
    /// at fault.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        if self.version == 0 || self.version > MAX_CONFIG_VERSION {
            return fail("version", format!("{} is not in 1..={MAX_CONFIG_VERSION}", self.version));
        }
        if self.max_nodes == 0 || self.max_nodes > MAX_FLEET {
            return fail("max_nodes", format!("{} is not in 1..={MAX_FLEET}", self.max_nodes));
        }
        if self.quorum == 0 || self.quorum > self.max_nodes {
            return fail(
                "quorum",
                format!("{} is not in 1..=max_nodes ({}): no fleet could ever trip", self.quorum, self.max_nodes),
            );
        }
        if let Some(ms) = self.slow_call_threshold_ms {
            positive("slow_call_threshold_ms", ms)?;
        }
        let slow = self.slow_call_threshold_ms.is_some();
        let fleet = compile_cycle("", &self.trip, &self.open, &self.half_open, self.quorum, slow)?;
        let local = match &self.local {
            None => None,
            Some(l) => Some(compile_cycle("local.", &l.trip, &l.open, &l.half_open, 1, slow)?),
        };
        let health_check = match &self.health_check {
            None => None,
            Some(h) => {
                positive("health_check.initial_interval_ms", h.initial_interval_ms)?;
                if h.max_interval_ms < h.initial_interval_ms {
                    return fail("health_check.max_interval_ms", "is less than initial_interval_ms");
                }
                positive("health_check.successes_required", u64::from(h.successes_required))?;
                Some(HealthChecks {
                    initial_interval_ms: h.initial_interval_ms,
                    max_interval_ms: h.max_interval_ms,
                    successes_required: h.successes_required,
                    closes_directly: h.closes_directly,
                })
            }
        };
        if self.outage.policy == OutagePolicy::LocalOnly && self.local.is_none() {
            return fail("outage.policy", "local_only needs the local overlay (`local`)");
        }
        Ok(ValidConfig {
            version: self.version,
            fleet,
            local,
            max_nodes: self.max_nodes,
            slow_call_threshold_ms: self.slow_call_threshold_ms,
            health_check,
            outage: self.outage,
            seed: self.seed,
        })
    }
}

fn compile_cycle(
    at: &str,
    trip: &TripPolicy,
    open: &OpenPolicy,
    half_open: &HalfOpenPolicy,
    quorum: u32,
    slow_calls_classified: bool,
) -> Result<Cycle, ConfigError> {
    let f = |name: &str| format!("{at}{name}");
    let window = match trip.window {
        WindowConfig::Count { calls } => {
            if calls == 0 || calls > MAX_WINDOW_CALLS {
                return fail(f("trip.window.calls"), format!("{calls} is not in 1..={MAX_WINDOW_CALLS}"));
            }
            if trip.minimum_calls > calls {
                return fail(
                    f("trip.minimum_calls"),
                    format!(
                        "{} is more than the window's {calls} calls: rate rules could never fire",
                        trip.minimum_calls
                    ),
                );
            }
            Window::Count(u64::from(calls))
        }
        WindowConfig::Time { duration_ms, buckets } => {
            if buckets == 0 || buckets > MAX_BUCKETS {
                return fail(f("trip.window.buckets"), format!("{buckets} is not in 1..={MAX_BUCKETS}"));
            }
            if duration_ms < u64::from(buckets) {
                return fail(f("trip.window.duration_ms"), "is shorter than 1 ms per bucket (an empty window)");
            }
            Window::Time { bucket_ms: duration_ms / u64::from(buckets), buckets }
        }
    };
    if trip.max_evidence_age_ms < 100 {
        return fail(f("trip.max_evidence_age_ms"), format!("{} ms is less than 100 ms", trip.max_evidence_age_ms));
    }
    let failure_rate = trip.failure_rate.map(|r| rate(&f("trip.failure_rate"), r)).transpose()?;
    let slow_call_rate = trip.slow_call_rate.map(|r| rate(&f("trip.slow_call_rate"), r)).transpose()?;
    if slow_call_rate.is_some() && !slow_calls_classified {
        return fail(f("trip.slow_call_rate"), "needs slow_call_threshold_ms to classify slow calls");
    }
    let consecutive_failures =
        trip.consecutive_failures.map(|n| positive(&f("trip.consecutive_failures"), u64::from(n))).transpose()?;
    let burn_rate = trip.burn_rate.as_ref().map(|b| compile_burn(&f("trip.burn_rate"), b)).transpose()?;
    if failure_rate.is_none() && slow_call_rate.is_none() && consecutive_failures.is_none() && burn_rate.is_none() {
        return fail(f("trip"), "no trip rule is set: the breaker could never open");
    }
    let backoff = match *open {
        OpenPolicy::Fixed { duration_ms } => Backoff::Fixed(positive(&f("open.duration_ms"), duration_ms)?),
        OpenPolicy::Exponential { initial_ms, max_ms, multiplier, jitter } => {
            positive(&f("open.initial_ms"), initial_ms)?;
            if max_ms < initial_ms {
                return fail(f("open.max_ms"), "is less than initial_ms");
            }
            if multiplier < 2 {
                return fail(f("open.multiplier"), "must be at least 2");
            }
            if !(0.0..=1.0).contains(&jitter) {
                return fail(f("open.jitter"), format!("{jitter} is not in [0, 1]"));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let jitter = Ppm((jitter * 1e6).round() as u32);
            Backoff::Exponential { initial_ms, max_ms, multiplier: u64::from(multiplier), jitter }
        }
    };
    if half_open.probe_budget == 0 {
        return fail(f("half_open.probe_budget"), "must be at least 1: the breaker could never close");
    }
    if half_open.success_threshold == 0 || half_open.success_threshold > half_open.probe_budget {
        return fail(
            f("half_open.success_threshold"),
            format!("{} is not in 1..=probe_budget ({})", half_open.success_threshold, half_open.probe_budget),
        );
    }
    positive(&f("half_open.max_wait_ms"), half_open.max_wait_ms)?;
    let ramp = match &half_open.ramp {
        None => None,
        Some(r) => {
            let field = f("half_open.ramp.stages_percent");
            if r.stages_percent.is_empty() || r.stages_percent.len() > MAX_RAMP_STAGES {
                return fail(field, format!("needs 1..={MAX_RAMP_STAGES} stages"));
            }
            if r.stages_percent.iter().any(|p| !(1..=99).contains(p)) {
                return fail(field, "every stage must be in 1..=99 percent");
            }
            if r.stages_percent.windows(2).any(|w| w[0] >= w[1]) {
                return fail(field, "stages must strictly increase");
            }
            positive(&f("half_open.ramp.stage_ms"), r.stage_ms)?;
            let per_mille = r.stages_percent.iter().map(|p| u16::from(*p) * 10).collect();
            Some((per_mille, r.stage_ms))
        }
    };
    Ok(Cycle {
        rules: Rules {
            window,
            minimum_calls: u64::from(trip.minimum_calls),
            failure_rate,
            slow_call_rate,
            consecutive_failures,
            burn_rate,
            quorum,
            max_evidence_age_ms: trip.max_evidence_age_ms,
        },
        backoff,
        probing: Probing {
            budget: half_open.probe_budget,
            success_threshold: half_open.success_threshold,
            max_wait_ms: half_open.max_wait_ms,
            ramp,
        },
    })
}

fn compile_burn(at: &str, b: &BurnRateRule) -> Result<BurnRate, ConfigError> {
    if !(b.objective > 0.0 && b.objective < 1.0) {
        return fail(format!("{at}.objective"), format!("{} is not in (0, 1)", b.objective));
    }
    if b.short_window_ms < 4 {
        return fail(format!("{at}.short_window_ms"), "must be at least 4 ms");
    }
    if b.long_window_ms <= b.short_window_ms {
        return fail(format!("{at}.long_window_ms"), "must be longer than short_window_ms");
    }
    let bucket_ms = b.short_window_ms / 4;
    let long_buckets = b.long_window_ms.div_ceil(bucket_ms);
    if long_buckets > MAX_BURN_BUCKETS {
        return fail(format!("{at}.long_window_ms"), "is more than 64 short windows");
    }
    let threshold = (1.0 - b.objective) * b.factor;
    if !(b.factor > 0.0 && threshold <= 1.0) {
        return fail(
            format!("{at}.factor"),
            format!("{} times the error budget is not a rate in (0, 1]: the rule could never fire", b.factor),
        );
    }
    Ok(BurnRate { threshold: rate(&format!("{at}.factor"), threshold)?, bucket_ms, long_buckets, short_buckets: 4 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn field_of(config: &BreakerConfig) -> String {
        config.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid() {
        let valid = BreakerConfig::default().validate().unwrap();
        assert_eq!(valid.fleet.rules.failure_rate, Some(Ppm(500_000)));
        assert_eq!(valid.fleet.rules.window, Window::Count(100));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let base = BreakerConfig::default;
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (
                BreakerConfig { trip: TripPolicy { failure_rate: Some(0.0), ..TripPolicy::default() }, ..base() },
                "trip.failure_rate",
            ),
            (
                BreakerConfig { trip: TripPolicy { failure_rate: Some(1.5), ..TripPolicy::default() }, ..base() },
                "trip.failure_rate",
            ),
            (
                BreakerConfig { trip: TripPolicy { failure_rate: Some(f64::NAN), ..TripPolicy::default() }, ..base() },
                "trip.failure_rate",
            ),
            (
                BreakerConfig {
                    trip: TripPolicy { window: WindowConfig::Count { calls: 0 }, ..TripPolicy::default() },
                    ..base()
                },
                "trip.window.calls",
            ),
            (
                BreakerConfig {
                    trip: TripPolicy {
                        window: WindowConfig::Time { duration_ms: 5, buckets: 10 },
                        ..TripPolicy::default()
                    },
                    ..base()
                },
                "trip.window.duration_ms",
            ),
            (
                BreakerConfig { trip: TripPolicy { minimum_calls: 101, ..TripPolicy::default() }, ..base() },
                "trip.minimum_calls",
            ),
            (
                BreakerConfig { trip: TripPolicy { slow_call_rate: Some(0.5), ..TripPolicy::default() }, ..base() },
                "trip.slow_call_rate",
            ),
            (BreakerConfig { trip: TripPolicy { failure_rate: None, ..TripPolicy::default() }, ..base() }, "trip"),
            (
                BreakerConfig {
                    half_open: HalfOpenPolicy { probe_budget: 0, success_threshold: 0, ..HalfOpenPolicy::default() },
                    ..base()
                },
                "half_open.probe_budget",
            ),
            (
                BreakerConfig {
                    half_open: HalfOpenPolicy { success_threshold: 11, ..HalfOpenPolicy::default() },
                    ..base()
                },
                "half_open.success_threshold",
            ),
            (BreakerConfig { quorum: 129, ..base() }, "quorum"),
            (BreakerConfig { quorum: 0, ..base() }, "quorum"),
            (BreakerConfig { max_nodes: 0, ..base() }, "max_nodes"),
            (BreakerConfig { open: OpenPolicy::Fixed { duration_ms: 0 }, ..base() }, "open.duration_ms"),
            (
                BreakerConfig {
                    open: OpenPolicy::Exponential { initial_ms: 10, max_ms: 5, multiplier: 2, jitter: 0.1 },
                    ..base()
                },
                "open.max_ms",
            ),
            (
                BreakerConfig {
                    open: OpenPolicy::Exponential { initial_ms: 10, max_ms: 50, multiplier: 2, jitter: 1.1 },
                    ..base()
                },
                "open.jitter",
            ),
            (
                BreakerConfig {
                    outage: OutageConfig { policy: OutagePolicy::LocalOnly, grace_ms: 1 },
                    local: None,
                    ..base()
                },
                "outage.policy",
            ),
            (
                BreakerConfig {
                    local: Some(LocalOverlayPolicy {
                        half_open: HalfOpenPolicy { max_wait_ms: 0, ..HalfOpenPolicy::default() },
                        ..LocalOverlayPolicy::default()
                    }),
                    ..base()
                },
                "local.half_open.max_wait_ms",
            ),
            (
                BreakerConfig {
                    half_open: HalfOpenPolicy {
                        ramp: Some(RampPolicy { stages_percent: vec![50, 20], stage_ms: 10 }),
                        ..HalfOpenPolicy::default()
                    },
                    ..base()
                },
                "half_open.ramp.stages_percent",
            ),
            (
                BreakerConfig {
                    trip: TripPolicy {
                        burn_rate: Some(BurnRateRule {
                            objective: 0.999,
                            long_window_ms: 3_600_000,
                            short_window_ms: 300_000,
                            factor: 2000.0,
                        }),
                        ..TripPolicy::default()
                    },
                    ..base()
                },
                "trip.burn_rate.factor",
            ),
            (
                BreakerConfig {
                    trip: TripPolicy {
                        burn_rate: Some(BurnRateRule {
                            objective: 1.0,
                            long_window_ms: 3_600_000,
                            short_window_ms: 300_000,
                            factor: 14.4,
                        }),
                        ..TripPolicy::default()
                    },
                    ..base()
                },
                "trip.burn_rate.objective",
            ),
            (
                BreakerConfig {
                    health_check: Some(HealthCheckPolicy {
                        initial_interval_ms: 100,
                        max_interval_ms: 50,
                        successes_required: 1,
                        closes_directly: false,
                    }),
                    ..base()
                },
                "health_check.max_interval_ms",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field, "{config:?}");
        }
    }

    #[test]
    fn json_with_defaults_and_unknown_fields() {
        let c: BreakerConfig = serde_json::from_str(r#"{"quorum": 2, "trip": {"consecutive_failures": 5}}"#).unwrap();
        assert_eq!(c.quorum, 2);
        assert_eq!(c.trip.consecutive_failures, Some(5));
        assert_eq!(c.trip.failure_rate, Some(0.5), "unset fields keep their defaults");
        let err = serde_json::from_str::<BreakerConfig>(r#"{"quorom": 2}"#).unwrap_err();
        assert!(err.to_string().contains("quorom"), "{err}");
        let round: BreakerConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn ppm_thresholds_are_inclusive_and_exact() {
        let half = Ppm(500_000);
        assert!(half.reached(50, 100));
        assert!(!half.reached(49, 100));
        assert!(!half.reached(0, 0));
        assert!(Ppm(1).reached(1, 1_000_000));
        assert!(half.reached(u128::from(u64::MAX), u128::from(u64::MAX)), "no overflow at the top");
        let burn = BurnRateRule { objective: 0.999, long_window_ms: 3_600_000, short_window_ms: 300_000, factor: 14.4 };
        let c = compile_burn("b", &burn).unwrap();
        assert_eq!(c.threshold, Ppm(14_400));
        assert_eq!((c.bucket_ms, c.long_buckets), (75_000, 48));
    }
}
