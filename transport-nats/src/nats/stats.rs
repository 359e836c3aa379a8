//! [`TransportStats`]: what a node's transport rejected, published and lost, as counters
//! ([`StatsSnapshot`] a copy of them), and the refused-messages metric with its
//! [`REFUSED_SOURCES`].

use std::sync::atomic::{AtomicU64, Ordering};

use breaker_actors::machine::NodeId;
use breaker_actors::observe::names;

use crate::codec::DecodeError;

/// What a node's transport rejected, published and lost so far.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// The node, the `node` label of the refused-messages counter.
    node: String,
    rejected_outcomes: AtomicU64,
    rejected_commands: AtomicU64,
    rejected_decisions: AtomicU64,
    rejected_configs: AtomicU64,
    pub(super) reports_published: AtomicU64,
    pub(super) reports_coalesced: AtomicU64,
    pub(super) reports_lost: AtomicU64,
    pub(super) publish_retries: AtomicU64,
    pub(super) outcomes_delivered: AtomicU64,
    pub(super) batches_published: AtomicU64,
    rejected_describes: AtomicU64,
    pub(super) describes_answered: AtomicU64,
}

/// A copy of [`TransportStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Outcome messages rejected by the decoder (malformed, oversized, unknown version,
    /// wrong breaker or node, bad subject).
    pub rejected_outcomes: u64,
    /// Control messages rejected by the decoder.
    pub rejected_commands: u64,
    /// State-bucket values rejected by the decoder.
    pub rejected_decisions: u64,
    /// Config-bucket values rejected by the decoder.
    pub rejected_configs: u64,
    /// Reports acknowledged by the stream (inside batches).
    pub reports_published: u64,
    /// Reports merged into a report still waiting to be published.
    pub reports_coalesced: u64,
    /// Reports given up on (buffer full while unreachable, or older than the stream keeps).
    pub reports_lost: u64,
    /// Publish attempts that failed and were retried.
    pub publish_retries: u64,
    /// Reports (own or foreign) handed to a decider's inbox.
    pub outcomes_delivered: u64,
    /// Messages of reports acknowledged by the stream (each a batch of every breaker's).
    pub batches_published: u64,
    /// Describe requests refused (no reply subject, a bad subject, undecodable): not
    /// answered.
    pub rejected_describes: u64,
    /// Describe requests this node answered (as the breaker's decider).
    pub describes_answered: u64,
}

impl TransportStats {
    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            rejected_outcomes: get(&self.rejected_outcomes),
            rejected_commands: get(&self.rejected_commands),
            rejected_decisions: get(&self.rejected_decisions),
            rejected_configs: get(&self.rejected_configs),
            reports_published: get(&self.reports_published),
            reports_coalesced: get(&self.reports_coalesced),
            reports_lost: get(&self.reports_lost),
            publish_retries: get(&self.publish_retries),
            outcomes_delivered: get(&self.outcomes_delivered),
            batches_published: get(&self.batches_published),
            rejected_describes: get(&self.rejected_describes),
            describes_answered: get(&self.describes_answered),
        }
    }

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stats of `node`'s transport, its refused-message series registered at 0 (every source
    /// and kind: `rate()` works from the first scrape).
    pub(super) fn new(node: &NodeId) -> Self {
        let stats = Self { node: node.as_str().to_owned(), ..Self::default() };
        for source in REFUSED_SOURCES {
            for kind in DecodeError::KINDS {
                stats.refused(source, kind).increment(0);
            }
        }
        stats
    }

    fn refused(&self, source: &'static str, kind: &'static str) -> metrics::Counter {
        let labels = [("node", self.node.clone()), ("source", source.to_owned()), ("kind", kind.to_owned())];
        metrics::counter!(names::REFUSED_MESSAGES, &labels)
    }

    pub(super) fn reject(&self, source: &'static str, subject: &str, error: &DecodeError) {
        let counter = match source {
            "outcome" => &self.rejected_outcomes,
            "command" => &self.rejected_commands,
            "decision" => &self.rejected_decisions,
            "describe" => &self.rejected_describes,
            _ => &self.rejected_configs,
        };
        Self::bump(counter);
        self.refused(source, error.kind()).increment(1);
        tracing::warn!(source, subject, %error, "rejected a message");
    }
}

/// Where a refused message came from: the `source` values of `fusebox_refused_messages_total`.
pub const REFUSED_SOURCES: [&str; 7] = ["outcome", "command", "decision", "describe", "config", "lease", "term_record"];
