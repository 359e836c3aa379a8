//! The tuning lifecycle's one rule: which config a breaker runs on when a node's own
//! config and the fleet's (the config bucket's record) differ. Pure, so that the registry,
//! the in-memory transport's tests and the simulator apply the same rule.
//!
//! Configs carry a declared [`version`](BreakerConfig::version). A node registering a
//! breaker publishes its config if the fleet has none, replaces the fleet's if its own
//! version is higher (a rolling deploy of a retuned breaker: the new pods win), and follows
//! the fleet's otherwise (an old pod restarted during the rollout, or an operator's
//! `fusebox config set`, which takes the next version) with a warning. `docs/tuning.md`
//! is the guide.

use serde::{Deserialize, Serialize};

use super::config::BreakerConfig;
use super::domain::MAX_TEXT_LEN;
use super::names::NodeId;

/// Who put a config in the config bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum ConfigSource {
    /// A node registered the breaker with it (a deploy).
    Deployed {
        /// The node.
        node: NodeId,
    },
    /// An operator set it (`fusebox config set`).
    Operator {
        /// Who (at most [`MAX_TEXT_LEN`] characters).
        actor: String,
        /// Why (at most [`MAX_TEXT_LEN`] characters).
        reason: String,
    },
    /// Written before sources were recorded.
    Unknown,
}

impl ConfigSource {
    /// Whether its free text fits [`MAX_TEXT_LEN`].
    pub fn is_within_limits(&self) -> bool {
        match self {
            Self::Operator { actor, reason } => actor.len() <= MAX_TEXT_LEN && reason.len() <= MAX_TEXT_LEN,
            Self::Deployed { .. } | Self::Unknown => true,
        }
    }
}

/// A breaker's config as the fleet holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRecord {
    /// The config (its version included).
    pub config: BreakerConfig,
    /// Who set it.
    pub source: ConfigSource,
}

/// What a node registering a breaker does about the fleet's config.
#[derive(Debug, Clone, PartialEq)]
pub enum Tuning {
    /// The fleet has none: publish the node's own.
    Publish,
    /// The fleet runs the node's config already.
    Keep,
    /// The node's version is newer: replace the fleet's (CAS on the record read) and tell
    /// the decider ([`CommandKind::Reconfigure`](super::CommandKind::Reconfigure)).
    Replace {
        /// The version replaced.
        previous: u64,
    },
    /// The fleet's is newer, the same version with other settings, or an operator's: run
    /// on the fleet's, and warn.
    Follow {
        /// The fleet's config.
        fleet: Box<BreakerConfig>,
    },
}

/// The rule (see the module documentation).
pub fn resolve(local: &BreakerConfig, fleet: Option<&ConfigRecord>) -> Tuning {
    match fleet {
        None => Tuning::Publish,
        Some(f) if f.config == *local => Tuning::Keep,
        Some(f) if local.version > f.config.version => Tuning::Replace { previous: f.config.version },
        Some(f) => Tuning::Follow { fleet: Box::new(f.config.clone()) },
    }
}

/// The version an operator's `config set` of `wanted` takes over the fleet's `current`:
/// the one it declares if that is newer, else the next one, so that the set wins over every
/// node running the current version, and a later deploy wins only by declaring more.
pub fn operator_version(wanted: &BreakerConfig, current: Option<&ConfigRecord>) -> u64 {
    let current = current.map_or(0, |c| c.config.version);
    wanted.version.max(current.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, quorum: u32) -> BreakerConfig {
        BreakerConfig { version, quorum, ..BreakerConfig::default() }
    }

    fn deployed(config: BreakerConfig) -> ConfigRecord {
        ConfigRecord {
            config,
            source: ConfigSource::Deployed { node: NodeId::new("n1").unwrap_or_else(|_| unreachable!()) },
        }
    }

    #[test]
    fn the_rule_publishes_keeps_replaces_and_follows() {
        assert_eq!(resolve(&v(1, 1), None), Tuning::Publish);
        assert_eq!(resolve(&v(1, 1), Some(&deployed(v(1, 1)))), Tuning::Keep);
        assert_eq!(resolve(&v(2, 2), Some(&deployed(v(1, 1)))), Tuning::Replace { previous: 1 });
        // An old pod restarted during a rollout follows the new version.
        assert_eq!(resolve(&v(1, 1), Some(&deployed(v(2, 2)))), Tuning::Follow { fleet: Box::new(v(2, 2)) });
        // The same version with other settings: the fleet's stands (first come).
        assert_eq!(resolve(&v(1, 2), Some(&deployed(v(1, 1)))), Tuning::Follow { fleet: Box::new(v(1, 1)) });
    }

    #[test]
    fn an_operator_set_takes_the_next_version_unless_it_declares_more() {
        assert_eq!(operator_version(&v(1, 1), None), 1);
        assert_eq!(operator_version(&v(1, 3), Some(&deployed(v(4, 1)))), 5);
        assert_eq!(operator_version(&v(9, 3), Some(&deployed(v(4, 1)))), 9);
        // The set then wins over every node running version 4 (they follow it) ...
        let set = ConfigRecord { config: v(5, 3), source: ConfigSource::Unknown };
        assert!(matches!(resolve(&v(4, 1), Some(&set)), Tuning::Follow { .. }));
        // ... until a deploy declares more.
        assert_eq!(resolve(&v(6, 1), Some(&set)), Tuning::Replace { previous: 5 });
    }
}
