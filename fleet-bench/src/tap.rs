//! The subject tap: a plain NATS client subscribed to everything a Fusebox node publishes
//! towards `JetStream` (`<prefix>.>` — outcomes, batches, commands —, `$KV.>` — lease,
//! decision and config writes —, `$JS.API.>` — direct gets, pulls, consumer and stream
//! requests), counting each message by what it is and where it came from. Where it came
//! from is the node named in an outcome subject, or else the reply subject, which belongs to
//! exactly one connection (a client's request multiplexer or a consumer's inbox); the
//! [`window`](crate::window) module resolves reply subjects to connections with `/connz`.
//! Nothing here knows how the transport is built, so it measures any implementation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;

use crate::{BenchError, Context};

/// Distinct (kind, origin) keys kept; beyond it messages are counted as overflow (a reply
/// subject per request would otherwise grow the table without bound).
const MAX_KEYS: usize = 200_000;

/// What a tapped message is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An outcome report or batch into the outcome stream.
    Outcome,
    /// An operator command into the control stream.
    Command,
    /// A write to a KV bucket (`$KV.<bucket>.>`), by bucket.
    KvWrite(String),
    /// A direct or API get of one message of a stream, by stream: on the state bucket's stream
    /// these are the resync reads.
    Get(String),
    /// A pull request to a consumer (`stream.consumer`).
    Pull(String),
    /// Any other `JetStream` API request, by its verb (`CONSUMER.CREATE`, `STREAM.INFO`, ...).
    Api(String),
}

/// Who sent a tapped message, as far as the message itself says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The node named in the subject.
    Node(String),
    /// A reply subject (the last token of a multiplexed one dropped), to resolve by `/connz`.
    Reply(String),
    /// No reply subject and no node in the subject.
    Unknown,
}

/// Counts by (kind, origin), and messages not kept.
#[derive(Debug, Clone, Default)]
pub struct TapCounts {
    /// Messages by what they are and who sent them.
    pub by_key: HashMap<(Kind, Origin), u64>,
    /// Messages beyond the tap's limit of distinct keys (200,000).
    pub overflow: u64,
}

impl TapCounts {
    /// What was counted since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut by_key = HashMap::new();
        for (key, count) in &self.by_key {
            let before = earlier.by_key.get(key).copied().unwrap_or(0);
            if *count > before {
                by_key.insert(key.clone(), count - before);
            }
        }
        Self { by_key, overflow: self.overflow.saturating_sub(earlier.overflow) }
    }
}

/// The running tap.
#[derive(Debug)]
pub struct Tap {
    counts: Arc<Mutex<TapCounts>>,
    task: tokio::task::JoinHandle<()>,
}

/// Classifies one message.
pub fn classify(prefix: &str, subject: &str, reply: Option<&str>) -> Option<(Kind, Origin)> {
    let origin = || match reply {
        // A multiplexed request's reply is `<inbox>.<mux>.<token>`; the connection subscribes
        // `<inbox>.<mux>.*`. A consumer's inbox (`<inbox>.<id>`) is subscribed as it is.
        Some(r) if r.matches('.').count() >= 2 => Origin::Reply(r.rsplit_once('.').map_or(r, |(p, _)| p).to_owned()),
        Some(r) => Origin::Reply(r.to_owned()),
        None => Origin::Unknown,
    };
    if let Some(rest) = subject.strip_prefix(prefix).and_then(|s| s.strip_prefix('.')) {
        let mut tokens = rest.split('.');
        return match tokens.next()? {
            // `<prefix>.out.<breaker>.<node>` and `<prefix>.batch.<node>`: the node is last.
            "out" | "batch" => {
                Some((Kind::Outcome, rest.rsplit('.').next().map_or_else(origin, |n| Origin::Node(n.to_owned()))))
            }
            "ctl" => Some((Kind::Command, origin())),
            _ => None,
        };
    }
    if let Some(rest) = subject.strip_prefix("$KV.") {
        let bucket = rest.split('.').next().unwrap_or_default();
        return Some((Kind::KvWrite(bucket.to_owned()), origin()));
    }
    let api = subject.strip_prefix("$JS.API.")?;
    if let Some(rest) = api.strip_prefix("DIRECT.GET.").or_else(|| api.strip_prefix("STREAM.MSG.GET.")) {
        let stream = rest.split('.').next().unwrap_or_default();
        return Some((Kind::Get(stream.to_owned()), origin()));
    }
    if let Some(rest) = api.strip_prefix("CONSUMER.MSG.NEXT.") {
        return Some((Kind::Pull(rest.to_owned()), origin()));
    }
    let verb: Vec<&str> = api.split('.').take(2).collect();
    Some((Kind::Api(verb.join(".")), origin()))
}

impl Tap {
    /// Subscribes on `client` (a connection of the bench's own) and counts until dropped.
    pub async fn start(client: &async_nats::Client, prefix: &str) -> Result<Self, BenchError> {
        let mut subscriptions = Vec::new();
        for subject in [format!("{prefix}.>"), "$KV.>".to_owned(), "$JS.API.>".to_owned()] {
            subscriptions.push(client.subscribe(subject.clone()).await.doing(format!("tapping {subject}"))?);
        }
        client.flush().await.doing("flushing the tap's subscriptions")?;
        let counts = Arc::new(Mutex::new(TapCounts::default()));
        let shared = counts.clone();
        let prefix = prefix.to_owned();
        let task = tokio::spawn(async move {
            let mut all = futures_util::stream::select_all(subscriptions);
            while let Some(message) = all.next().await {
                let Some(key) = classify(
                    &prefix,
                    message.subject.as_str(),
                    message.reply.as_ref().map(async_nats::Subject::as_str),
                ) else {
                    continue;
                };
                let mut counts = shared.lock().unwrap_or_else(PoisonError::into_inner);
                let room = counts.by_key.len() < MAX_KEYS;
                match counts.by_key.get_mut(&key) {
                    Some(count) => *count += 1,
                    None if room => {
                        counts.by_key.insert(key, 1);
                    }
                    None => counts.overflow += 1,
                }
            }
        });
        Ok(Self { counts, task })
    }

    /// Everything counted so far.
    pub fn counts(&self) -> TapCounts {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
