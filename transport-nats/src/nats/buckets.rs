//! The compare-and-set writes to bucket keys ([`Cas`]: `cas`, `create`, each on the
//! connection that owns the bucket) and the direct reads of a breaker's decision from the
//! state bucket.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv, message::PublishMessage};
use breaker_actors::machine::BreakerName;
use breaker_actors::transport::{DecisionRead, Revision, TransportError};
use bytes::Bytes;

use super::Inner;
use crate::codec;

/// Whether a publish was refused because the key had moved on. Besides "wrong last
/// sequence" (10071), a clustered stream answers a CAS that raced another proposal with
/// "wrong last sequence constant" (10164), which async-nats reports as `Other`.
fn is_cas_conflict(e: &jetstream::context::PublishError) -> bool {
    if e.kind() == PublishErrorKind::WrongLastSequence {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

/// The result of a compare-and-set publish to a bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cas {
    /// Written at this revision.
    Written(Revision),
    /// The key had moved on from the expected revision.
    Conflict,
}

impl Cas {
    pub(super) fn revision(self) -> Option<Revision> {
        match self {
            Self::Written(revision) => Some(revision),
            Self::Conflict => None,
        }
    }
}

impl Inner {
    /// The connection that writes to `bucket`: lease upkeep has one of its own, so that it
    /// never queues behind the node's reports and decisions.
    fn js_for(&self, bucket: &kv::Store) -> &jetstream::Context {
        if bucket.name == self.leases.name { &self.lease_js } else { &self.js }
    }

    fn kv_subject(bucket: &kv::Store, key: &str) -> String {
        format!("$KV.{}.{key}", bucket.name)
    }

    /// Publishes `payload` to `key` of `bucket` if the key's last revision is `expected`.
    pub(super) async fn cas(
        &self,
        bucket: &kv::Store,
        key: &str,
        payload: Bytes,
        expected: Revision,
        extra: Option<(&'static str, &'static str)>,
        ttl: Option<Duration>,
    ) -> Result<Cas, TransportError> {
        let mut message = PublishMessage::build().payload(payload).expected_last_subject_sequence(expected);
        if let Some((name, value)) = extra {
            message = message.header(name, value);
        }
        if let Some(ttl) = ttl {
            message = message.ttl(ttl);
        }
        let ack = match self.js_for(bucket).send_publish(Self::kv_subject(bucket, key), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => Ok(Cas::Written(ack.sequence)),
            Err(e) if is_cas_conflict(&e) => Ok(Cas::Conflict),
            Err(e) => Err(self.failure(e)),
        }
    }

    pub(super) async fn read(&self, breaker: &BreakerName) -> Result<DecisionRead, TransportError> {
        let entry = self.stores.state.entry(breaker.as_str()).await.map_err(|e| self.failure(e))?;
        Ok(self.decision_read(breaker, entry))
    }

    fn decision_read(&self, breaker: &BreakerName, entry: Option<kv::Entry>) -> DecisionRead {
        let Some(entry) = entry else { return DecisionRead { decision: None, revision: 0 } };
        if entry.operation != kv::Operation::Put {
            return DecisionRead { decision: None, revision: entry.revision };
        }
        match codec::decode_decision(breaker, &entry.value, &self.limits) {
            Ok(decision) => DecisionRead { decision: Some(decision), revision: entry.revision },
            Err(e) => {
                // Unreadable: offered as no value at its revision, so a decider overwrites it.
                self.stats.reject("decision", breaker.as_str(), &e);
                DecisionRead { decision: None, revision: entry.revision }
            }
        }
    }

    /// Creates `key` if it has no value: absent, or its last entry is a delete, purge or
    /// expiry marker. (`kv::Store::create_with_ttl` drops the TTL on its marker path, hence
    /// this one.)
    pub(super) async fn create(
        &self,
        bucket: &kv::Store,
        key: &str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Cas, TransportError> {
        if let Cas::Written(revision) = self.cas(bucket, key, payload.clone(), 0, None, ttl).await? {
            return Ok(Cas::Written(revision));
        }
        match bucket.entry(key).await.map_err(|e| self.failure(e))? {
            Some(e) if e.operation != kv::Operation::Put => self.cas(bucket, key, payload, e.revision, None, ttl).await,
            _ => Ok(Cas::Conflict),
        }
    }
}
