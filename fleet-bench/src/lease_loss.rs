//! The overlay under a lease loss: a node that has lost the lease of a breaker's shard (so
//! nobody decides that breaker) keeps protecting its calls through the local overlay.
//!
//! One node holds every lease. A second transport, `bench-ghost`, takes the leases of some
//! shards away through the ordinary acquire path (a CAS over the holder's revision, as a node
//! that judged the lease stale would) and then never renews or decides: the node loses those
//! shards at its next renewal and cannot take them back until the ghost's lease expires. The
//! bench causes these depositions; nothing else is staged. While the gap lasts, every breaker
//! is called at a fixed pace and every call fails: breakers on a lost shard with the default
//! config (overlay on) against breakers on a lost shard without an overlay, and both kinds on
//! shards the node still holds (the fleet decider trips them). Counted per breaker: calls
//! admitted to the failing dependency and the call that was first rejected.

use std::time::{Duration, Instant};

use breaker_actors::hot::Breaker;
use breaker_actors::machine::{BreakerConfig, BreakerName, NodeId, Term};
use breaker_actors::registry::lease_shard;
use breaker_actors::transport::{LeaseAcquire, LeaseRequest, LeaseShard, Transport};
use transport_nats::nats::{NatsConfig, NatsTransport};

use crate::fleet::Fleet;
use crate::{BenchError, Context, fail};

/// Breakers of each kind.
const PER_KIND: usize = 4;
/// Failing calls per breaker in the bench, one per breaker per millisecond.
pub const BENCH_CALLS: u32 = 300;
/// Attempts of the ghost at each lease.
const TAKE_ATTEMPTS: usize = 5;
/// How long the node may take to notice a lost lease, or to win it back after the gap.
const NOTICE: Duration = Duration::from_secs(20);

/// One kind of breaker in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Whether its shard's lease was taken away.
    pub lease_lost: bool,
    /// Whether its config has the local overlay.
    pub overlay: bool,
}

/// What the breakers of one kind let through.
#[derive(Debug, Clone)]
pub struct KindResult {
    /// The kind.
    pub kind: Kind,
    /// Breakers of this kind.
    pub breakers: usize,
    /// Failing calls made on each.
    pub calls: u32,
    /// Calls admitted, per breaker.
    pub admitted: Vec<u32>,
    /// The first rejected call (1-based), per breaker; `None`: every call was admitted.
    pub first_rejected: Vec<Option<u32>>,
    /// Breakers of this kind some node decided at the end of the failing calls.
    pub decided_at_end: usize,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct LeaseLoss {
    /// Per kind.
    pub kinds: Vec<KindResult>,
    /// How long the ghost's leases were (the gap).
    pub gap: Duration,
    /// From the ghost taking the leases to the node having stopped deciding all of them.
    pub noticed_in: Duration,
    /// From the ghost taking the leases to the node deciding all of them again (`None`: not
    /// within the bound).
    pub back_in: Option<Duration>,
}

fn config(overlay: bool) -> BreakerConfig {
    let mut config = BreakerConfig::default();
    if !overlay {
        config.local = None;
    }
    config
}

/// `count` breaker names for `kind`, on shards in `lost` if the kind's lease is lost and on
/// the others otherwise.
fn names(kind: Kind, count: usize, lost: &[LeaseShard], shards: u32) -> Vec<String> {
    let tag = match (kind.lease_lost, kind.overlay) {
        (true, true) => "lost-overlay",
        (true, false) => "lost-fleet",
        (false, true) => "held-overlay",
        (false, false) => "held-fleet",
    };
    (0..)
        .map(|i| format!("{tag}-{i:03}"))
        .filter(|n| BreakerName::new(n).is_ok_and(|name| lost.contains(&lease_shard(&name, shards)) == kind.lease_lost))
        .take(count)
        .collect()
}

async fn deciding(fleet: &Fleet, names: &[String]) -> usize {
    let mut count = 0;
    for name in names.iter().filter_map(|n| BreakerName::new(n).ok()) {
        for node in &fleet.nodes {
            if node.reg.machine(&name).await.is_some_and(|m| m.is_deciding()) {
                count += 1;
                break;
            }
        }
    }
    count
}

async fn wait_deciding(fleet: &Fleet, names: &[String], wanted: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if deciding(fleet, names).await == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Calls every breaker `calls` times, one round per millisecond, every admitted call failing:
/// `(admitted, first rejected)` per breaker.
fn fail_calls(breakers: &[Breaker], calls: u32) -> Vec<(u32, Option<u32>)> {
    let mut out = vec![(0u32, None); breakers.len()];
    let began = Instant::now();
    for call in 1..=calls {
        for (b, o) in breakers.iter().zip(out.iter_mut()) {
            match b.try_acquire() {
                Ok(permit) => {
                    permit.failure();
                    o.0 += 1;
                }
                Err(_) => {
                    o.1.get_or_insert(call);
                }
            }
        }
        let next = began + Duration::from_millis(u64::from(call));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    out
}

/// Runs the scenario on `fleet` (one node, `urls` its servers): the ghost's leases last
/// `gap` (whole seconds), and every breaker is called `calls` times while they do (so
/// `calls` ms must stay well inside `gap`).
pub async fn run(fleet: &Fleet, urls: &[String], gap: Duration, calls: u32) -> Result<LeaseLoss, BenchError> {
    let node = fleet.nodes.first().ok_or_else(|| BenchError("no node".to_owned()))?;
    let shards = fleet.spec().lease_shards;
    // Half the shards are taken away.
    let lost: Vec<LeaseShard> = (0..shards).filter(|s| s % 2 == 0).map(LeaseShard).collect();
    let kinds = [
        Kind { lease_lost: true, overlay: true },
        Kind { lease_lost: true, overlay: false },
        Kind { lease_lost: false, overlay: true },
        Kind { lease_lost: false, overlay: false },
    ];
    let mut all_names = Vec::new();
    let mut breakers = Vec::new();
    for kind in kinds {
        let names = names(kind, PER_KIND, &lost, shards);
        for name in &names {
            breakers.push(node.reg.breaker(name, config(kind.overlay)).await.doing(format!("creating {name}"))?);
        }
        all_names.push(names);
    }
    let every: Vec<String> = all_names.concat();
    if !wait_deciding(fleet, &every, every.len(), NOTICE).await {
        return fail("the lease-loss run", "the node never decided every breaker");
    }

    let mut ghost_config = NatsConfig::new(urls.to_vec(), NodeId::new("bench-ghost").doing("ghost id")?);
    ghost_config.store.replicas = fleet.spec().replicas;
    let ghost = NatsTransport::connect(ghost_config).await.doing("connecting the ghost")?;
    let leases = async_nats::jetstream::new(ghost.client().clone())
        .get_key_value(ghost.layout().lease_bucket())
        .await
        .doing("binding the lease bucket")?;
    let taken_at = Instant::now();
    for &shard in &lost {
        // A renewal landing between the read and the CAS wins the race: read again.
        let mut outcome = None;
        for _ in 0..TAKE_ATTEMPTS {
            let entry = leases.entry(shard.to_string()).await.doing("reading a lease")?;
            // No breaker of the run on it: the node does not compete for it.
            let Some(entry) = entry else { break };
            let known = ghost.lease_holder(shard).await.ok().flatten().map_or(Term(0), |(_, t)| Term(t));
            let request = LeaseRequest { ttl: gap, known, over: Some(entry.revision) };
            let taken = ghost.acquire_lease(shard, request).await;
            let granted = matches!(taken, Ok(LeaseAcquire::Granted { .. }));
            outcome = Some(taken);
            if granted {
                break;
            }
        }
        if outcome.as_ref().is_some_and(|o| !matches!(o, Ok(LeaseAcquire::Granted { .. }))) {
            return fail("the ghost taking a lease", format!("shard {shard}: {outcome:?}"));
        }
    }
    let lost_names: Vec<String> = all_names[0].iter().chain(&all_names[1]).cloned().collect();
    if !wait_deciding(fleet, &lost_names, 0, NOTICE).await {
        return fail("the lease-loss run", "the node kept deciding breakers whose lease it lost");
    }
    let noticed_in = taken_at.elapsed();

    let calling = breakers.clone();
    let results = tokio::task::spawn_blocking(move || fail_calls(&calling, calls)).await.doing("calling")?;
    let mut out = Vec::new();
    let mut at = 0;
    for (kind, names) in kinds.iter().zip(&all_names) {
        let mine = &results[at..at + names.len()];
        at += names.len();
        out.push(KindResult {
            kind: *kind,
            breakers: names.len(),
            calls,
            admitted: mine.iter().map(|r| r.0).collect(),
            first_rejected: mine.iter().map(|r| r.1).collect(),
            decided_at_end: deciding(fleet, names).await,
        });
    }
    let back = wait_deciding(fleet, &lost_names, lost_names.len(), gap + NOTICE).await;
    let back_in = back.then(|| taken_at.elapsed());
    drop(ghost);
    Ok(LeaseLoss { kinds: out, gap, noticed_in, back_in })
}
