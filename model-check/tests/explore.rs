#![allow(clippy::unwrap_used, clippy::expect_used)]
use model_check::explore::{explore, ExploreSpec};

#[test]
fn scratch() {
    let b: u32 = std::env::var("B").map(|v| v.parse().unwrap()).unwrap_or(1);
    let t: u32 = std::env::var("T").map(|v| v.parse().unwrap()).unwrap_or(1);
    let mut spec = ExploreSpec { batches: b, time_steps: t, max_states: std::env::var("M").map(|v| v.parse().unwrap()).unwrap_or(3_000_000), ..ExploreSpec::two_nodes() };
    if std::env::var("N3").is_ok() { spec = ExploreSpec { batches: b, time_steps: t, max_states: std::env::var("M").map(|v| v.parse().unwrap()).unwrap_or(3_000_000), ..ExploreSpec::three_nodes() }; }
    if std::env::var("NOCMD").is_ok() { spec.commands.clear(); }
    if let Ok(v) = std::env::var("MF") { spec.max_in_flight = v.parse().unwrap(); }
    if let Ok(v) = std::env::var("E") { spec.lease_expiries = v.parse().unwrap(); }
    if std::env::var("C0").is_ok() { spec.crashes = 0; }
    if std::env::var("D0").is_ok() { spec.duplications = 0; spec.drops = 0; }
    let r = explore(&spec).unwrap();
    println!("{r}");
}

#[test]
fn debug_len() {
    use breaker_actors::machine::*;
    let params = NodeParams { breaker: BreakerName::new("model").unwrap(), node: NodeId::new("n1").unwrap(), incarnation: 1, lease_margin_ms: 250 };
    let mut m = Machine::new(params, &ExploreSpec::model_config()).unwrap();
    m.step(Millis(0), Input::NoDecisionYet);
    m.step(Millis(0), Input::LeaseGained { term: Term(1), sent_at: Millis(0), ttl_ms: 1000 });
    let s = format!("{m:?}");
    println!("len {}", s.len());
    let t = std::time::Instant::now();
    for _ in 0..10000 { let _ = m.fingerprint(); }
    println!("fp {:?}", t.elapsed() / 10000);
    let t = std::time::Instant::now();
    for _ in 0..10000 { let _ = m.clone(); }
    println!("clone {:?}", t.elapsed() / 10000);
}
