//! What the `fusebox` binary's integration tests share: the breaker config they trip and a
//! reader of a child's lines. Each test file includes it with `mod support;`.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;

use breaker_actors::machine::{BreakerConfig, OpenPolicy, OutageConfig, OutagePolicy, TripPolicy, WindowConfig};

/// Trips on 5 failures out of 10 calls and stays open a minute, so that what the CLI and
/// the page show after a trip is still the trip.
pub(crate) fn config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls: 10 },
            minimum_calls: 10,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        local: None,
        outage: OutageConfig { policy: OutagePolicy::FailOpen, grace_ms: 300 },
        ..BreakerConfig::default()
    }
}

/// The lines `from` produces, as they come, read on a thread.
pub(crate) fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
