//! The breaker configuration the cross-crate fleet tests trip (`tests/tests/nats.rs`,
//! `tests/tests/python.rs`): a count window small enough to trip in a few calls, a fleet-wide
//! probe budget of 2, and fail-open soon after NATS is lost. Suites whose configuration
//! differs on purpose (the paused-time runtime suite, the CLI's, the demo's) keep their own.

use breaker_actors::machine::{
    BreakerConfig, HalfOpenPolicy, OpenPolicy, OutageConfig, OutagePolicy, TripPolicy, WindowConfig,
};

/// [`config_open`] for 500 ms: trips on 5 failures out of 10 calls, then 2 probes in total,
/// both must succeed.
pub fn config() -> BreakerConfig {
    config_open(500)
}

/// Trips on 5 failures out of 10 calls (10 at least); open for `duration_ms`; half-open: 2
/// probes in total, both must succeed, at most 5 s; no local overlay; fail-open 300 ms after
/// the connection is lost.
pub fn config_open(duration_ms: u64) -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 10 },
            minimum_calls: 10,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms },
        half_open: HalfOpenPolicy { probe_budget: 2, success_threshold: 2, max_wait_ms: 5_000, ramp: None },
        local: None,
        outage: OutageConfig { policy: OutagePolicy::FailOpen, grace_ms: 300 },
        ..BreakerConfig::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_configs_are_valid_and_differ_only_in_the_open_period() {
        config().validate().unwrap();
        let long = config_open(60_000);
        long.validate().unwrap();
        assert_eq!(BreakerConfig { open: config().open, ..long }, config());
    }
}
