//! [`BreakerConfigBuilder`]: a [`BreakerConfig`] set field by field with
//! [`Duration`]s, checked when built. The setters of the trip/open/half-open cycle are the
//! same for the fleet and for the local overlay ([`LocalOverlayBuilder`]), so they are
//! written once (`cycle_setters!`).

use std::time::Duration;

use super::human::whole_millis;
use super::{
    BreakerConfig, BurnRateRule, ConfigError, HalfOpenPolicy, HealthCheckPolicy, LocalOverlayPolicy, OpenPolicy,
    OutageConfig, OutagePolicy, RampPolicy, TripPolicy, WindowConfig,
};

impl BreakerConfig {
    /// A builder starting from the defaults; [`BreakerConfigBuilder::build`] validates.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder::from(Self::default())
    }
}

/// The first field a builder could not set, kept until `build` reports it.
#[derive(Debug, Clone)]
struct FirstError {
    /// Prepended to field names: `""` for the fleet, `"local."` for the overlay.
    prefix: &'static str,
    error: Option<ConfigError>,
}

impl FirstError {
    fn new(prefix: &'static str) -> Self {
        Self { prefix, error: None }
    }

    /// `duration` in whole milliseconds for `field`, or `None` with the error kept.
    fn millis(&mut self, field: &str, duration: Duration) -> Option<u64> {
        match whole_millis(duration) {
            Ok(ms) => Some(ms),
            Err(problem) => {
                self.error.get_or_insert(ConfigError { field: format!("{}{field}", self.prefix), problem });
                None
            }
        }
    }
}

/// The setters of one trip/open/half-open cycle; the type they go in has `trip_mut`,
/// `open_mut`, `half_open_mut` and a `FirstError` named `errors`.
macro_rules! cycle_setters {
    () => {
        /// Rate rules look at the last `calls` decisive calls (`trip.window.count.calls`).
        pub fn count_window(mut self, calls: u32) -> Self {
            self.trip_mut().window = WindowConfig::Count { calls };
            self
        }

        /// Rate rules look at the calls of the last `duration`, kept in `buckets` buckets
        /// (`trip.window.time`).
        pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
            if let Some(duration_ms) = self.errors.millis("trip.window.duration_ms", duration) {
                self.trip_mut().window = WindowConfig::Time { duration_ms, buckets };
            }
            self
        }

        /// Rate rules stay silent until the window holds this many decisive calls
        /// (`trip.minimum_calls`).
        pub fn minimum_calls(mut self, calls: u32) -> Self {
            self.trip_mut().minimum_calls = calls;
            self
        }

        /// Trip when at least this fraction of decisive calls failed, in (0, 1]
        /// (`trip.failure_rate`).
        pub fn failure_rate(mut self, rate: f64) -> Self {
            self.trip_mut().failure_rate = Some(rate);
            self
        }

        /// No failure-rate rule (another rule must be set).
        pub fn no_failure_rate(mut self) -> Self {
            self.trip_mut().failure_rate = None;
            self
        }

        /// Trip when at least this fraction of decisive calls was slow, in (0, 1]
        /// (`trip.slow_call_rate`); slow calls need the fleet's slow-call threshold.
        pub fn slow_call_rate(mut self, rate: f64) -> Self {
            self.trip_mut().slow_call_rate = Some(rate);
            self
        }

        /// Trip when a node has seen this many failures in a row
        /// (`trip.consecutive_failures`).
        pub fn consecutive_failures(mut self, failures: u32) -> Self {
            self.trip_mut().consecutive_failures = Some(failures);
            self
        }

        /// Trip when the error budget of the SLO `objective` burns at least `factor` times
        /// too fast over both windows (`trip.burn_rate`, see [`BurnRateRule`]).
        pub fn burn_rate(mut self, objective: f64, long_window: Duration, short_window: Duration, factor: f64) -> Self {
            let long = self.errors.millis("trip.burn_rate.long_window_ms", long_window);
            let short = self.errors.millis("trip.burn_rate.short_window_ms", short_window);
            if let (Some(long_window_ms), Some(short_window_ms)) = (long, short) {
                self.trip_mut().burn_rate = Some(BurnRateRule { objective, long_window_ms, short_window_ms, factor });
            }
            self
        }

        /// Outcomes older than this are not evidence (`trip.max_evidence_age_ms`).
        pub fn max_evidence_age(mut self, age: Duration) -> Self {
            if let Some(ms) = self.errors.millis("trip.max_evidence_age_ms", age) {
                self.trip_mut().max_evidence_age_ms = ms;
            }
            self
        }

        /// Stay open for `duration` every time (`open.fixed`).
        pub fn open_for(mut self, duration: Duration) -> Self {
            if let Some(duration_ms) = self.errors.millis("open.duration_ms", duration) {
                *self.open_mut() = OpenPolicy::Fixed { duration_ms };
            }
            self
        }

        /// Stay open `initial * multiplier^level`, at most `max`, lengthened by up to
        /// `jitter` of it (`open.exponential`, see [`OpenPolicy::Exponential`]).
        pub fn exponential_backoff(mut self, initial: Duration, max: Duration, multiplier: u32, jitter: f64) -> Self {
            let initial_ms = self.errors.millis("open.initial_ms", initial);
            let max_ms = self.errors.millis("open.max_ms", max);
            if let (Some(initial_ms), Some(max_ms)) = (initial_ms, max_ms) {
                *self.open_mut() = OpenPolicy::Exponential { initial_ms, max_ms, multiplier, jitter };
            }
            self
        }

        /// Half-open rounds grant `budget` probes, and `successes_to_close` probe successes
        /// close the breaker (`half_open.probe_budget`, `half_open.success_threshold`).
        pub fn half_open_probes(mut self, budget: u32, successes_to_close: u32) -> Self {
            let half_open = self.half_open_mut();
            half_open.probe_budget = budget;
            half_open.success_threshold = successes_to_close;
            self
        }

        /// A half-open round not settled within this reopens the breaker
        /// (`half_open.max_wait_ms`).
        pub fn half_open_max_wait(mut self, max_wait: Duration) -> Self {
            if let Some(ms) = self.errors.millis("half_open.max_wait_ms", max_wait) {
                self.half_open_mut().max_wait_ms = ms;
            }
            self
        }

        /// After half-open, admit these percentages of calls for `stage` each before closing
        /// fully (`half_open.ramp`).
        pub fn ramp(mut self, stages_percent: &[u8], stage: Duration) -> Self {
            if let Some(stage_ms) = self.errors.millis("half_open.ramp.stage_ms", stage) {
                self.half_open_mut().ramp = Some(RampPolicy { stages_percent: stages_percent.to_vec(), stage_ms });
            }
            self
        }
    };
}

/// A [`BreakerConfig`] set field by field, durations as [`Duration`]s; every field not set
/// keeps its default. [`build`](Self::build) validates, so a mistake is a [`ConfigError`]
/// naming the field (by its name in the serde form, e.g. `open.duration_ms`), including a
/// duration that is not a whole number of milliseconds or does not fit in a `u64` of them.
///
/// ```
/// use std::time::Duration;
/// use breaker_actors::machine::{BreakerConfig, OutagePolicy};
///
/// let config = BreakerConfig::builder()
///     .count_window(50)
///     .minimum_calls(20)
///     .failure_rate(0.25)
///     .slow_calls(Duration::from_millis(800), 0.5)
///     .exponential_backoff(Duration::from_secs(1), Duration::from_secs(300), 2, 0.1)
///     .half_open_probes(6, 3)
///     .quorum(2)
///     .local_overlay(|local| local.consecutive_failures(5).open_for(Duration::from_secs(10)))
///     .outage(OutagePolicy::LocalOnly, Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.slow_call_threshold_ms, Some(800));
/// assert!(BreakerConfig::builder().open_for(Duration::ZERO).build().is_err());
/// # Ok::<(), breaker_actors::machine::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
    errors: FirstError,
}

impl From<BreakerConfig> for BreakerConfigBuilder {
    /// A builder starting from `config` instead of the defaults.
    fn from(config: BreakerConfig) -> Self {
        Self { config, errors: FirstError::new("") }
    }
}

impl BreakerConfigBuilder {
    cycle_setters!();

    fn trip_mut(&mut self) -> &mut TripPolicy {
        &mut self.config.trip
    }

    fn open_mut(&mut self) -> &mut OpenPolicy {
        &mut self.config.open
    }

    fn half_open_mut(&mut self) -> &mut HalfOpenPolicy {
        &mut self.config.half_open
    }

    /// The config's declared version (`version`, 1 and up): raise it when retuning, so that
    /// the fleet moves to this config as it is deployed (`docs/tuning.md`).
    pub fn version(mut self, version: u64) -> Self {
        self.config.version = version;
        self
    }

    /// Distinct nodes with bad outcomes needed before any rule trips the fleet (`quorum`).
    pub fn quorum(mut self, nodes: u32) -> Self {
        self.config.quorum = nodes;
        self
    }

    /// The largest fleet this breaker expects (`max_nodes`).
    pub fn max_nodes(mut self, nodes: u32) -> Self {
        self.config.max_nodes = nodes;
        self
    }

    /// A call at least this long is slow (`slow_call_threshold_ms`), for the slow-call rate
    /// rules of the fleet and of the local overlay.
    pub fn slow_call_threshold(mut self, threshold: Duration) -> Self {
        if let Some(ms) = self.errors.millis("slow_call_threshold_ms", threshold) {
            self.config.slow_call_threshold_ms = Some(ms);
        }
        self
    }

    /// Calls at least `threshold` long are slow, and the fleet trips when at least `rate`
    /// of its decisive calls were (`slow_call_threshold_ms`, `trip.slow_call_rate`).
    pub fn slow_calls(self, threshold: Duration, rate: f64) -> Self {
        self.slow_call_threshold(threshold).slow_call_rate(rate)
    }

    /// While open, the decider checks the dependency every `initial` (doubling after each
    /// failure up to `max`); `successes_required` successes in a row start half-open early
    /// (`health_check`, `closes_directly: false`).
    pub fn health_checks(self, initial: Duration, max: Duration, successes_required: u32) -> Self {
        self.set_health_checks(initial, max, successes_required, false)
    }

    /// Like [`health_checks`](Self::health_checks), but the successes close the breaker
    /// directly, replacing live probes (`closes_directly: true`).
    pub fn health_checks_closing(self, initial: Duration, max: Duration, successes_required: u32) -> Self {
        self.set_health_checks(initial, max, successes_required, true)
    }

    fn set_health_checks(mut self, initial: Duration, max: Duration, successes: u32, closes_directly: bool) -> Self {
        let initial_interval_ms = self.errors.millis("health_check.initial_interval_ms", initial);
        let max_interval_ms = self.errors.millis("health_check.max_interval_ms", max);
        if let (Some(initial_interval_ms), Some(max_interval_ms)) = (initial_interval_ms, max_interval_ms) {
            self.config.health_check = Some(HealthCheckPolicy {
                initial_interval_ms,
                max_interval_ms,
                successes_required: successes,
                closes_directly,
            });
        }
        self
    }

    /// Sets the local overlay (`local`): `overlay` gets the current one (the default
    /// overlay if it was off) and returns it changed.
    pub fn local_overlay(mut self, overlay: impl FnOnce(LocalOverlayBuilder) -> LocalOverlayBuilder) -> Self {
        let start = LocalOverlayBuilder {
            local: self.config.local.take().unwrap_or_default(),
            errors: FirstError::new("local."),
        };
        let built = overlay(start);
        self.config.local = Some(built.local);
        // The first mistake is the one reported, whether it was made before or inside.
        self.errors.error = self.errors.error.take().or(built.errors.error);
        self
    }

    /// No local overlay: a node follows the fleet alone (`local: null`).
    pub fn no_local_overlay(mut self) -> Self {
        self.config.local = None;
        self
    }

    /// What a node does once it has lost NATS for `grace` (`outage`).
    pub fn outage(mut self, policy: OutagePolicy, grace: Duration) -> Self {
        if let Some(grace_ms) = self.errors.millis("outage.grace_ms", grace) {
            self.config.outage = OutageConfig { policy, grace_ms };
        }
        self
    }

    /// Seed of the jitter generator (`seed`).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// The config, if every setter took and it validates; otherwise the first field at
    /// fault.
    pub fn build(self) -> Result<BreakerConfig, ConfigError> {
        if let Some(error) = self.errors.error {
            return Err(error);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The local overlay of a [`BreakerConfigBuilder`], given to
/// [`local_overlay`](BreakerConfigBuilder::local_overlay): the same cycle setters, on this
/// node's own evidence (fields under `local.`; no quorum).
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalOverlayBuilder {
    local: LocalOverlayPolicy,
    errors: FirstError,
}

impl LocalOverlayBuilder {
    cycle_setters!();

    fn trip_mut(&mut self) -> &mut TripPolicy {
        &mut self.local.trip
    }

    fn open_mut(&mut self) -> &mut OpenPolicy {
        &mut self.local.open
    }

    fn half_open_mut(&mut self) -> &mut HalfOpenPolicy {
        &mut self.local.half_open
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_untouched_builder_builds_the_defaults() {
        assert_eq!(BreakerConfig::builder().build(), Ok(BreakerConfig::default()));
        let custom = BreakerConfig { quorum: 3, seed: 7, ..BreakerConfig::default() };
        assert_eq!(BreakerConfigBuilder::from(custom.clone()).build(), Ok(custom));
    }

    #[test]
    fn every_setter_lands_in_its_field() {
        let built = BreakerConfig::builder()
            .time_window(10 * SECOND, 10)
            .minimum_calls(5)
            .failure_rate(0.3)
            .slow_calls(Duration::from_millis(250), 0.6)
            .consecutive_failures(4)
            .burn_rate(0.999, 3600 * SECOND, 300 * SECOND, 14.4)
            .max_evidence_age(30 * SECOND)
            .exponential_backoff(SECOND, 60 * SECOND, 3, 0.2)
            .half_open_probes(4, 2)
            .half_open_max_wait(20 * SECOND)
            .ramp(&[25, 50], 5 * SECOND)
            .quorum(2)
            .max_nodes(64)
            .health_checks_closing(2 * SECOND, 30 * SECOND, 3)
            .local_overlay(|local| {
                local
                    .count_window(30)
                    .minimum_calls(10)
                    .no_failure_rate()
                    .slow_call_rate(0.9)
                    .consecutive_failures(3)
                    .open_for(5 * SECOND)
                    .half_open_probes(1, 1)
            })
            .outage(OutagePolicy::FailClosed, 2 * SECOND)
            .seed(42)
            .version(3)
            .build()
            .unwrap();
        let expected = BreakerConfig {
            version: 3,
            trip: TripPolicy {
                window: WindowConfig::Time { duration_ms: 10_000, buckets: 10 },
                minimum_calls: 5,
                failure_rate: Some(0.3),
                slow_call_rate: Some(0.6),
                consecutive_failures: Some(4),
                burn_rate: Some(BurnRateRule {
                    objective: 0.999,
                    long_window_ms: 3_600_000,
                    short_window_ms: 300_000,
                    factor: 14.4,
                }),
                max_evidence_age_ms: 30_000,
            },
            quorum: 2,
            max_nodes: 64,
            slow_call_threshold_ms: Some(250),
            open: OpenPolicy::Exponential { initial_ms: 1_000, max_ms: 60_000, multiplier: 3, jitter: 0.2 },
            half_open: HalfOpenPolicy {
                probe_budget: 4,
                success_threshold: 2,
                max_wait_ms: 20_000,
                ramp: Some(RampPolicy { stages_percent: vec![25, 50], stage_ms: 5_000 }),
            },
            health_check: Some(HealthCheckPolicy {
                initial_interval_ms: 2_000,
                max_interval_ms: 30_000,
                successes_required: 3,
                closes_directly: true,
            }),
            local: Some(LocalOverlayPolicy {
                trip: TripPolicy {
                    window: WindowConfig::Count { calls: 30 },
                    minimum_calls: 10,
                    failure_rate: None,
                    slow_call_rate: Some(0.9),
                    consecutive_failures: Some(3),
                    ..TripPolicy::default()
                },
                open: OpenPolicy::Fixed { duration_ms: 5_000 },
                half_open: HalfOpenPolicy { probe_budget: 1, success_threshold: 1, ..HalfOpenPolicy::default() },
            }),
            outage: OutageConfig { policy: OutagePolicy::FailClosed, grace_ms: 2_000 },
            seed: 42,
        };
        assert_eq!(built, expected);
        let off = BreakerConfig::builder().health_checks(SECOND, SECOND, 1).no_local_overlay().build().unwrap();
        assert_eq!(off.local, None);
        assert_eq!(off.health_check.map(|h| h.closes_directly), Some(false));
    }

    #[test]
    fn bad_durations_name_their_field() {
        let field = |builder: BreakerConfigBuilder| builder.build().unwrap_err().field;
        let too_long = Duration::from_secs(u64::MAX);
        let fraction = Duration::from_micros(2_500);
        assert_eq!(field(BreakerConfig::builder().open_for(too_long)), "open.duration_ms");
        assert_eq!(field(BreakerConfig::builder().open_for(Duration::ZERO)), "open.duration_ms");
        assert_eq!(field(BreakerConfig::builder().exponential_backoff(SECOND, too_long, 2, 0.0)), "open.max_ms");
        assert_eq!(field(BreakerConfig::builder().half_open_max_wait(fraction)), "half_open.max_wait_ms");
        assert_eq!(field(BreakerConfig::builder().half_open_max_wait(Duration::ZERO)), "half_open.max_wait_ms");
        assert_eq!(field(BreakerConfig::builder().time_window(fraction, 1)), "trip.window.duration_ms");
        assert_eq!(field(BreakerConfig::builder().slow_calls(Duration::ZERO, 0.5)), "slow_call_threshold_ms");
        assert_eq!(field(BreakerConfig::builder().outage(OutagePolicy::FailOpen, too_long)), "outage.grace_ms");
        assert_eq!(field(BreakerConfig::builder().max_evidence_age(Duration::ZERO)), "trip.max_evidence_age_ms");
        assert_eq!(field(BreakerConfig::builder().local_overlay(|l| l.open_for(fraction))), "local.open.duration_ms");
        assert_eq!(
            field(BreakerConfig::builder().local_overlay(|l| l.half_open_max_wait(Duration::ZERO))),
            "local.half_open.max_wait_ms"
        );
        assert_eq!(
            field(BreakerConfig::builder().health_checks(Duration::ZERO, SECOND, 1)),
            "health_check.initial_interval_ms"
        );
        let error = BreakerConfig::builder().open_for(fraction).build().unwrap_err();
        assert!(error.problem.contains("2ms 500us is not a whole number of milliseconds"), "{error}");
    }

    #[test]
    fn the_first_mistake_is_the_one_reported() {
        let error = BreakerConfig::builder()
            .open_for(Duration::from_micros(1))
            .local_overlay(|l| l.open_for(Duration::from_micros(1)))
            .build()
            .unwrap_err();
        assert_eq!(error.field, "open.duration_ms");
        let error = BreakerConfig::builder()
            .local_overlay(|l| l.open_for(Duration::from_micros(1)))
            .open_for(Duration::from_micros(1))
            .build()
            .unwrap_err();
        assert_eq!(error.field, "local.open.duration_ms");
        // Validation after the setters: rules the builder cannot see alone.
        let error = BreakerConfig::builder().half_open_probes(3, 5).build().unwrap_err();
        assert_eq!(error.field, "half_open.success_threshold");
        let error = BreakerConfig::builder().slow_call_rate(0.5).build().unwrap_err();
        assert_eq!(error.field, "trip.slow_call_rate");
    }
}
