//! `docs/config.md`'s TOML example loads, and is the config its builder example builds.
#![cfg(feature = "toml")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fusebox::BreakerConfig;
use fusebox::config::OutagePolicy;

fn toml_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("```toml\n").expect("docs/config.md has a TOML example") + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

#[test]
fn the_documented_toml_file_equals_the_documented_builder() {
    let loaded = BreakerConfig::from_toml_str(&toml_example()).unwrap();
    let built = BreakerConfig::builder()
        .quorum(2)
        .slow_calls(Duration::from_millis(800), 0.5)
        .count_window(50)
        .minimum_calls(20)
        .failure_rate(0.25)
        .exponential_backoff(Duration::from_secs(1), Duration::from_secs(300), 2, 0.1)
        .half_open_probes(6, 3)
        .half_open_max_wait(Duration::from_secs(20))
        .local_overlay(|local| local.consecutive_failures(5).open_for(Duration::from_secs(10)))
        .outage(OutagePolicy::LocalOnly, Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(loaded, built);
}

#[test]
fn a_loaded_config_is_stored_with_millis() {
    let loaded = BreakerConfig::from_toml_str(&toml_example()).unwrap();
    let json = serde_json::to_value(&loaded).unwrap();
    assert_eq!(json["outage"]["grace_ms"], 10_000);
    assert_eq!(json["open"]["exponential"]["max_ms"], 300_000);
    assert!(json["outage"].get("grace").is_none());
}
