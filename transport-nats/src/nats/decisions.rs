//! [`DecisionWatch`]: one watch of the whole state bucket per node, whatever the number of
//! its breakers, demultiplexed into the breakers' inboxes by key, and the node's one resync
//! request per period beside it.
//!
//! The watch is an ordered push consumer on `$KV.<state bucket>.>`: first the last value of
//! every key, then every change. It remembers the newest revision it delivered (`seen`), and
//! after a reconnection, or when it ends, it starts again from `seen + 1`, so nothing is
//! missed and nothing old is replayed. Beside it, once per `decision_resync` (and at once
//! after a reconnection), the node asks for the next entry after `seen` on any key (a direct
//! get, which any replica answers, also while the stream has no leader and the watch cannot be
//! recreated): nothing new costs one request per period per node; entries the watch missed
//! are delivered from there, in order, a bounded number per cycle.
//!
//! Every decision seen is kept (bounded) per key, so a breaker registered later, or an
//! actor restarted, gets the current value without a request, and a resync read after an
//! outage is answered once the node's catch-up after the reconnection is through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use breaker_actors::machine::{BreakerName, DecisionId, FleetState};
use breaker_actors::transport::{DecisionRead, Inbox, Subscription, TransportError};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{Inner, READ_PATIENCE_MIN, Session, backend, keep_running, lock, until_connected};
use crate::codec::{self, DecodeError};

/// Keys whose newest decision a node keeps (each a few hundred bytes). Beyond it, values of
/// breakers the node does not have are not kept, and registering one costs a direct read.
const MAX_CACHED: usize = 100_000;
/// How long after a resync found entries the watch must have delivered them too.
const WATCH_GRACE: Duration = Duration::from_millis(100);
/// Entries one resync cycle fetches at most (the watch delivers the rest).
const CATCH_UP_BATCH: usize = 64;

#[derive(Default)]
struct State {
    inboxes: HashMap<BreakerName, Inbox>,
    cache: HashMap<BreakerName, DecisionRead>,
    /// Whether `cache` holds every key's newest value as of `seen` (the watch's first pass
    /// is through, and nothing was left out for lack of room).
    complete: bool,
}

/// The node's decision watch: see the module documentation.
pub(crate) struct DecisionWatch {
    state: std::sync::Mutex<State>,
    /// The newest bucket revision delivered (watch or resync).
    seen: AtomicU64,
    /// Whether a watch session runs now.
    running: AtomicBool,
    /// The newest revision the watch itself delivered: a resync that found newer entries the
    /// watch has not delivered a moment later shows a watch that died without noticing.
    watch_seen: AtomicU64,
    /// Rung when the watch is behind: the session starts again from `seen + 1`.
    restart: tokio::sync::Notify,
    /// Bumped whenever a resync cycle has caught up with the bucket: a resync read waits
    /// for the next one.
    caught_up: watch::Sender<u64>,
}

impl DecisionWatch {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::Mutex::new(State::default()),
            seen: AtomicU64::new(0),
            running: AtomicBool::new(false),
            watch_seen: AtomicU64::new(0),
            restart: tokio::sync::Notify::new(),
            caught_up: watch::Sender::new(0),
        })
    }

    /// Starts the watch and the resync loop; they run until `inner`'s tasks are aborted.
    pub(crate) fn start(self: &Arc<Self>, inner: &Arc<Inner>) {
        let watch = tokio::spawn(watch_loop(inner.clone(), self.clone()));
        let resync = tokio::spawn(resync_loop(inner.clone(), self.clone()));
        lock(&inner.tasks).extend([watch, resync]);
    }

    /// Delivers `breaker`'s decision into `inbox` from now on: the value kept, if any, at
    /// once; otherwise, if the bucket is known to have none, its absence; otherwise a
    /// direct read.
    pub(crate) fn register(self: &Arc<Self>, inner: &Arc<Inner>, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        let known = {
            let mut state = lock(&self.state);
            state.inboxes.insert(breaker.clone(), inbox.clone());
            match state.cache.get(breaker) {
                Some(read) => Some(read.clone()),
                None if state.complete => Some(DecisionRead { decision: None, revision: 0 }),
                None => None,
            }
        };
        if let Some(read) = known {
            inbox.offer_decision(read);
        } else {
            let (reader, breaker) = (inner.clone(), breaker.clone());
            let read = tokio::spawn(async move {
                let patience = reader.decision_resync.max(READ_PATIENCE_MIN).min(reader.request_timeout);
                if let Ok(Ok(read)) = tokio::time::timeout(patience, reader.read(&breaker)).await {
                    inbox.offer_decision(read);
                }
            });
            let mut tasks = lock(&inner.tasks);
            tasks.retain(|t| !t.is_finished());
            tasks.push(read);
        }
        let (me, breaker) = (self.clone(), breaker.clone());
        Subscription::from_cleanup(move || {
            lock(&me.state).inboxes.remove(&breaker);
        })
    }

    /// The newest decision kept for `breaker`, once the node has caught up with the bucket
    /// after now (at most `patience`): `None` if it could not be told.
    pub(crate) async fn current(&self, breaker: &BreakerName, patience: Duration) -> Option<DecisionRead> {
        let mut caught_up = self.caught_up.subscribe();
        let before = *caught_up.borrow_and_update();
        tokio::time::timeout(patience, caught_up.wait_for(|n| *n > before)).await.ok()?.ok()?;
        let state = lock(&self.state);
        match state.cache.get(breaker) {
            Some(read) => Some(read.clone()),
            None if state.complete => Some(DecisionRead { decision: None, revision: 0 }),
            None => None,
        }
    }

    /// The id of the newest decision kept for `breaker` (what an unattributed foreign
    /// report counts towards), and whether its fleet state is closed.
    pub(crate) fn latest(&self, breaker: &BreakerName) -> (DecisionId, bool) {
        let state = lock(&self.state);
        match state.cache.get(breaker).and_then(|r| r.decision.as_ref()) {
            Some(d) => (d.id, matches!(d.state, FleetState::Closed)),
            None => (DecisionId::default(), true),
        }
    }

    /// Delivers one entry of the bucket: `key` at `revision`, a put of `payload` or (`None`)
    /// a delete, purge or expiry.
    fn deliver(&self, inner: &Inner, key: &str, revision: u64, payload: Option<&Bytes>) {
        self.seen.fetch_max(revision, Ordering::SeqCst);
        let Ok(breaker) = BreakerName::new(key) else {
            let error = DecodeError::BadSubject { subject: key.to_owned() };
            inner.stats.reject("decision", key, &error);
            return;
        };
        let decision = payload.and_then(|value| match codec::decode_decision(&breaker, value, &inner.limits) {
            Ok(decision) => Some(decision),
            Err(e) => {
                // Unreadable: offered as no value at its revision, so a decider overwrites it.
                inner.stats.reject("decision", key, &e);
                None
            }
        });
        let read = DecisionRead { decision, revision };
        let inbox = {
            let mut state = lock(&self.state);
            // Only the watch and the resync fill the cache, so a revision kept here was
            // offered to the inbox already. (A write of this node's own is not kept ahead of
            // its delivery: the inbox must be offered it, which is how the lease manager
            // learns the term of every decision, its own included, and never asks for a
            // term the bucket already holds.)
            if state.cache.get(&breaker).is_some_and(|old| old.revision >= revision) {
                return;
            }
            let inbox = state.inboxes.get(&breaker).cloned();
            if inbox.is_some() || state.cache.contains_key(&breaker) || state.cache.len() < MAX_CACHED {
                state.cache.insert(breaker, read.clone());
            } else {
                state.complete = false;
            }
            inbox
        };
        if let Some(inbox) = inbox {
            inbox.offer_decision(read);
        }
    }

    fn mark_complete(&self) {
        let mut state = lock(&self.state);
        // Only if nothing was left out for lack of room.
        if state.cache.len() < MAX_CACHED {
            state.complete = true;
        }
    }
}

/// Whether a KV entry's headers mark it a delete, a purge or an expiry (not a put).
fn is_removal(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some())
}

/// The key of a state-bucket subject.
fn key_of<'a>(inner: &Inner, subject: &'a str) -> Option<&'a str> {
    subject.strip_prefix(inner.stores.state.prefix.as_str())
}

/// The watch of the whole bucket, opened again (from `seen + 1`) after every reconnection
/// and whenever it ends, until the transport is gone.
async fn watch_loop(inner: Arc<Inner>, watch: Arc<DecisionWatch>) {
    let mut conn = inner.conn.clone();
    let filter = format!("{}>", inner.stores.state.prefix);
    keep_running(inner.conn.clone(), "decision watch", async move || {
        let losses = conn.borrow_and_update().losses;
        let seen = watch.seen.load(Ordering::SeqCst);
        watch.watch_seen.store(seen, Ordering::SeqCst);
        let deliver_policy = if seen == 0 {
            consumer::DeliverPolicy::LastPerSubject
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: seen + 1 }
        };
        let config = consumer::push::OrderedConfig {
            deliver_subject: inner.client.new_inbox(),
            description: Some("fusebox node decision watch".to_owned()),
            filter_subject: filter.clone(),
            replay_policy: consumer::ReplayPolicy::Instant,
            deliver_policy,
            ..Default::default()
        };
        let consumer = inner.stores.state.stream.create_consumer(config).await.map_err(backend)?;
        if consumer.cached_info().num_pending == 0 {
            watch.mark_complete();
        }
        let mut messages = consumer.messages().await.map_err(backend)?;
        watch.running.store(true, Ordering::SeqCst);
        let ended = loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info().map(|i| (i.stream_sequence, i.pending)) else { continue };
                        let (revision, pending) = info;
                        if let Some(key) = key_of(&inner, message.subject.as_str()) {
                            let removal = is_removal(message.headers.as_ref());
                            watch.deliver(&inner, key, revision, (!removal).then_some(&message.payload));
                        }
                        watch.watch_seen.fetch_max(revision, Ordering::SeqCst);
                        if pending == 0 {
                            watch.mark_complete();
                        }
                    }
                    _ => break Session::Retry,
                },
                () = watch.restart.notified() => break Session::Retry,
                changed = conn.changed() => {
                    if changed.is_err() {
                        break Session::Stop;
                    }
                    let now = *conn.borrow();
                    if now.connected && now.losses != losses {
                        break Session::Retry;
                    }
                }
            }
        };
        watch.running.store(false, Ordering::SeqCst);
        Ok(ended)
    })
    .await;
}

/// Once per `decision_resync`, and at once after every reconnection: fetches the entries
/// after `seen` (nothing new: one request), delivering them in order.
async fn resync_loop(inner: Arc<Inner>, watch: Arc<DecisionWatch>) {
    let mut conn = inner.conn.clone();
    let filter = format!("{}>", inner.stores.state.prefix);
    loop {
        if !until_connected(&mut conn).await {
            return;
        }
        let losses = conn.borrow_and_update().losses;
        let cycle = async {
            let patience = inner.decision_resync.max(READ_PATIENCE_MIN).min(inner.request_timeout);
            let before = watch.seen.load(Ordering::SeqCst);
            if let Ok(Ok(())) = tokio::time::timeout(patience, catch_up(&inner, &watch, &filter)).await {
                watch.caught_up.send_modify(|n| *n += 1);
            }
            let found = watch.seen.load(Ordering::SeqCst);
            if found > before && watch.running.load(Ordering::SeqCst) {
                // The watch may only have been a moment slower than this read: give it one.
                tokio::time::sleep(WATCH_GRACE).await;
                if watch.watch_seen.load(Ordering::SeqCst) < found {
                    tracing::debug!(found, "the decision watch missed entries a resync found: restarting it");
                    watch.restart.notify_one();
                }
            }
            tokio::time::sleep(inner.decision_resync).await;
        };
        tokio::select! {
            () = cycle => {}
            lost = conn.wait_for(|c| c.losses != losses) => if lost.is_err() { return },
        }
    }
}

/// Fetches entries after `seen` until there is none (`Ok`) or the batch is used up.
async fn catch_up(inner: &Inner, watch: &DecisionWatch, filter: &str) -> Result<(), TransportError> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    for _ in 0..CATCH_UP_BATCH {
        let after = watch.seen.load(Ordering::SeqCst);
        match inner.stores.state.stream.direct_get_next_for_subject(filter, Some(after + 1)).await {
            Ok(message) => {
                if let Some(key) = key_of(inner, message.subject.as_str()) {
                    let removal = is_removal(Some(&message.headers));
                    watch.deliver(inner, key, message.sequence, (!removal).then_some(&message.payload));
                } else {
                    watch.seen.fetch_max(message.sequence, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                // Every key's newest value up to here has been delivered, by the watch's
                // first pass or by these reads, which go in revision order.
                watch.mark_complete();
                return Ok(());
            }
            Err(e) => return Err(inner.failure(e)),
        }
    }
    Err(TransportError::Backend("more entries to catch up with".to_owned()))
}
