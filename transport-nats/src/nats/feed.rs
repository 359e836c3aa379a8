//! What a deciding node consumes, shared across its breakers: [`ReportFeed`], one consumer
//! of the whole outcome stream per node (Rust nodes' batches and foreign per-breaker
//! reports), demultiplexed to the inboxes of the breakers this node decides; and
//! [`NodeCommands`], the node's pulls from the fleet's one durable command consumer.
//!
//! The feed exists while the node decides at least one breaker. Each registration says from
//! which stream sequence on it still needs reports: a breaker that starts deciding needs the
//! retained window (from the start), one already fed needs what comes next. When a breaker
//! joins a running feed, the feed starts again from the smallest such sequence, and every
//! other breaker skips what it already had (registrations arriving together share one
//! restart). So consumers on the outcome stream are bounded by the nodes, not by nodes x
//! breakers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use breaker_actors::machine::{Arrival, BreakerName, Input, Report};
use breaker_actors::shell::{TenantChange, Tenants};
use breaker_actors::transport::{Inbox, Subscription};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::error::backend;
use super::session::{Session, keep_running, pull};
use super::{Inner, TransportStats, lock};
use crate::codec::{self, DecodeError, Outcome};

/// Messages per pull request; the inbox bounds how far a decider runs ahead.
const PULL_BATCH: usize = 64;
/// How long the server keeps a decider's report consumer after the decider went away.
const EPHEMERAL_IDLE: Duration = Duration::from_secs(10);
/// How long an operator command may sit unacknowledged with a decider before another
/// decider gets it.
const COMMAND_ACK_WAIT: Duration = Duration::from_secs(10);
/// How long an idle durable command consumer is kept.
const COMMAND_CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// How long registrations arriving together are gathered before the feed starts again.
const REJOIN_GATHER: Duration = Duration::from_millis(20);
/// Deliveries of a command offered at once to whichever decider pulls next.
const COMMAND_FAST_OFFERS: i64 = 8;

/// The breakers registered with one node-wide consumer task, by the shell's rule
/// ([`Tenants`]: from the first registration to the last), and the task (the report feed
/// and the command pulls hold one each).
struct Tenanted<R> {
    tenants: Tenants<R>,
    task: Option<JoinHandle<()>>,
}

impl<R> Default for Tenanted<R> {
    fn default() -> Self {
        Self { tenants: Tenants::default(), task: None }
    }
}

impl<R> Tenanted<R> {
    /// Registers `breaker`; starts the task if none runs. `true` if one was running.
    fn join(&mut self, breaker: &BreakerName, reg: R, start: impl FnOnce() -> JoinHandle<()>) -> bool {
        if self.tenants.join(breaker, reg) == TenantChange::Start {
            self.task = Some(start());
            return false;
        }
        true
    }

    /// Takes `breaker`'s registration back; the last one out stops the task (an ephemeral
    /// consumer behind it is dropped by the server after its inactivity threshold).
    fn leave(&mut self, breaker: &BreakerName) {
        if self.tenants.leave(breaker) == TenantChange::Stop
            && let Some(task) = self.task.take()
        {
            task.abort();
        }
    }
}

struct Registration {
    inbox: Inbox,
    /// The first stream sequence it still needs (0: everything retained).
    from: u64,
    /// Whether a session has fed it (from then on it needs only what follows).
    fed: bool,
}

#[derive(Default)]
struct FeedState {
    tenants: Tenanted<Registration>,
    /// The next stream sequence the running session will deliver.
    position: u64,
}

/// The node's report feed: see the module documentation.
#[derive(Default)]
pub(crate) struct ReportFeed {
    state: Mutex<FeedState>,
    /// A breaker joined that needs reports before the session's position.
    rejoin: AtomicBool,
    /// Rung with `rejoin`: a session waiting for messages starts again at once.
    rejoined: tokio::sync::Notify,
}

impl ReportFeed {
    /// Feeds `breaker`'s reports, from the retained window on, into `inbox`.
    pub(crate) fn register(self: &Arc<Self>, inner: &Arc<Inner>, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        {
            let mut state = lock(&self.state);
            let reg = Registration { inbox, from: 0, fed: false };
            let running = state.tenants.join(breaker, reg, || tokio::spawn(feed_loop(inner.clone(), self.clone())));
            if !running {
                state.position = 0;
            } else if state.position > 0 {
                self.rejoin.store(true, Ordering::SeqCst);
                self.rejoined.notify_one();
            }
        }
        let (me, breaker) = (self.clone(), breaker.clone());
        Subscription::from_cleanup(move || lock(&me.state).tenants.leave(&breaker))
    }

    /// Where the next session starts: the smallest sequence a registration still needs.
    fn start(&self) -> u64 {
        let mut state = lock(&self.state);
        let position = state.position;
        for reg in state.tenants.tenants.values_mut() {
            // Registrations that were fed up to `position` need nothing before it again.
            if reg.fed {
                reg.from = reg.from.max(position);
            }
            reg.fed = true;
        }
        let start = state.tenants.tenants.values().map(|r| r.from).min().unwrap_or(0);
        state.position = start;
        start
    }

    /// The inbox that needs `breaker`'s report at stream sequence `sequence`.
    fn inbox_for(&self, breaker: &BreakerName, sequence: u64) -> Option<Inbox> {
        let state = lock(&self.state);
        state.tenants.tenants.get(breaker).filter(|r| r.from <= sequence).map(|r| r.inbox.clone())
    }

    fn advance(&self, next: u64) {
        lock(&self.state).position = next;
    }
}

/// The feed's consumer, (re)created from [`ReportFeed::start`] after errors and whenever a
/// breaker joined that needs earlier reports.
async fn feed_loop(inner: Arc<Inner>, feed: Arc<ReportFeed>) {
    keep_running(inner.conn.clone(), "report feed", async move || {
        if feed.rejoin.swap(false, Ordering::SeqCst) {
            // Gather the breakers that start deciding together into one restart.
            tokio::time::sleep(REJOIN_GATHER).await;
            feed.rejoin.store(false, Ordering::SeqCst);
        }
        let start = feed.start();
        let deliver_policy = if start == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: start }
        };
        // A plain ephemeral pull consumer with fast heartbeats: a decider must not go deaf
        // for long when its server dies.
        let config = consumer::pull::Config {
            filter_subject: inner.layout.outcome_subjects(),
            deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: EPHEMERAL_IDLE,
            memory_storage: true,
            ..Default::default()
        };
        let consumer = inner.stores.outcomes.create_consumer(config).await.map_err(backend)?;
        // A report's age is the server's now less the server's timestamp of it: the
        // server's clock at the consumer's creation, moved on by this node's monotonic
        // clock. No clock of this node is compared with the server's.
        let server_then = consumer.cached_info().created.unix_timestamp_nanos();
        let here_then = std::time::Instant::now();
        let mut messages = pull(&consumer, PULL_BATCH).await?;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = feed.rejoined.notified() => None,
            };
            let Some(Ok(message)) = message else { break };
            if feed.rejoin.load(Ordering::SeqCst) {
                return Ok(Session::Retry);
            }
            let Ok((sequence, published, pending)) =
                message.info().map(|i| (i.stream_sequence, i.published.unix_timestamp_nanos(), i.pending))
            else {
                continue;
            };
            let server_now =
                server_then.saturating_add(i128::try_from(here_then.elapsed().as_nanos()).unwrap_or(i128::MAX));
            let age_ms = u64::try_from(server_now.saturating_sub(published).max(0) / 1_000_000).unwrap_or(u64::MAX);
            let arrival = Arrival { age_ms, backlog: pending > 0 };
            for report in inner.decode_reports(&message, sequence) {
                let Some(inbox) = feed.inbox_for(&report.breaker, sequence) else { continue };
                // A closed inbox is a breaker that stopped deciding: the others go on.
                if inbox.push(Input::Report { report, arrival }, None).await.is_ok() {
                    TransportStats::bump(&inner.stats.outcomes_delivered);
                }
            }
            feed.advance(sequence + 1);
        }
        Ok(Session::Retry)
    })
    .await;
}

impl Inner {
    /// Decodes one message of the outcome stream into reports, counting what it rejects: a
    /// node's batch (every report that checks) or one breaker's report (Rust or foreign).
    fn decode_reports(&self, message: &jetstream::Message, sequence: u64) -> Vec<Report> {
        let subject = message.subject.as_str();
        if let Some(node) = self.layout.parse_batch_subject(subject) {
            return match codec::decode_batch(&node, &message.payload, &self.limits) {
                Ok((batch, refused)) => {
                    for error in &refused {
                        self.stats.reject("outcome", subject, error);
                    }
                    batch.reports
                }
                Err(e) => {
                    self.stats.reject("outcome", subject, &e);
                    Vec::new()
                }
            };
        }
        let Some((breaker, node)) = self.layout.parse_outcome_subject(subject) else {
            self.stats.reject("outcome", subject, &DecodeError::BadSubject { subject: subject.to_owned() });
            return Vec::new();
        };
        let content_type = message.headers.as_ref().and_then(|h| header(h, codec::CONTENT_TYPE));
        match codec::decode_outcome(&breaker, &node, content_type, &message.payload, &self.limits) {
            Ok(Outcome::Report(report)) => vec![report],
            Ok(Outcome::Foreign(foreign)) => {
                let applied = self.decisions.latest(&breaker).0;
                vec![foreign.into_report(breaker, node, sequence, applied)]
            }
            Err(e) => {
                self.stats.reject("outcome", subject, &e);
                Vec::new()
            }
        }
    }
}

/// The node's registrations with the fleet's one command consumer.
#[derive(Default)]
pub(crate) struct NodeCommands {
    state: Mutex<Tenanted<Inbox>>,
}

impl NodeCommands {
    /// Feeds `breaker`'s commands into `inbox` while the subscription lives.
    pub(crate) fn register(self: &Arc<Self>, inner: &Arc<Inner>, breaker: &BreakerName, inbox: Inbox) -> Subscription {
        lock(&self.state).join(breaker, inbox, || tokio::spawn(command_loop(inner.clone(), self.clone())));
        let (me, breaker) = (self.clone(), breaker.clone());
        Subscription::from_cleanup(move || lock(&me.state).leave(&breaker))
    }

    fn inbox(&self, breaker: &BreakerName) -> Option<Inbox> {
        lock(&self.state).tenants.get(breaker).cloned()
    }
}

/// How long a command nobody here decides waits before it is offered again, once it has
/// been offered to every decider a few times (nobody decides it: a lease gap).
const COMMAND_RETRY: Duration = Duration::from_millis(250);

/// The fleet's one durable consumer of the control stream (a work queue), which every
/// deciding node pulls from: a command for a breaker this node decides now goes to its inbox
/// and is acknowledged (taken once); any other (also one whose lease has run out on its
/// clock, which would drop it) is given back at once for another decider,
/// and, after [`COMMAND_FAST_OFFERS`] deliveries, after [`COMMAND_RETRY`].
async fn command_loop(inner: Arc<Inner>, commands: Arc<NodeCommands>) {
    let name = format!("{}_ctl", inner.layout.prefix());
    keep_running(inner.conn.clone(), "command consumer", async move || {
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: inner.layout.control_subjects(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: COMMAND_ACK_WAIT,
            max_ack_pending: 1024,
            inactive_threshold: COMMAND_CONSUMER_IDLE,
            ..Default::default()
        };
        let consumer = inner.stores.control.get_or_create_consumer(&name, config).await.map_err(backend)?;
        let mut messages = pull(&consumer, 16).await?;
        while let Some(Ok(message)) = messages.next().await {
            let subject = message.subject.as_str();
            let Some(breaker) = inner.layout.parse_control_subject(subject) else {
                inner.stats.reject("command", subject, &DecodeError::BadSubject { subject: subject.to_owned() });
                let _ = message.ack().await;
                continue;
            };
            // Only a breaker deciding now takes it: one whose lease ran out would drop it.
            let Some(inbox) = commands.inbox(&breaker).filter(Inbox::takes_commands) else {
                let delivered = message.info().map_or(1, |i| i.delivered);
                let delay = (delivered >= COMMAND_FAST_OFFERS).then_some(COMMAND_RETRY);
                let _ = message.ack_with(AckKind::Nak(delay)).await;
                continue;
            };
            match codec::decode_command(&breaker, &message.payload, &inner.limits) {
                Ok(command) => {
                    if inbox.push(Input::Command(command), None).await.is_err() {
                        // Stopped deciding meanwhile: another decider gets it.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        continue;
                    }
                }
                Err(e) => inner.stats.reject("command", subject, &e),
            }
            if let Err(e) = message.ack().await {
                tracing::debug!(subject, error = %e, "command ack failed");
            }
        }
        Ok(Session::Retry)
    })
    .await;
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(async_nats::HeaderValue::as_str)
}
