//! Absorption: two threads hammering the hot path of 1 and of 100 breakers on one node (every
//! call a success), counting what they recorded, against what the node's machines drained
//! (`Stats::recorded`) and what the deciders counted in their windows (a 10-minute time
//! window, so nothing ages out and nothing trips): none lost or doubled, and the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerConfig, BreakerName, TripPolicy, WindowConfig};

use crate::fleet::Fleet;
use crate::{BenchError, Context};

/// How long the counts may take to arrive at the deciders after the hammering stops.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// One absorption run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Absorption {
    /// Breakers hammered.
    pub breakers: usize,
    /// Outcomes recorded by the hammering threads.
    pub recorded: u64,
    /// Outcomes the node's machines drained from the hot path.
    pub drained: u64,
    /// Outcomes the node's machines dropped as stale (recorded under a generation that had
    /// ended when they were drained: by design, counted in `Stats::stale_outcomes`).
    pub stale: u64,
    /// Outcomes the deciders counted.
    pub counted: u64,
    /// How long the threads hammered.
    pub elapsed: Duration,
}

impl Absorption {
    /// Outcomes recorded per second, in millions.
    pub fn mega_per_sec(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let recorded = self.recorded as f64;
        recorded / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// The absorption breakers' config: a 10-minute time window (60 buckets), evidence kept as long.
pub fn absorption_config() -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Time { duration_ms: 600_000, buckets: 60 },
            max_evidence_age_ms: 600_000,
            ..TripPolicy::default()
        },
        ..BreakerConfig::default()
    }
}

fn hammer(breakers: &[Breaker], threads: usize, secs: Duration) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let breakers = breakers.to_vec();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut recorded = 0u64;
                // Each thread starts at a different breaker, so two threads do not walk in step.
                let offset = t * breakers.len() / threads.max(1);
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..breakers.len() {
                        let b = &breakers[(i + offset) % breakers.len()];
                        for _ in 0..64 {
                            if let Ok(permit) = b.try_acquire() {
                                permit.success();
                                recorded += 1;
                            }
                        }
                    }
                }
                recorded
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let recorded = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    (recorded, began.elapsed())
}

/// `(drained, stale, counted)` over `names` on every node.
async fn totals(fleet: &Fleet, names: &[BreakerName]) -> (u64, u64, u64) {
    let mut drained = 0u64;
    let mut stale = 0u64;
    let mut counted = 0u64;
    for name in names {
        for node in &fleet.nodes {
            if let Some(m) = node.reg.machine(name).await {
                drained += m.stats().recorded.decisive();
                stale += m.stats().stale_outcomes;
                if m.is_deciding() {
                    let decisive = m.fleet_judge().map_or(0, |j| j.window_totals(m.now()).0);
                    counted += u64::try_from(decisive).unwrap_or(u64::MAX);
                }
            }
        }
    }
    (drained, stale, counted)
}

/// Hammers `fleet`'s breakers named `names` (already created with [`absorption_config`])
/// from `threads` threads for `secs`, then waits for the deciders' counts to match.
pub async fn run(fleet: &Fleet, names: &[&str], threads: usize, secs: Duration) -> Result<Absorption, BenchError> {
    let node = fleet.nodes.first().ok_or_else(|| crate::BenchError("no node".to_owned()))?;
    let mut breakers = Vec::new();
    let mut parsed = Vec::new();
    for name in names {
        breakers.push(node.reg.breaker(name, absorption_config()).await.doing(format!("creating {name}"))?);
        parsed.push(BreakerName::new(name).doing("breaker name")?);
    }
    // A decider for every breaker first: outcomes drained before one exists would only be
    // replayed, and this measures the steady path.
    let deadline = Instant::now() + SETTLE_DEADLINE;
    while Instant::now() < deadline {
        let mut deciding = 0;
        for name in &parsed {
            deciding += usize::from(node.reg.machine(name).await.is_some_and(|m| m.is_deciding()));
        }
        if deciding == parsed.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Counted before (the breakers may have run before): the run's own are the difference.
    let before = totals(fleet, &parsed).await;
    let (recorded, elapsed) =
        tokio::task::spawn_blocking(move || hammer(&breakers, threads, secs)).await.doing("hammering")?;
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let now = totals(fleet, &parsed).await;
        let (drained, stale, counted) =
            (now.0.saturating_sub(before.0), now.1.saturating_sub(before.1), now.2.saturating_sub(before.2));
        if (drained + stale >= recorded && counted >= drained) || Instant::now() > deadline {
            return Ok(Absorption { breakers: names.len(), recorded, drained, stale, counted, elapsed });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
