//! The lease of a shard in the lease bucket: acquiring it under a fresh term (with the
//! shard's term record), the value and TTL a holder writes, and who holds a key just lost.

use std::time::Duration;

use async_nats::jetstream::kv;
use breaker_actors::machine::{Term, next_term};
use breaker_actors::transport::{LeaseAcquire, LeaseRequest, LeaseShard, TransportError};
use bytes::Bytes;

use super::Inner;
use super::buckets::Cas;
use super::error::backend;
use super::session::RETRY_MIN;
use crate::codec::{self, LeaseHolder, LeaseValue, TermRecord};
use crate::layout;
use crate::provision::LeaseExpiry;

/// Reads of a lease key just lost to another node before its holder counts as unknown.
const LEASE_READ_ATTEMPTS: u32 = 3;

impl Inner {
    pub(super) fn lease_ttl(&self, ttl: Duration) -> Result<Option<Duration>, TransportError> {
        match self.stores.lease_expiry {
            // TTLs are whole seconds: rounding up keeps the server's expiry after the
            // holder's own deadline (send time + ttl - margin), so two holders never overlap.
            LeaseExpiry::PerKeyTtl | LeaseExpiry::Auto => {
                let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                Ok(Some(Duration::from_secs(secs.max(1))))
            }
            LeaseExpiry::BucketMaxAge(age) if ttl <= age => Ok(None),
            LeaseExpiry::BucketMaxAge(age) => Err(TransportError::Backend(format!(
                "lease ttl {ttl:?} exceeds the lease bucket's max_age {age:?}: another node could take the lease while \
                 the holder still decides"
            ))),
        }
    }

    pub(super) fn lease_value(&self, term: Term, ttl: Duration) -> Result<Bytes, TransportError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let value = LeaseValue { version: codec::LEASE_VERSION, node: self.node.clone(), term, ttl_ms };
        Ok(Bytes::from(codec::encode_lease(&value).map_err(backend)?))
    }

    /// Acquires `shard`'s lease (see
    /// [`Transport::acquire_lease`](breaker_actors::transport::Transport::acquire_lease)):
    /// reads the shard's term record, takes the key (create, or CAS over `request.over`) with a value recording
    /// the term [`next_term`] grants, then moves the record to that term by CAS on the
    /// revision read. A record moved by someone else meanwhile means that term may be
    /// theirs too: the key is given back and the attempt fails (to be retried), so no two
    /// holders ever share a term.
    pub(super) async fn acquire(
        &self,
        shard: LeaseShard,
        request: LeaseRequest,
    ) -> Result<LeaseAcquire, TransportError> {
        let ttl = self.lease_ttl(request.ttl)?;
        let bucket = &self.leases;
        let (key, record_key) = (shard.to_string(), layout::term_record_key(shard));
        let (record, record_rev) = match bucket.entry(record_key.as_str()).await.map_err(|e| self.failure(e))? {
            None => (None, 0),
            Some(e) if e.operation != kv::Operation::Put => (None, e.revision),
            Some(e) => match codec::decode_term_record(&e.value, &self.limits) {
                Ok(record) => (Some(record), e.revision),
                Err(error) => {
                    // Overwritten below: the new term is above every one the nodes know.
                    self.stats.reject("term_record", &record_key, &error);
                    (None, e.revision)
                }
            },
        };
        let last = record.map_or(Term(0), |r| r.term);
        let term = next_term(record_rev, last, request.known);
        // A decision of a term above every one this record granted: noted for operators
        // (`fusebox status` flags it, `fusebox repair` clears it). Without a record (a
        // rebuilt bucket) stored terms above it are expected.
        let unexplained = record.and_then(|r| r.unexplained.max((request.known > r.term).then_some(request.known)));
        let value = self.lease_value(term, request.ttl)?;
        let taken = match request.over {
            Some(revision) => self.cas(bucket, &key, value, revision, None, ttl).await?,
            None => self.create(bucket, &key, value, ttl).await?,
        };
        let Cas::Written(revision) = taken else {
            return self.lease_held(&key).await;
        };
        let record = TermRecord { version: codec::LEASE_VERSION, term, unexplained };
        let record = Bytes::from(codec::encode_term_record(&record).map_err(backend)?);
        match self.cas(bucket, &record_key, record, record_rev, None, None).await {
            Ok(Cas::Written(_)) => Ok(LeaseAcquire::Granted { revision, term }),
            outcome => {
                let _ = self.cas(bucket, &key, Bytes::new(), revision, Some(("KV-Operation", "DEL")), None).await;
                Err(outcome
                    .err()
                    .unwrap_or_else(|| backend(format!("the term record of {shard} moved while acquiring"))))
            }
        }
    }

    /// What holds `key` now, for a lease manager that could not take it. Read right after
    /// losing the race, a replica may not have the winner's value yet (a direct read is
    /// answered by any replica): read again a few times, then report the key held at an
    /// unknown revision (0), which the next attempt sorts out.
    async fn lease_held(&self, key: &str) -> Result<LeaseAcquire, TransportError> {
        for attempt in 0..LEASE_READ_ATTEMPTS {
            match self.leases.entry(key).await.map_err(|e| self.failure(e))? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let ttl = match codec::decode_lease(&e.value, &self.limits) {
                        Ok(LeaseHolder::Holder(value)) => Some(Duration::from_millis(value.ttl_ms)),
                        Ok(LeaseHolder::Legacy(_)) => None,
                        Err(error) => {
                            self.stats.reject("lease", key, &error);
                            None
                        }
                    };
                    return Ok(LeaseAcquire::Held { revision: e.revision, ttl });
                }
                _ => tokio::time::sleep(RETRY_MIN * (attempt + 1)).await,
            }
        }
        Ok(LeaseAcquire::Held { revision: 0, ttl: None })
    }
}
