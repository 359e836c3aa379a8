//! The node's connections and their state as the breakers see it: the options each
//! connection is made with ([`connect_options`]), the event callback that tracks the state,
//! and the poller that follows a client built elsewhere.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use breaker_actors::transport::ConnState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connect::ConnectRole;
use super::session::backoff;
use super::{ConnectError, NatsConfig};

/// The options of one of the node's connections (`conn_tx`: the one whose state the
/// breakers follow): the transport's timeouts and reconnection policy, the connection
/// settings, then the hook; the state callback last, so that no hook replaces it.
pub(super) fn connect_options(
    config: &NatsConfig,
    role: ConnectRole,
    conn_tx: Option<watch::Sender<ConnState>>,
) -> Result<ConnectOptions, ConnectError> {
    let max_delay = config.max_reconnect_delay;
    let name = match role {
        ConnectRole::Main => format!("fusebox-{}", config.node),
        ConnectRole::Leases => format!("fusebox-{}-leases", config.node),
    };
    let options = ConnectOptions::new()
        .name(name)
        .connection_timeout(config.connect_timeout)
        .ping_interval(config.ping_interval.max(Duration::from_millis(10)))
        .request_timeout(Some(config.request_timeout))
        .reconnect_delay_callback(move |attempts| backoff(u32::try_from(attempts).unwrap_or(u32::MAX)).min(max_delay));
    let mut options = config.connection.apply(options).map_err(ConnectError::Auth)?;
    if let Some(hook) = &config.connect_hook {
        options = hook.call(role, options);
    }
    if let Some(conn_tx) = conn_tx {
        options = options.event_callback(move |event| {
            let conn_tx = conn_tx.clone();
            async move { on_event(&conn_tx, &event) }
        });
    }
    Ok(options)
}

fn on_event(conn: &watch::Sender<ConnState>, event: &Event) {
    match event {
        Event::Connected => conn.send_modify(|s| s.connected = true),
        Event::Disconnected | Event::Closed => conn.send_modify(|s| {
            if s.connected {
                s.connected = false;
                s.losses += 1;
            }
        }),
        _ => {}
    }
    tracing::debug!(%event, "nats connection event");
}

/// How often a client the transport did not build is asked for its connection state.
const STATE_POLL: Duration = Duration::from_millis(20);

/// The state of `client` as the breakers see it: connected or not, and how many times the
/// connection was lost (each reconnection since `first_connects` ended one loss; being
/// down now is one more).
pub(super) fn connection_state(client: &async_nats::Client, first_connects: u64) -> ConnState {
    let reconnections = client.statistics().connects.load(Ordering::Relaxed).saturating_sub(first_connects);
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    ConnState { connected, losses: reconnections + u64::from(!connected) }
}

/// Follows the state of a client built elsewhere (no event callback of ours) by polling.
pub(super) async fn follow_connection(client: async_nats::Client, conn_tx: watch::Sender<ConnState>) {
    let first_connects = client.statistics().connects.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval(STATE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut now = connection_state(&client, first_connects);
        conn_tx.send_if_modified(|seen| {
            // The count and the state are two reads: one may be a step ahead of the other,
            // and the count must never go back.
            now.losses = now.losses.max(seen.losses);
            let changed = *seen != now;
            *seen = now;
            changed
        });
    }
}

/// Aborts a task when dropped, unless disarmed.
pub(super) struct AbortOnDrop(pub(super) Option<JoinHandle<()>>);

impl AbortOnDrop {
    pub(super) fn disarm(mut self) -> Option<JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
