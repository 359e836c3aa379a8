//! How the node's long-lived work rides a connection that comes and goes: waiting for the
//! connection, the retry backoff, the sessions of consumers and watches ([`keep_running`])
//! and their pull requests.

use std::time::Duration;

use async_nats::jetstream::consumer;
use breaker_actors::transport::{ConnState, TransportError};
use tokio::sync::watch;

use super::error::backend;

/// How long a pull request waits for messages before the next is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Idle heartbeat of a pull request: two missed ones and the consumer is recreated.
const PULL_HEARTBEAT: Duration = Duration::from_millis(500);
/// Pauses between retries of a failed operation.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(20);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(1);

pub(super) fn backoff(attempt: u32) -> Duration {
    RETRY_MIN.saturating_mul(1 << attempt.min(6)).min(RETRY_MAX)
}

pub(super) async fn until_connected(conn: &mut watch::Receiver<ConnState>) -> bool {
    conn.wait_for(|c| c.connected).await.is_ok()
}

/// How one session of a consumer or watch ended.
pub(super) enum Session {
    /// The stream ended or failed: open another.
    Retry,
    /// Nobody listens any more (the inbox is closed).
    Stop,
}

/// Keeps a consumer or watch going for as long as its subscription lives: waits for the
/// connection, runs `session` (open, then read until the stream ends or fails), and backs
/// off between sessions, the longer the more opens fail in a row.
pub(super) async fn keep_running(
    mut conn: watch::Receiver<ConnState>,
    what: &'static str,
    mut session: impl AsyncFnMut() -> Result<Session, TransportError>,
) {
    let mut failed_opens = 0;
    loop {
        if !until_connected(&mut conn).await {
            return;
        }
        match session().await {
            Ok(Session::Stop) => return,
            Ok(Session::Retry) => failed_opens = 0,
            Err(e) => {
                tracing::debug!(what, error = %e, "could not open; retrying");
                failed_opens += 1;
            }
        }
        tokio::time::sleep(backoff(failed_opens)).await;
    }
}

/// Pull requests of `batch` messages with fast heartbeats: a consumer lost with its server
/// shows up as an error within a second.
pub(super) async fn pull(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    batch: usize,
) -> Result<consumer::pull::Stream, TransportError> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(backend)
}
