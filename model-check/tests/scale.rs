//! The scale preset (`model-check::scale`): the fleet-scale bounds hold as properties with
//! many nodes and breakers, and the planted shapes from before fleet scale break them.

#![allow(clippy::unwrap_used)]

use model_check::scale::{self, ScaleBug, ScaleSpec};

/// Small enough for a debug build in the test command; `model-check scale` runs the preset.
fn small() -> ScaleSpec {
    ScaleSpec { nodes: 8, breakers: 40, shards: 4, duration_ms: 8_000, ..ScaleSpec::preset() }
}

#[test]
fn the_scale_bounds_hold_and_failing_breakers_open_everywhere() {
    let report = scale::run(&small()).unwrap();
    assert_eq!(report.violations, vec![], "{report:#?}");
    assert_eq!(report.max_messages_per_flush, 1, "batches were sent, one per flush at most");
    assert!(report.messages > 0 && report.reports > report.messages, "{report:#?}");
    assert!(report.max_consumers_per_node <= 3 + 4, "{report:#?}");
    assert!(report.max_consumers_per_stream <= 8, "{report:#?}");
    assert!(report.max_lease_ops_in_flight <= 4, "{report:#?}");
    assert!(report.resyncs <= 8 * 8 && report.resyncs >= 8 * 7, "one per node per second: {report:#?}");
    assert_eq!(report.decided_at_end, 40, "every breaker has a decider");
    assert_eq!((report.failing, report.opened), (4, 4), "every failing breaker opened on every node");
}

#[test]
fn a_message_per_report_breaks_the_batched_property() {
    let spec = ScaleSpec { planted: Some(ScaleBug::Unbatched), ..small() };
    let report = scale::run(&spec).unwrap();
    assert!(report.violations.iter().any(|(_, p, _)| *p == "batched"), "{:?}", report.violations);
    assert!(report.max_messages_per_flush > 1);
}

#[test]
fn a_consumer_per_breaker_breaks_the_consumers_property() {
    let spec = ScaleSpec { planted: Some(ScaleBug::PerBreakerConsumers), ..small() };
    let report = scale::run(&spec).unwrap();
    assert!(report.violations.iter().any(|(_, p, _)| *p == "consumers"), "{:?}", report.violations);
}

#[test]
fn a_spec_out_of_range_is_refused_with_the_field() {
    let error = scale::run(&ScaleSpec { nodes: 0, ..small() }).unwrap_err();
    assert_eq!(error.field, "nodes");
    let error = scale::run(&ScaleSpec { duration_ms: 1_000, ..small() }).unwrap_err();
    assert_eq!(error.field, "duration_ms");
}

#[test]
fn a_resync_per_breaker_breaks_the_resync_property() {
    let spec = ScaleSpec { planted: Some(ScaleBug::PerBreakerResync), ..small() };
    let report = scale::run(&spec).unwrap();
    assert!(report.violations.iter().any(|(_, p, _)| *p == "resync"), "{:?}", report.violations);
}
