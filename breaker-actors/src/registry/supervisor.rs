//! The registry's supervisor: the parent of every breaker actor, which restarts a failed one
//! (at most [`MAX_RESTARTS`] times) with its state recovered from the decision bucket, under
//! a fresh incarnation, and tells the lease manager it joined again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{MAX_RESTARTS, Shared, lock, spawn_actor};
use crate::actor::ActorArgs;
use crate::node::LeaseCmd;

/// The supervisor: restarts breaker actors that fail.
pub(super) struct Supervisor;

impl Supervisor {
    async fn restart(shared: &Arc<Shared>, failed: &ActorCell, why: &str) {
        if shared.is_shut_down() {
            return;
        }
        let found = shared.entries().iter_mut().find(|(_, e)| e.actor.get_id() == failed.get_id()).map(|(n, e)| {
            e.restarts += 1;
            let args = ActorArgs {
                ctx: shared.ctx.clone(),
                name: n.clone(),
                config: e.valid.clone(),
                hot: e.hot.clone(),
                inbox: e.inbox.clone(),
                shard: e.shard,
                incarnation: shared.incarnation + u64::from(e.restarts),
                bootstrapped: e.bootstrapped.clone(),
                announced: e.announced.clone(),
                restarted: true,
                timer_messages: e.timer_messages.clone(),
                flush_pending: e.flush.pending.clone(),
                metrics: e.metrics.clone(),
            };
            (n.clone(), e.restarts, args)
        });
        let Some((name, restarts, args)) = found else {
            return;
        };
        args.metrics.actor_restarted();
        if restarts > MAX_RESTARTS {
            tracing::error!(breaker = name.as_str(), restarts, why, "breaker actor keeps failing: not restarted");
            return;
        }
        tracing::warn!(breaker = name.as_str(), restarts, why, "breaker actor failed: restarting");
        let (shard, inbox) = (args.shard, args.inbox.clone());
        match spawn_actor(shared, args).await {
            Ok(actor) => {
                if let Some(e) = shared.entries().get_mut(&name) {
                    *lock(&e.flush.actor) = actor.clone();
                    // A flush sent to the failed actor died with it.
                    e.flush.pending.store(false, Ordering::Release);
                    e.actor = actor;
                }
                let _ = shared.leases.send(LeaseCmd::Join { shard, name, inbox, restarted: true });
            }
            Err(e) => tracing::error!(breaker = name.as_str(), error = %e, "could not restart breaker actor"),
        }
    }
}

impl Actor for Supervisor {
    type Msg = ();
    type State = Weak<Shared>;
    type Arguments = Weak<Shared>;

    async fn pre_start(&self, _: ActorRef<()>, shared: Weak<Shared>) -> Result<Weak<Shared>, ActorProcessingErr> {
        Ok(shared)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        shared: &mut Weak<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        let failed = match event {
            SupervisionEvent::ActorFailed(cell, err) => Some((cell, err.to_string())),
            _ => None,
        };
        if let (Some((cell, why)), Some(shared)) = (failed, shared.upgrade()) {
            Self::restart(&shared, &cell, &why).await;
        }
        Ok(())
    }
}
