//! The form a config is read in, before it becomes the public types: every `<name>_ms`
//! integer of the serde form may also be written `<name>` as humantime text (`"60s"`),
//! giving both is an error, and unknown fields stay errors that name them.
//!
//! Each public type with a duration reads through a twin here (`#[serde(try_from)]`), so
//! serialisation is untouched: configs are still written with `_ms` integers only, the
//! wire format other languages read. A twin holds each duration as the two optional keys,
//! and every other field as the public type has it, defaulting to the public default.
//!
//! A new plain field (no duration) of a type with a twin is three lines here, each one the
//! compiler asks for: its declaration in the twin, `name: defaults.name` in the twin's
//! `Default`, and `name: raw.name` in the conversion.

use serde::Deserialize;

use super::human::HumanMillis;
use super::{
    BreakerConfig, BurnRateRule, HalfOpenPolicy, HealthCheckPolicy, LocalOverlayPolicy, OpenPolicy, OutageConfig,
    RampPolicy, TripPolicy, WindowConfig,
};

fn either(name: &str, ms: Option<u64>, text: Option<HumanMillis>) -> Result<Option<u64>, String> {
    HumanMillis::either(name, ms, text)
}

fn required(name: &str, ms: Option<u64>, text: Option<HumanMillis>) -> Result<u64, String> {
    HumanMillis::required(name, ms, text)
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawBreakerConfig {
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
        let defaults = BreakerConfig::default();
        Self {
            version: defaults.version,
            trip: defaults.trip,
            quorum: defaults.quorum,
            max_nodes: defaults.max_nodes,
            slow_call_threshold_ms: None,
            slow_call_threshold: None,
            open: defaults.open,
            half_open: defaults.half_open,
            health_check: defaults.health_check,
            local: defaults.local,
            outage: defaults.outage,
            seed: defaults.seed,
        }
    }
}

impl TryFrom<RawBreakerConfig> for BreakerConfig {
    type Error = String;

    fn try_from(raw: RawBreakerConfig) -> Result<Self, String> {
        let slow_call_threshold_ms =
            either("slow_call_threshold", raw.slow_call_threshold_ms, raw.slow_call_threshold)?
                .or(BreakerConfig::default().slow_call_threshold_ms);
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
pub(super) struct RawTripPolicy {
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
        let defaults = TripPolicy::default();
        Self {
            window: defaults.window,
            minimum_calls: defaults.minimum_calls,
            failure_rate: defaults.failure_rate,
            slow_call_rate: defaults.slow_call_rate,
            consecutive_failures: defaults.consecutive_failures,
            burn_rate: defaults.burn_rate,
            max_evidence_age_ms: None,
            max_evidence_age: None,
        }
    }
}

impl TryFrom<RawTripPolicy> for TripPolicy {
    type Error = String;

    fn try_from(raw: RawTripPolicy) -> Result<Self, String> {
        let max_evidence_age_ms = either("max_evidence_age", raw.max_evidence_age_ms, raw.max_evidence_age)?
            .unwrap_or(TripPolicy::default().max_evidence_age_ms);
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
pub(super) enum RawWindowConfig {
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
pub(super) struct RawBurnRateRule {
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
pub(super) enum RawOpenPolicy {
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
pub(super) struct RawHalfOpenPolicy {
    probe_budget: u32,
    success_threshold: u32,
    max_wait_ms: Option<u64>,
    max_wait: Option<HumanMillis>,
    ramp: Option<RampPolicy>,
}

impl Default for RawHalfOpenPolicy {
    fn default() -> Self {
        let defaults = HalfOpenPolicy::default();
        Self {
            probe_budget: defaults.probe_budget,
            success_threshold: defaults.success_threshold,
            max_wait_ms: None,
            max_wait: None,
            ramp: defaults.ramp,
        }
    }
}

impl TryFrom<RawHalfOpenPolicy> for HalfOpenPolicy {
    type Error = String;

    fn try_from(raw: RawHalfOpenPolicy) -> Result<Self, String> {
        Ok(Self {
            probe_budget: raw.probe_budget,
            success_threshold: raw.success_threshold,
            max_wait_ms: either("max_wait", raw.max_wait_ms, raw.max_wait)?
                .unwrap_or(HalfOpenPolicy::default().max_wait_ms),
            ramp: raw.ramp,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRampPolicy {
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
pub(super) struct RawHealthCheckPolicy {
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
pub(super) struct RawOutageConfig {
    policy: super::OutagePolicy,
    grace_ms: Option<u64>,
    grace: Option<HumanMillis>,
}

impl Default for RawOutageConfig {
    fn default() -> Self {
        Self { policy: OutageConfig::default().policy, grace_ms: None, grace: None }
    }
}

impl TryFrom<RawOutageConfig> for OutageConfig {
    type Error = String;

    fn try_from(raw: RawOutageConfig) -> Result<Self, String> {
        Ok(Self {
            policy: raw.policy,
            grace_ms: either("grace", raw.grace_ms, raw.grace)?.unwrap_or(OutageConfig::default().grace_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(json: &str) -> Result<BreakerConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    /// Every `_ms` field of the serde form, written as text instead.
    const EVERY_DURATION_AS_TEXT: &str = r#"{
        "slow_call_threshold": "250ms",
        "trip": {
            "window": {"time": {"duration": "10s", "buckets": 10}},
            "minimum_calls": 10,
            "slow_call_rate": 0.5,
            "max_evidence_age": "2m",
            "burn_rate": {"objective": 0.999, "long_window": "1h", "short_window": "5m", "factor": 14.4}
        },
        "open": {"exponential": {"initial": "1s", "max": "5m", "multiplier": 2, "jitter": 0.1}},
        "half_open": {"max_wait": "20s", "ramp": {"stages_percent": [25, 50], "stage": "1m 30s"}},
        "health_check": {"initial_interval": "2s", "max_interval": "1m", "successes_required": 2, "closes_directly": false},
        "local": {"open": {"fixed": {"duration": "10s"}}, "half_open": {"max_wait": "15s"}},
        "outage": {"policy": "fail_open", "grace": "1s 500ms"}
    }"#;

    #[test]
    fn every_duration_reads_as_text_and_equals_its_millis() {
        let text = read(EVERY_DURATION_AS_TEXT).unwrap();
        let millis = read(
            r#"{
            "slow_call_threshold_ms": 250,
            "trip": {
                "window": {"time": {"duration_ms": 10000, "buckets": 10}},
                "minimum_calls": 10,
                "slow_call_rate": 0.5,
                "max_evidence_age_ms": 120000,
                "burn_rate": {"objective": 0.999, "long_window_ms": 3600000, "short_window_ms": 300000, "factor": 14.4}
            },
            "open": {"exponential": {"initial_ms": 1000, "max_ms": 300000, "multiplier": 2, "jitter": 0.1}},
            "half_open": {"max_wait_ms": 20000, "ramp": {"stages_percent": [25, 50], "stage_ms": 90000}},
            "health_check": {"initial_interval_ms": 2000, "max_interval_ms": 60000, "successes_required": 2, "closes_directly": false},
            "local": {"open": {"fixed": {"duration_ms": 10000}}, "half_open": {"max_wait_ms": 15000}},
            "outage": {"policy": "fail_open", "grace_ms": 1500}
        }"#,
        )
        .unwrap();
        assert_eq!(text, millis);
        assert_eq!(text.outage.grace_ms, 1_500);
        assert_eq!(text.half_open.ramp.as_ref().map(|r| r.stage_ms), Some(90_000));
        assert!(text.validate().is_ok());
    }

    #[test]
    fn writing_keeps_the_millis_form() {
        let config = read(EVERY_DURATION_AS_TEXT).unwrap();
        let written = serde_json::to_value(&config).unwrap();
        assert_eq!(written["open"]["exponential"]["initial_ms"], 1000);
        assert_eq!(written["outage"]["grace_ms"], 1500);
        assert_eq!(written["trip"]["max_evidence_age_ms"], 120_000);
        let text = written.to_string();
        for human in
            ["\"duration\"", "\"initial\"", "\"max\"", "\"max_wait\"", "\"grace\"", "\"stage\"", "\"long_window\""]
        {
            assert!(!text.contains(human), "{human} written in {text}");
        }
        assert_eq!(read(&text).unwrap(), config, "and it reads back");
        // The default config's exact form is the one docs/wire-format.md shows.
        let default = serde_json::to_value(BreakerConfig::default()).unwrap();
        assert_eq!(default["open"], serde_json::json!({"fixed": {"duration_ms": 60000}}));
        assert_eq!(default["outage"], serde_json::json!({"policy": "last_known", "grace_ms": 5000}));
        assert_eq!(default["slow_call_threshold_ms"], serde_json::Value::Null);
        assert!(default["trip"].get("max_evidence_age_ms").is_none(), "still left out while default");
    }

    #[test]
    fn both_forms_of_one_duration_is_an_error_naming_both() {
        for (json, name) in [
            (r#"{"open": {"fixed": {"duration_ms": 1000, "duration": "1s"}}}"#, "duration"),
            (r#"{"outage": {"grace_ms": 1, "grace": "1s"}}"#, "grace"),
            (r#"{"slow_call_threshold_ms": 1, "slow_call_threshold": "1s"}"#, "slow_call_threshold"),
            (r#"{"trip": {"max_evidence_age_ms": 1000, "max_evidence_age": "1s"}}"#, "max_evidence_age"),
            (r#"{"half_open": {"max_wait_ms": 1000, "max_wait": "1s"}}"#, "max_wait"),
        ] {
            let err = read(json).unwrap_err();
            assert!(err.contains(&format!("`{name}_ms` and `{name}` are both given")), "{json}: {err}");
        }
        // `null` is not giving it.
        let c = read(r#"{"slow_call_threshold_ms": null, "slow_call_threshold": "1s"}"#).unwrap();
        assert_eq!(c.slow_call_threshold_ms, Some(1_000));
    }

    #[test]
    fn required_durations_need_one_form() {
        let err = read(r#"{"open": {"fixed": {}}}"#).unwrap_err();
        assert!(err.contains("missing field `duration_ms` (or `duration`)"), "{err}");
        let err = read(r#"{"half_open": {"ramp": {"stages_percent": [50]}}}"#).unwrap_err();
        assert!(err.contains("missing field `stage_ms` (or `stage`)"), "{err}");
    }

    #[test]
    fn typos_and_wrong_types_stay_errors() {
        for (json, named) in [
            (r#"{"quorom": 2}"#, "quorom"),
            (r#"{"open": {"fixed": {"duraton": "1s"}}}"#, "duraton"),
            (r#"{"outage": {"grace_s": 1}}"#, "grace_s"),
            (r#"{"trip": {"failure_rat": 0.5}}"#, "failure_rat"),
            (r#"{"local": {"trip": {"window": {"count": {"call": 5}}}}}"#, "call"),
            (r#"{"open": {"fixd": {"duration": "1s"}}}"#, "fixd"),
        ] {
            let err = read(json).unwrap_err();
            assert!(err.contains(&format!("`{named}`")), "{json}: {err}");
        }
        let err = read(r#"{"open": {"fixed": {"duration": "6Os"}}}"#).unwrap_err();
        assert!(err.contains(r#"invalid duration "6Os""#), "{err}");
        let err = read(r#"{"open": {"fixed": {"duration": 60000}}}"#).unwrap_err();
        assert!(err.contains("expected a duration such as"), "{err}");
        let err = read(r#"{"open": {"fixed": {"duration_ms": "60s"}}}"#).unwrap_err();
        assert!(err.contains("invalid type: string"), "the `_ms` keys stay integers: {err}");
    }

    #[test]
    fn unset_fields_keep_the_public_defaults() {
        assert_eq!(read("{}").unwrap(), BreakerConfig::default());
        let c = read(
            r#"{"trip": {"minimum_calls": 3}, "half_open": {"probe_budget": 4}, "outage": {"policy": "fail_open"}}"#,
        )
        .unwrap();
        assert_eq!(c.trip, TripPolicy { minimum_calls: 3, ..TripPolicy::default() });
        assert_eq!(c.half_open, HalfOpenPolicy { probe_budget: 4, ..HalfOpenPolicy::default() });
        assert_eq!(c.outage, OutageConfig { policy: super::super::OutagePolicy::FailOpen, ..OutageConfig::default() });
        let local = read(r#"{"local": {}}"#).unwrap().local;
        assert_eq!(local, Some(LocalOverlayPolicy::default()), "the overlay's own defaults, as before");
    }
}
