//! The registry's lease manager and adopter: the task that carries out the node's
//! [`LeaseKeeper`] (the pure rules of lease upkeep) against the transport, with every
//! operation bounded and renewals first, and the task that adopts the breakers of held
//! shards from the config bucket. The module documentation of `registry` says the rules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{Shared, create, lease_shard, lock};
use crate::machine::{BreakerName, Input, Millis, Term};
use crate::node::LeaseCmd;
use crate::observe::names;
use crate::shell::{LeaseEffect, LeaseInput, LeaseKeeper, RenewAnswer};
use crate::transport::{BoxFuture, Inbox, LeaseAcquire, LeaseRequest, LeaseShard, Revision, Transport, TransportError};

/// How often at most the adopter lists the config bucket again for the shards held (it
/// also lists it once after each acquisition).
const ADOPT_EVERY: Duration = Duration::from_secs(30);

/// The node's lease manager: a task that drives the node's [`LeaseKeeper`] (the rules of
/// lease upkeep, pure, shared with `model-check`'s harness) against the transport. Lease
/// upkeep is its only work: every operation it awaits is bounded by
/// [`LeaseKeeper::op_limit_ms`], due renewals (and releases) go out first and together,
/// then due acquisitions together, and adoption (listing the config bucket, which can take
/// long) runs in a task of its own ([`run_adopter`]): a renewal never waits behind a
/// listing, another shard's acquisition or a slow operation for longer than one bound.
pub(super) struct LeaseManager {
    shared: Weak<Shared>,
    transport: Arc<dyn Transport>,
    /// The shards held, for the adopter.
    held: Arc<Mutex<std::collections::BTreeSet<LeaseShard>>>,
    /// Asks the adopter to adopt a shard's breakers (after an acquisition).
    adoptions: Option<mpsc::UnboundedSender<LeaseShard>>,
    origin: Instant,
    keeper: LeaseKeeper,
    /// Every shard's breakers on this node, told of the shard's lease news.
    members: BTreeMap<LeaseShard, BTreeMap<BreakerName, Inbox>>,
    released: Arc<Notify>,
}

/// A lease operation carried out, with what to feed the keeper.
enum LeaseOp {
    Acquire(LeaseShard),
    Renew(LeaseShard),
    Release,
}

impl LeaseManager {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Arc::downgrade(shared),
            transport: shared.transport.clone(),
            held: Arc::new(Mutex::new(std::collections::BTreeSet::new())),
            adoptions: None,
            origin: shared.origin,
            keeper: LeaseKeeper::new(shared.settings.lease_ttl),
            members: BTreeMap::new(),
            released: Arc::new(Notify::new()),
        }
    }

    /// The machines' clock.
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<LeaseCmd>) {
        let _watch = self.transport.watch_leases(self.released.clone());
        let (adoptions, asks) = mpsc::unbounded_channel();
        self.adoptions = Some(adoptions);
        let adopter = run_adopter(
            self.shared.clone(),
            self.transport.clone(),
            self.shared.upgrade().map_or(1, |s| s.settings.shards),
            self.held.clone(),
            asks,
        );
        // Stops with the manager.
        let _adopter = crate::transport::Subscription::from_task(tokio::spawn(adopter));
        loop {
            let deadline = self.keeper.poll_timeout().map(|at| self.origin + Duration::from_millis(at.0));
            let mut joiner = None;
            let mut done = None;
            tokio::select! {
                command = commands.recv() => match command {
                    // The registry is gone without a shutdown: nothing to release to.
                    None => return,
                    Some(LeaseCmd::Shutdown(reply)) => {
                        done = Some(reply);
                        self.keeper.handle(self.now(), LeaseInput::Shutdown);
                    }
                    Some(LeaseCmd::Join { shard, name, inbox, restarted }) => {
                        if !self.keeper.is_stopping() {
                            self.members.entry(shard).or_default().insert(name, inbox.clone());
                            joiner = Some(inbox);
                        }
                        self.keeper.handle(self.now(), LeaseInput::Join { shard, restarted });
                    }
                    Some(LeaseCmd::SteppedDown { shard, term, reason }) => {
                        self.keeper.handle(self.now(), LeaseInput::SteppedDown { shard, term, reason });
                    }
                },
                () = self.released.notified() => self.keeper.handle(self.now(), LeaseInput::Released),
                () = sleep_until(deadline) => self.keeper.handle(self.now(), LeaseInput::Tick),
            }
            self.carry_out(joiner.as_ref()).await;
            if let Some(reply) = done {
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Carries out everything the keeper asks, feeding it the answers, until it asks no
    /// more: news and adoptions at once, then renewals and releases together, then
    /// acquisitions together, each bounded.
    async fn carry_out(&mut self, joiner: Option<&Inbox>) {
        let limit = Duration::from_millis(self.keeper.op_limit_ms());
        loop {
            let (mut first, mut then): (Vec<LeaseCall>, Vec<LeaseCall>) = (Vec::new(), Vec::new());
            while let Some(effect) = self.keeper.poll_effect() {
                match effect {
                    LeaseEffect::Tell { shard, news } => {
                        match &news {
                            Input::LeaseGained { term, .. } => {
                                tracing::info!(shard = shard.0, term = term.0, "lease acquired");
                            }
                            Input::LeaseLost { term } => {
                                tracing::info!(shard = shard.0, term = term.0, "lease given up");
                            }
                            _ => {}
                        }
                        for inbox in self.members.get(&shard).into_iter().flat_map(BTreeMap::values) {
                            inbox.offer_lease(news.clone());
                        }
                    }
                    LeaseEffect::Greet { news, .. } => {
                        if let Some(inbox) = joiner {
                            inbox.offer_lease(news);
                        }
                    }
                    LeaseEffect::Adopt { shard } => {
                        if let Some(adoptions) = &self.adoptions {
                            let _ = adoptions.send(shard);
                        }
                    }
                    LeaseEffect::Release { shard, revision } => {
                        let release = self.transport.release_lease(shard, revision);
                        first
                            .push((LeaseOp::Release, Box::pin(async move { release.await.map(|_| Answer::Released) })));
                    }
                    LeaseEffect::Renew { shard, revision, term, ttl } => {
                        let renew = self.transport.renew_lease(shard, revision, term, ttl);
                        first.push((LeaseOp::Renew(shard), Box::pin(async move { renew.await.map(Answer::Renewed) })));
                    }
                    LeaseEffect::Acquire { shard, floor, over, ttl } => {
                        if let Some(revision) = over {
                            tracing::warn!(shard = shard.0, revision, "lease value unchanged for a TTL: replacing it");
                            if let Some(shared) = self.shared.upgrade() {
                                let node = shared.node.as_str().to_owned();
                                metrics::counter!(names::STALE_LEASES_REPLACED, "node" => node).increment(1);
                            }
                        }
                        let seen =
                            self.members.get(&shard).into_iter().flat_map(BTreeMap::values).map(Inbox::newest_term);
                        let known = seen.fold(floor, Term::max);
                        let acquire = self.transport.acquire_lease(shard, LeaseRequest { ttl, known, over });
                        then.push((
                            LeaseOp::Acquire(shard),
                            Box::pin(async move { acquire.await.map(Answer::Acquired) }),
                        ));
                    }
                }
            }
            self.sync_held();
            if first.is_empty() && then.is_empty() {
                return;
            }
            for ops in [first, then] {
                let (kinds, futures): (Vec<LeaseOp>, Vec<BoxFuture<Result<Answer, TransportError>>>) =
                    ops.into_iter().unzip();
                let results = all_bounded(futures, limit).await;
                for (kind, result) in kinds.into_iter().zip(results) {
                    let now = self.now();
                    match (kind, result) {
                        (LeaseOp::Renew(shard), Some(Ok(Answer::Renewed(Some(revision))))) => {
                            self.keeper
                                .handle(now, LeaseInput::Renewed { shard, answer: RenewAnswer::Renewed(revision) });
                        }
                        (LeaseOp::Renew(shard), Some(Ok(Answer::Renewed(None)))) => {
                            tracing::warn!(shard = shard.0, "lease lost");
                            self.keeper.handle(now, LeaseInput::Renewed { shard, answer: RenewAnswer::Lost });
                        }
                        (LeaseOp::Renew(shard), _) => {
                            self.keeper.handle(now, LeaseInput::Renewed { shard, answer: RenewAnswer::NoAnswer });
                        }
                        (LeaseOp::Acquire(shard), Some(Ok(Answer::Acquired(answer)))) => {
                            self.keeper.handle(now, LeaseInput::Acquired { shard, answer: Some(answer) });
                        }
                        (LeaseOp::Acquire(shard), _) => {
                            self.keeper.handle(now, LeaseInput::Acquired { shard, answer: None });
                        }
                        (LeaseOp::Release, _) => {}
                    }
                }
            }
        }
    }

    /// Publishes the shards held to the adopter.
    fn sync_held(&self) {
        let mut set = lock(&self.held);
        set.clear();
        set.extend(self.keeper.held().map(|(shard, _)| shard));
    }
}

/// A lease operation under way.
type LeaseCall = (LeaseOp, BoxFuture<Result<Answer, TransportError>>);

/// What a renewal or an acquisition answered.
enum Answer {
    Renewed(Option<Revision>),
    Acquired(LeaseAcquire),
    Released,
}

/// Runs `ops` at once, each bounded by `limit`; their results in order (`None`: no answer
/// within the bound).
async fn all_bounded<T: Send + 'static>(ops: Vec<BoxFuture<T>>, limit: Duration) -> Vec<Option<T>> {
    let mut results: Vec<Option<T>> = ops.iter().map(|_| None).collect();
    let mut running = tokio::task::JoinSet::new();
    for (index, op) in ops.into_iter().enumerate() {
        running.spawn(async move { (index, tokio::time::timeout(limit, op).await.ok()) });
    }
    while let Some(done) = running.join_next().await {
        if let Ok((index, result)) = done {
            results[index] = result;
        }
    }
    results
}

/// The node's adopter: lists the config bucket once after each acquisition (the shards
/// acquired since its last listing) and every [`ADOPT_EVERY`] for all shards held, and
/// spawns actors for the breakers of held shards that the fleet has and this node lacks,
/// so that no breaker is left without a decider because its own nodes lost the race for
/// the shard. Off the lease manager's path: a slow listing delays adoption, never a
/// renewal.
async fn run_adopter(
    shared: Weak<Shared>,
    transport: Arc<dyn Transport>,
    shards_total: u32,
    held: Arc<Mutex<std::collections::BTreeSet<LeaseShard>>>,
    mut asks: mpsc::UnboundedReceiver<LeaseShard>,
) {
    let mut next_sweep = Instant::now() + ADOPT_EVERY;
    loop {
        let mut wanted = std::collections::BTreeSet::new();
        tokio::select! {
            ask = asks.recv() => match ask {
                Some(shard) => {
                    wanted.insert(shard);
                }
                None => return,
            },
            () = tokio::time::sleep_until(next_sweep) => {
                wanted.extend(lock(&held).iter().copied());
                next_sweep = Instant::now() + ADOPT_EVERY;
            }
        }
        while let Ok(shard) = asks.try_recv() {
            wanted.insert(shard);
        }
        if wanted.is_empty() {
            continue;
        }
        let Ok(configs) = transport.configs().await else {
            continue;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for (name, config) in configs {
            let shard = lease_shard(&name, shards_total);
            if !wanted.contains(&shard) || !lock(&held).contains(&shard) || shared.entries().contains_key(&name) {
                continue;
            }
            let Ok(valid) = config.validate() else {
                tracing::warn!(breaker = name.as_str(), "the fleet's config for this breaker is not valid here");
                continue;
            };
            let _one_at_a_time = shared.register.lock().await;
            if shared.is_shut_down() {
                return;
            }
            if shared.entries().contains_key(&name) {
                continue;
            }
            match create(&shared, name.clone(), config, valid).await {
                Ok(_) => tracing::info!(breaker = name.as_str(), shard = shard.0, "adopted as decider"),
                Err(e) => tracing::warn!(breaker = name.as_str(), error = %e, "could not adopt"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
