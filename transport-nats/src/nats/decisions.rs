//! [`DecisionWatch`]: one watch of the whole state bucket per node, whatever the number of
//! its breakers, demultiplexed into the breakers' inboxes by key, and the node's one resync
//! request per period beside it. The rules (what is offered to whom, what is kept, when a
//! resync is due, when the watch is restarted) are the shell's pure [`DecisionDemux`]; this
//! module carries them out against NATS.
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
//!
//! Each new decision handed to a registered breaker once the node has caught up with the
//! bucket is timed into `fusebox_propagation_lag_seconds`: this host's wall clock at the
//! delivery minus the server's timestamp of the entry (the watch message's published time,
//! the direct get's `Nats-Time-Stamp`). It compares two machines' clocks, so it is off by
//! their skew (a negative difference counts as 0); it is a figure for operators, never an
//! input to a decision. History delivered before the node caught up (the watch's first
//! pass, a resync walk from the start) is not propagation and is not timed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use breaker_actors::machine::{BreakerName, DecisionId};
use breaker_actors::shell::{DecisionDemux, Offer, Source, WatchStart};
use breaker_actors::transport::{DecisionRead, Inbox, Subscription, TransportError};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::error::backend;
use super::session::{Session, keep_running, until_connected};
use super::{Inner, lock};
use crate::codec::{self, DecodeError};
use breaker_actors::observe::names;

/// Keys whose newest decision a node keeps (each a few hundred bytes). Beyond it, values of
/// breakers the node does not have are not kept, and registering one costs a direct read.
const MAX_CACHED: usize = 100_000;
/// Entries one resync cycle fetches at most (the watch delivers the rest).
const CATCH_UP_BATCH: usize = 64;
/// The least a direct decision read is waited for before it is sent again.
const READ_PATIENCE_MIN: Duration = Duration::from_millis(250);
/// Direct reads for a breaker registered before the node caught up with the bucket, and the
/// pause after the first failed one (doubled each time).
const PENDING_READ_ATTEMPTS: u32 = 3;
const PENDING_READ_BACKOFF: Duration = Duration::from_millis(50);

/// The node's decision watch: see the module documentation.
pub(crate) struct DecisionWatch {
    demux: std::sync::Mutex<DecisionDemux<Inbox>>,
    /// Rung when the watch is behind: the session starts again from `seen + 1`.
    restart: tokio::sync::Notify,
    /// Bumped whenever a resync cycle has caught up with the bucket: a resync read waits
    /// for the next one.
    caught_up: watch::Sender<u64>,
}

impl DecisionWatch {
    pub(crate) fn new(resync: Duration) -> Arc<Self> {
        let period_ms = u64::try_from(resync.as_millis()).unwrap_or(u64::MAX);
        Arc::new(Self {
            demux: std::sync::Mutex::new(DecisionDemux::new(period_ms, MAX_CACHED)),
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

    /// Delivers `breaker`'s decision into `inbox` from now on: once the node has caught up
    /// with the bucket, the value kept (or its absence) at once; before, a direct read (and
    /// nothing before it, or the complete cache, tells the current value: see
    /// [`DecisionDemux`]).
    pub(crate) fn register(self: &Arc<Self>, inner: &Arc<Inner>, breaker: &BreakerName, inbox: &Inbox) -> Subscription {
        let known = lock(&self.demux).register(breaker, inbox.clone());
        if let Some(read) = known {
            inbox.offer_decision(read);
        } else {
            let (reader, me, breaker) = (inner.clone(), self.clone(), breaker.clone());
            let read = tokio::spawn(async move {
                let patience = reader.decision_resync.max(READ_PATIENCE_MIN).min(reader.request_timeout);
                for attempt in 0..PENDING_READ_ATTEMPTS {
                    if !lock(&me.demux).is_pending(&breaker) {
                        return; // the complete cache answered first (or it was unregistered)
                    }
                    if let Ok(Ok(read)) = tokio::time::timeout(patience, reader.read(&breaker)).await {
                        let offer = lock(&me.demux).handle_read(&breaker, read);
                        return offer_all(offer.into_iter().collect());
                    }
                    // Then the complete cache answers, once the watch or a resync is through.
                    tokio::time::sleep(PENDING_READ_BACKOFF * 2u32.pow(attempt)).await;
                }
            });
            let mut tasks = lock(&inner.tasks);
            tasks.retain(|t| !t.is_finished());
            tasks.push(read);
        }
        let (me, breaker) = (self.clone(), breaker.clone());
        Subscription::from_cleanup(move || lock(&me.demux).unregister(&breaker))
    }

    /// The newest decision kept for `breaker`, once the node has caught up with the bucket
    /// after now (at most `patience`): `None` if it could not be told.
    pub(crate) async fn current(&self, breaker: &BreakerName, patience: Duration) -> Option<DecisionRead> {
        let mut caught_up = self.caught_up.subscribe();
        let before = *caught_up.borrow_and_update();
        tokio::time::timeout(patience, caught_up.wait_for(|n| *n > before)).await.ok()?.ok()?;
        lock(&self.demux).known(breaker)
    }

    /// The id of the newest decision kept for `breaker` (what an unattributed foreign
    /// report counts towards), and whether its fleet state is closed.
    pub(crate) fn latest(&self, breaker: &BreakerName) -> (DecisionId, bool) {
        lock(&self.demux).latest(breaker)
    }

    /// Delivers one entry of the bucket: `key` at `revision`, a put of `payload` or (`None`)
    /// a delete, purge or expiry, stored at `written` (the server's timestamp, nanoseconds
    /// since the Unix epoch).
    fn deliver(&self, inner: &Inner, source: Source, key: &str, revision: u64, payload: Option<&Bytes>, written: i128) {
        let Ok(breaker) = BreakerName::new(key) else {
            lock(&self.demux).handle_seen(source, revision);
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
        let is_decision = decision.is_some();
        let (caught_up, offer) = {
            let mut demux = lock(&self.demux);
            let caught_up = demux.is_complete();
            (caught_up, demux.handle_entry(source, &breaker, revision, decision))
        };
        if let Some((inbox, read)) = offer {
            inbox.offer_decision(read);
            if caught_up && is_decision {
                observe_lag(inner, &breaker, written);
            }
        }
    }

    /// Every key's newest value has been delivered: the pending registrations are offered
    /// the values kept.
    fn mark_complete(&self) {
        let offers = lock(&self.demux).mark_complete();
        offer_all(offers);
    }
}

fn offer_all(offers: Vec<Offer<Inbox>>) {
    for (inbox, read) in offers {
        inbox.offer_decision(read);
    }
}

/// Observes the propagation lag of a decision written at `written` (the server's clock, Unix
/// nanoseconds) and delivered now (this host's clock): see the module documentation.
fn observe_lag(inner: &Inner, breaker: &BreakerName, written: i128) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let lag_ns = i128::try_from(now).unwrap_or(i128::MAX).saturating_sub(written).max(0);
    #[allow(clippy::cast_precision_loss, reason = "seconds of lag, not a count")]
    let lag = lag_ns as f64 / 1e9;
    let labels = [("breaker", breaker.as_str().to_owned()), ("node", inner.node.as_str().to_owned())];
    metrics::histogram!(names::PROPAGATION_LAG, &labels).record(lag);
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
        let deliver_policy = match lock(&watch.demux).handle_watch_started() {
            WatchStart::LastPerKey => consumer::DeliverPolicy::LastPerSubject,
            WatchStart::From(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        };
        let config = consumer::push::OrderedConfig {
            deliver_subject: inner.client.new_inbox(),
            description: Some("fusebox node decision watch".to_owned()),
            filter_subject: filter.clone(),
            replay_policy: consumer::ReplayPolicy::Instant,
            deliver_policy,
            ..Default::default()
        };
        let session = async {
            let consumer = inner.stores.state.stream.create_consumer(config).await.map_err(backend)?;
            if consumer.cached_info().num_pending == 0 {
                watch.mark_complete();
            }
            let mut messages = consumer.messages().await.map_err(backend)?;
            Ok::<_, TransportError>(loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(Ok(message)) => {
                            let Ok(info) = message.info().map(|i| (i.stream_sequence, i.pending, i.published)) else {
                                continue;
                            };
                            let (revision, pending, published) = info;
                            match key_of(&inner, message.subject.as_str()) {
                                Some(key) => {
                                    let removal = is_removal(message.headers.as_ref());
                                    let payload = (!removal).then_some(&message.payload);
                                    let written = published.unix_timestamp_nanos();
                                    watch.deliver(&inner, Source::Watch, key, revision, payload, written);
                                }
                                None => lock(&watch.demux).handle_seen(Source::Watch, revision),
                            }
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
            })
        };
        let ended = session.await;
        lock(&watch.demux).handle_watch_ended();
        ended
    })
    .await;
}

/// The resync requests the demux asks for (once per `decision_resync`, at once after every
/// reconnection) and the watch restarts it calls for.
async fn resync_loop(inner: Arc<Inner>, watch: Arc<DecisionWatch>) {
    let mut conn = inner.conn.clone();
    let filter = format!("{}>", inner.stores.state.prefix);
    loop {
        if !until_connected(&mut conn).await {
            return;
        }
        let losses = conn.borrow_and_update().losses;
        lock(&watch.demux).handle_reconnected(inner.now());
        let cycles = async {
            loop {
                let now = inner.now();
                let (restart, due, next) = {
                    let mut demux = lock(&watch.demux);
                    (demux.poll_restart(now), demux.poll_resync(now), demux.poll_timeout())
                };
                if restart {
                    tracing::debug!("the decision watch missed entries a resync found: restarting it");
                    watch.restart.notify_one();
                }
                if due.is_some() {
                    let patience = inner.decision_resync.max(READ_PATIENCE_MIN).min(inner.request_timeout);
                    let caught_up =
                        matches!(tokio::time::timeout(patience, catch_up(&inner, &watch, &filter)).await, Ok(Ok(())));
                    let offers = lock(&watch.demux).handle_resync_done(inner.now(), caught_up);
                    offer_all(offers);
                    if caught_up {
                        watch.caught_up.send_modify(|n| *n += 1);
                    }
                    continue;
                }
                let wait = next.map_or(inner.decision_resync, |at| Duration::from_millis(at.since(now)));
                tokio::time::sleep(wait).await;
            }
        };
        tokio::select! {
            () = cycles => {}
            lost = conn.wait_for(|c| c.losses != losses) => if lost.is_err() { return },
        }
    }
}

/// Fetches entries after `seen` until there is none (`Ok`) or the batch is used up.
async fn catch_up(inner: &Inner, watch: &DecisionWatch, filter: &str) -> Result<(), TransportError> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    for _ in 0..CATCH_UP_BATCH {
        let after = lock(&watch.demux).seen();
        match inner.stores.state.stream.direct_get_next_for_subject(filter, Some(after + 1)).await {
            Ok(message) => match key_of(inner, message.subject.as_str()) {
                Some(key) => {
                    let removal = is_removal(Some(&message.headers));
                    let payload = (!removal).then_some(&message.payload);
                    let written = message.time.unix_timestamp_nanos();
                    watch.deliver(inner, Source::Resync, key, message.sequence, payload, written);
                }
                None => lock(&watch.demux).handle_seen(Source::Resync, message.sequence),
            },
            // Every key's newest value up to here has been delivered, by the watch's first
            // pass or by these reads, which go in revision order.
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(inner.failure(e)),
        }
    }
    Err(TransportError::Backend("more entries to catch up with".to_owned()))
}
