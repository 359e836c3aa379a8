//! [`LeaseStore`]: the simulated lease bucket (one key per lease shard, revisions from one
//! counter, a term record per shard, expiry on the server's clock). The fleet harness and
//! the scale preset serve every node's `LeaseKeeper` from it; terms come from the real
//! [`next_term`], so a rebuilt bucket never hands out terms below the stored decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use breaker_actors::machine::{Term, next_term};
use breaker_actors::shell::RenewAnswer;
use breaker_actors::transport::{LeaseAcquire, LeaseShard};

/// A lease key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The holder's index.
    pub holder: usize,
    /// The holder's incarnation.
    pub incarnation: u64,
    /// The term granted.
    pub term: Term,
    /// When the key expires, on the server clock (sim time).
    pub expires_at: u64,
    /// The key's revision (every create, update and delete bumps the store's counter).
    pub revision: u64,
}

/// The simulated lease bucket; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    ttl_ms: u64,
    keys: BTreeMap<LeaseShard, Lease>,
    revision: u64,
    terms: BTreeMap<LeaseShard, Term>,
}

impl LeaseStore {
    /// An empty bucket whose keys live `ttl_ms` past their last write.
    pub fn new(ttl_ms: u64) -> Self {
        Self { ttl_ms, keys: BTreeMap::new(), revision: 0, terms: BTreeMap::new() }
    }

    /// `shard`'s lease, unless it expired by `now`.
    pub fn get(&self, shard: LeaseShard, now: u64) -> Option<Lease> {
        self.keys.get(&shard).copied().filter(|l| l.expires_at > now)
    }

    /// Every unexpired lease.
    pub fn leases(&self, now: u64) -> impl Iterator<Item = (LeaseShard, Lease)> + '_ {
        self.keys.iter().filter(move |(_, l)| l.expires_at > now).map(|(s, l)| (*s, *l))
    }

    /// Drops the keys expired by `now`; whether any was (the expiry marker every lease watch
    /// sees).
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.keys.len();
        self.keys.retain(|_, l| l.expires_at > now);
        self.keys.len() != before
    }

    /// An acquisition by `holder` (`known`: the newest term it knows for the shard; `over`:
    /// a stale value to replace).
    pub fn acquire(
        &mut self,
        shard: LeaseShard,
        holder: usize,
        incarnation: u64,
        known: Term,
        over: Option<u64>,
        now: u64,
    ) -> LeaseAcquire {
        if let Some(l) = self.get(shard, now).filter(|l| over != Some(l.revision)) {
            return LeaseAcquire::Held { revision: l.revision, ttl: Some(Duration::from_millis(self.ttl_ms)) };
        }
        self.revision += 1;
        let record = self.terms.entry(shard).or_insert(Term(0));
        let term = next_term(self.revision, *record, known);
        *record = term;
        let revision = self.revision;
        self.keys.insert(shard, Lease { holder, incarnation, term, expires_at: now + self.ttl_ms, revision });
        LeaseAcquire::Granted { revision, term }
    }

    /// A renewal by CAS on `revision`.
    pub fn renew(&mut self, shard: LeaseShard, revision: u64, now: u64) -> RenewAnswer {
        let ttl_ms = self.ttl_ms;
        let next = self.revision + 1;
        match self.keys.get_mut(&shard).filter(|l| l.expires_at > now && l.revision == revision) {
            Some(l) => {
                self.revision = next;
                l.revision = next;
                l.expires_at = now + ttl_ms;
                RenewAnswer::Renewed(next)
            }
            None => RenewAnswer::Lost,
        }
    }

    /// A delete on `revision`: whether it deleted the key.
    pub fn release(&mut self, shard: LeaseShard, revision: u64) -> bool {
        if self.keys.get(&shard).is_some_and(|l| l.revision == revision) {
            self.revision += 1;
            self.keys.remove(&shard);
            return true;
        }
        false
    }

    /// The bucket deleted and recreated: no key, no term record, revisions from 1 again.
    pub fn wipe(&mut self) {
        self.keys.clear();
        self.terms.clear();
        self.revision = 0;
    }
}
