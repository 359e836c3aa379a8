//! The node's ordered report publisher: the [`Outbox`] (the shell's `ReportBatcher` and the
//! publisher's doorbell), the one task that publishes what the batcher releases
//! ([`publish_loop`]), one message in flight, and the incarnation that keeps batch ids of
//! two runs of a node apart.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use breaker_actors::observe::names;
use breaker_actors::shell::{Batch, ReportBatcher};
use bytes::Bytes;
use tokio::sync::Notify;

use super::session::{RETRY_MAX, backoff, until_connected};
use super::{Inner, TransportStats, lock};
use crate::codec::{self, NodeBatch};

/// The batcher and the publisher task's doorbell.
pub(super) struct Outbox {
    pub(super) batcher: Mutex<ReportBatcher>,
    pub(super) ready: Notify,
}

/// A number no earlier run of this node used (wall-clock nanoseconds and the process id:
/// an id, never a time anything is decided on).
pub(super) fn fresh_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0)) ^ (u64::from(std::process::id()) << 48)
}

/// The node's one report publisher: sends what the batcher says when it says, one message
/// in flight, and tells it how each publish went.
pub(super) async fn publish_loop(inner: Arc<Inner>) {
    let mut conn = inner.conn.clone();
    let subject = inner.layout.batch_subject(&inner.node);
    let mut attempt = 0u32;
    let mut counted = (0u64, 0u64);
    loop {
        let now = inner.now();
        let (batch, timeout) = {
            let mut batcher = lock(&inner.outbox.batcher);
            let batch = batcher.poll_transmit(now);
            let (lost, coalesced) = (batcher.lost(), batcher.coalesced());
            let newly_lost = lost.saturating_sub(counted.0);
            if newly_lost > 0 {
                inner.stats.reports_lost.fetch_add(newly_lost, Ordering::Relaxed);
                for (breaker, n) in batcher.take_lost() {
                    let labels = [("breaker", breaker.as_str().to_owned()), ("node", inner.node.as_str().to_owned())];
                    metrics::counter!(names::REPORTS_LOST, &labels).increment(n);
                }
            }
            inner.stats.reports_coalesced.fetch_add(coalesced.saturating_sub(counted.1), Ordering::Relaxed);
            counted = (lost, coalesced);
            (batch, batcher.poll_timeout())
        };
        let Some(batch) = batch else {
            let wait = timeout.map(|at| Duration::from_millis(at.since(now)));
            tokio::select! {
                () = inner.outbox.ready.notified() => {}
                () = sleep_for(wait) => {}
            }
            continue;
        };
        let count = batch.reports.len() as u64;
        let published = if inner.is_connected() { publish_batch(&inner, &subject, &batch).await } else { false };
        if published {
            lock(&inner.outbox.batcher).handle_acked(batch.seq);
            attempt = 0;
            TransportStats::bump(&inner.stats.batches_published);
            inner.stats.reports_published.fetch_add(count, Ordering::Relaxed);
        } else {
            lock(&inner.outbox.batcher).handle_failed(batch.seq);
            TransportStats::bump(&inner.stats.publish_retries);
            if inner.is_connected() {
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            } else {
                // Until the connection returns, or at most a while: the batcher gives up on
                // reports older than the stream keeps.
                let _ = tokio::time::timeout(RETRY_MAX, until_connected(&mut conn)).await;
            }
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Publishes one batch and waits for its ack: `true` if the stream has it.
async fn publish_batch(inner: &Inner, subject: &str, batch: &Batch) -> bool {
    let node_batch = NodeBatch {
        version: codec::BATCH_VERSION,
        node: inner.node.clone(),
        incarnation: inner.incarnation,
        seq: batch.seq,
        reports: batch.reports.clone(),
    };
    let payload = match codec::encode_batch(&node_batch) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(error = %e, "batch cannot be encoded");
            return false;
        }
    };
    let message = PublishMessage::build()
        .payload(payload)
        .message_id(codec::batch_msg_id(&inner.node, inner.incarnation, batch.seq))
        .header(codec::CONTENT_TYPE, codec::POSTCARD_BATCH);
    let acked = match inner.js.send_publish(subject.to_owned(), message).await {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    match acked {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(subject, error = %e, "batch publish failed; retrying");
            false
        }
    }
}
