//! The name, type, unit, labels and help text of every metric Fusebox exports: the one
//! place they are defined. The code emits them through these constants, [`describe`] gives
//! every one its HELP and unit, `docs/metrics.md` lists them (a test keeps the list and this
//! table equal), and the shipped Grafana dashboard and alert rules may name only these.
//!
//! Conventions (Prometheus'): base units (`_seconds`, ratios 0..1), counters end in
//! `_total`, one label set per name, every per-breaker series labelled `breaker` and `node`
//! (the Fusebox node id, which is stable across restarts, unlike a scrape's `instance`).

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

/// One metric Fusebox exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// The name, as scraped (a histogram's series add `_bucket`, `_sum` and `_count`).
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its unit, `None` for a plain count.
    pub unit: Option<metrics::Unit>,
    /// Its labels, in order.
    pub labels: &'static [&'static str],
    /// The HELP text.
    pub help: &'static str,
}

macro_rules! metrics_table {
    ($($(#[$doc:meta])* $constant:ident = $name:literal, $kind:ident, $unit:expr, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $constant: &str = $name;
        )*
        /// Every metric, in the order `docs/metrics.md` lists them.
        pub const ALL: &[MetricSpec] = &[
            $(MetricSpec { name: $name, kind: MetricKind::$kind, unit: $unit, labels: &[$($label),*], help: $help },)*
        ];
    };
}

metrics_table! {
    STATE = "fusebox_state", Gauge, None, ["breaker", "node", "state"],
        "1 for the breaker's effective state on this node, 0 for every other state label.";
    FAILURE_RATE = "fusebox_failure_rate", Gauge, None, ["breaker", "node", "scope"],
        "Share of failed calls in a window (scope fleet: the deciding node's fleet window, 0 elsewhere; scope local: this node's overlay window).";
    SLOW_CALL_RATE = "fusebox_slow_call_rate", Gauge, None, ["breaker", "node", "scope"],
        "Share of slow calls in a window (scopes as fusebox_failure_rate).";
    FAILURE_RATE_THRESHOLD = "fusebox_failure_rate_threshold", Gauge, None, ["breaker", "node"],
        "The failure rate at which the breaker trips (absent when the config sets none).";
    SLOW_CALL_RATE_THRESHOLD = "fusebox_slow_call_rate_threshold", Gauge, None, ["breaker", "node"],
        "The slow-call rate at which the breaker trips (absent when the config sets none).";
    CALLS = "fusebox_calls_total", Counter, None, ["breaker", "node", "outcome"],
        "Calls by outcome (success, failure, slow, ignored, rejected).";
    CALL_DURATION = "fusebox_call_duration_seconds", Histogram, Some(metrics::Unit::Seconds), ["breaker", "node", "outcome"],
        "Duration of the calls the breaker admitted and timed, by outcome.";
    REJECTIONS = "fusebox_rejections_total", Counter, None, ["breaker", "node", "reason"],
        "Calls the breaker turned away, by reason (open, no_probe_left, no_probe_granted, not_admitted, shut_down).";
    DECISIONS_APPLIED = "fusebox_decisions_applied_total", Counter, None, ["breaker", "node"],
        "Fleet decisions applied on this node.";
    TRANSITIONS = "fusebox_transitions_total", Counter, None, ["breaker", "node", "to"],
        "Applied fleet decisions that changed the fleet state, by the state entered.";
    DECISIONS_MADE = "fusebox_decisions_total", Counter, None, ["breaker", "node", "state"],
        "Decisions this node made as the breaker's decider, by the state decided.";
    PROPAGATION_LAG = "fusebox_propagation_lag_seconds", Histogram, Some(metrics::Unit::Seconds), ["breaker", "node"],
        "From a decision's write (the server's timestamp) to its delivery to the breaker on this node.";
    DECIDING = "fusebox_deciding", Gauge, None, ["breaker", "node"],
        "1 while this node holds the breaker's lease and decides, else 0.";
    TERM = "fusebox_term", Gauge, None, ["breaker", "node"],
        "The lease term of the decision applied on this node.";
    LEASE_SUSPENSIONS = "fusebox_lease_suspensions_total", Counter, None, ["breaker", "node"],
        "Times this node paused deciding because its lease renewal was overdue.";
    STEP_DOWNS = "fusebox_step_downs_total", Counter, None, ["breaker", "node", "reason"],
        "Times this node stopped deciding, by reason (lease_lost, deposed, writes_failing, unstable, shutdown).";
    REPORTS_PUBLISHED = "fusebox_reports_published_total", Counter, None, ["breaker", "node"],
        "Outcome reports this node published.";
    REPORTS_MERGED = "fusebox_reports_merged_total", Counter, None, ["breaker", "node"],
        "Outcome reports this node counted into the fleet window as decider.";
    REPORTS_LOST = "fusebox_reports_lost_total", Counter, None, ["breaker", "node"],
        "Outcome reports this node could not publish (dropped from a full queue or never acknowledged).";
    REFUSED_MESSAGES = "fusebox_refused_messages_total", Counter, None, ["node", "source", "kind"],
        "Messages from NATS this node refused as malformed, by where they came from and why.";
    REFUSED_INPUTS = "fusebox_refused_inputs_total", Counter, None, ["breaker", "node", "kind"],
        "Decoded inputs the breaker refused as impossible, by kind.";
    STALE_INPUTS = "fusebox_stale_inputs_total", Counter, None, ["breaker", "node", "kind"],
        "Valid inputs with nothing to act on (stale, duplicate), by kind.";
    CONFIG_VERSION = "fusebox_config_version", Gauge, None, ["breaker", "node"],
        "The config version the breaker runs on.";
    CONFIG_FOLLOWED = "fusebox_config_followed_total", Counter, None, ["breaker", "node"],
        "Registrations whose local config lost to the fleet's, which the node follows.";
    CONFIG_REFUSED = "fusebox_config_refused_total", Counter, None, ["breaker", "node"],
        "Fleet config values the node refused as invalid.";
    ACTOR_RESTARTS = "fusebox_actor_restarts_total", Counter, None, ["breaker", "node"],
        "Breaker actors restarted after a panic.";
    STREAK_TRIPS_UNDONE = "fusebox_streak_trips_undone_total", Counter, None, ["breaker", "node"],
        "Hot-path trips on the overlay's streak that the machine did not follow.";
    STALE_LEASES_REPLACED = "fusebox_stale_leases_replaced_total", Counter, None, ["node"],
        "Expired lease entries this node replaced.";
}

/// Upper bounds (seconds) of the buckets to give the `_seconds` histograms
/// ([`CALL_DURATION`], [`PROPAGATION_LAG`]): from 1 ms to a minute. Calls are timed on the
/// coarse clock unless the caller measured them, so call durations are as fine as the flush
/// interval (5 ms by default); a decision propagates in milliseconds on a quiet fleet. An
/// exporter told no buckets may render a histogram otherwise (`metrics-exporter-prometheus`
/// renders a summary): `docs/metrics.md` shows how to set them.
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// Describes every metric in [`ALL`] to the installed recorder (HELP and unit), once per
/// process is enough; the registry calls it when it starts.
pub fn describe() {
    for spec in ALL {
        let help = spec.help;
        match (spec.kind, spec.unit) {
            (MetricKind::Counter, Some(unit)) => metrics::describe_counter!(spec.name, unit, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(spec.name, help),
            (MetricKind::Gauge, Some(unit)) => metrics::describe_gauge!(spec.name, unit, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(spec.name, help),
            (MetricKind::Histogram, Some(unit)) => metrics::describe_histogram!(spec.name, unit, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(spec.name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for spec in ALL {
            assert!(seen.insert(spec.name), "{} twice", spec.name);
            assert!(spec.name.starts_with("fusebox_"), "{}", spec.name);
            assert!(spec.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", spec.name);
            assert_eq!(spec.kind == MetricKind::Counter, spec.name.ends_with("_total"), "{}", spec.name);
            assert_eq!(spec.unit == Some(metrics::Unit::Seconds), spec.name.ends_with("_seconds"), "{}", spec.name);
            assert!(!spec.help.is_empty());
        }
    }
}
