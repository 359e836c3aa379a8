//! [`Tenants`]: the breakers registered with one node-wide consumer, pure. The consumer runs
//! from the first registration to the last, whatever the number of breakers in between: this
//! is the rule that keeps a node's `JetStream` consumers independent of its breakers. The NATS
//! transport's report feed and command pulls hold one each (beside the task they start and
//! stop), and `model-check`'s scale preset counts consumers by the same rule.

use std::collections::HashMap;

use crate::machine::BreakerName;

/// What a registration change asks of the node-wide consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantChange {
    /// The first registration: start it.
    Start,
    /// The last one left: stop it.
    Stop,
    /// It runs on (or stays stopped).
    Unchanged,
}

/// The registrations of one node-wide consumer; see the module documentation.
#[derive(Debug, Clone)]
pub struct Tenants<R> {
    regs: HashMap<BreakerName, R>,
}

impl<R> Default for Tenants<R> {
    fn default() -> Self {
        Self { regs: HashMap::new() }
    }
}

impl<R> Tenants<R> {
    /// Whether the consumer runs (some breaker is registered).
    pub fn is_running(&self) -> bool {
        !self.regs.is_empty()
    }

    /// Breakers registered.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// `breaker`'s registration.
    pub fn get(&self, breaker: &BreakerName) -> Option<&R> {
        self.regs.get(breaker)
    }

    /// Every registration.
    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.regs.values()
    }

    /// Every registration, to update.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut R> {
        self.regs.values_mut()
    }

    /// Registers `breaker` (again: the new registration replaces the old).
    pub fn join(&mut self, breaker: &BreakerName, reg: R) -> TenantChange {
        let first = self.regs.is_empty();
        self.regs.insert(breaker.clone(), reg);
        if first { TenantChange::Start } else { TenantChange::Unchanged }
    }

    /// Takes `breaker`'s registration back.
    pub fn leave(&mut self, breaker: &BreakerName) -> TenantChange {
        if self.regs.remove(breaker).is_some() && self.regs.is_empty() {
            TenantChange::Stop
        } else {
            TenantChange::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_consumer_runs_from_the_first_registration_to_the_last() {
        let (a, b) = (BreakerName::new("a").unwrap(), BreakerName::new("b").unwrap());
        let mut t = Tenants::default();
        assert_eq!(t.join(&a, 1), TenantChange::Start);
        assert_eq!(t.join(&b, 2), TenantChange::Unchanged);
        assert_eq!(t.join(&a, 3), TenantChange::Unchanged, "a registration again replaces");
        assert_eq!(t.get(&a), Some(&3));
        assert_eq!(t.leave(&a), TenantChange::Unchanged);
        assert_eq!(t.leave(&a), TenantChange::Unchanged, "twice is harmless");
        assert_eq!(t.leave(&b), TenantChange::Stop);
        assert!(!t.is_running());
        assert_eq!(t.leave(&b), TenantChange::Unchanged, "nothing to stop");
    }
}
