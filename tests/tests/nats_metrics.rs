//! The metrics only the NATS transport records, through the real exporter
//! (`metrics-exporter-prometheus`, one global recorder for this test binary) on two nodes of a
//! real nats-server this test starts: a decision written by one node is timed into
//! `fusebox_propagation_lag_seconds` on the other when it arrives, and a malformed outcome
//! message counts in `fusebox_refused_messages_total` with the node that refused it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use breaker_actors::Registry;
use breaker_actors::machine::{BreakerConfig, NodeId, OpenPolicy, StateLabel, TripPolicy};
use breaker_actors::observe::names::{self, SECONDS_BUCKETS};
use fusebox_testkit::servers::NatsServer;
use fusebox_testkit::wait::eventually;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use transport_nats::nats::{NatsConfig, NatsTransport};

const WAIT: Duration = Duration::from_secs(10);

fn exporter() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap()
}

/// The value of the one rendered sample whose line starts with `series` (name and labels as
/// rendered, e.g. `name{a="1"`), if there is one.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?.strip_prefix('{')?;
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

async fn node(url: &str, id: &str) -> Registry {
    let transport =
        NatsTransport::connect(NatsConfig::new(vec![url.to_owned()], NodeId::new(id).unwrap())).await.unwrap();
    Registry::builder()
        .transport(transport)
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_timed_where_it_arrives_and_a_refused_message_is_counted_with_the_node() {
    let exporter = exporter();
    let server = NatsServer::start().unwrap();
    let config = BreakerConfig {
        trip: TripPolicy { consecutive_failures: Some(3), ..TripPolicy::default() },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        local: None,
        ..BreakerConfig::default()
    };
    let n1 = node(&server.url(), "n1").await;
    let b1 = n1.breaker("lagged", config.clone()).await.unwrap();
    eventually("n1 decides", WAIT, || exporter.render().contains(r#"fusebox_deciding{breaker="lagged",node="n1"} 1"#))
        .await;
    let n2 = node(&server.url(), "n2").await;
    let b2 = n2.breaker("lagged", config).await.unwrap();
    let lag =
        |text: &str| sample(text, "fusebox_propagation_lag_seconds_count", &[("breaker", "lagged"), ("node", "n2")]);
    let before = lag(&exporter.render()).unwrap_or(0.0);

    // n1 trips the breaker: the open decision reaches n2 through its watch, and is timed there.
    while b1.state() != StateLabel::Open {
        let _ = b1.call(async { Err::<(), _>("down") }).await;
        tokio::task::yield_now().await;
    }
    eventually("n2 applies the open", WAIT, || b2.state() == StateLabel::Open).await;
    eventually("n2 times the decision's propagation", WAIT, || lag(&exporter.render()).is_some_and(|n| n > before))
        .await;
    let text = exporter.render();
    let sum = sample(&text, "fusebox_propagation_lag_seconds_sum", &[("breaker", "lagged"), ("node", "n2")]).unwrap();
    assert!((0.0..WAIT.as_secs_f64()).contains(&sum), "a lag between 0 and the test's patience: {sum}");
    assert!(text.contains("# TYPE fusebox_propagation_lag_seconds histogram"), "{text}");

    // A foreign app publishes garbage on the outcome subject: counted, with the node (the
    // decider, n1, consumes the breaker's outcomes).
    let refused = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{}{{", names::REFUSED_MESSAGES)) && l.contains(r#"node="n1""#))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let refused_before = refused(&exporter.render());
    let raw = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    js.publish_with_headers("fusebox.out.lagged.x1", headers, "{not json".into()).await.unwrap().await.unwrap();
    eventually("the garbage is counted on n1", WAIT, || refused(&exporter.render()) > refused_before).await;
    let text = exporter.render();
    assert!(text.contains(&format!("# TYPE {} counter", names::REFUSED_MESSAGES)), "{text}");
    n2.shutdown().await.unwrap();
    n1.shutdown().await.unwrap();
}
