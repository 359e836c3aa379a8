//! The NATS layout of a fleet: the names of its streams, buckets and subjects, all derived
//! from one prefix (default `fusebox`), and the parsing of an outcome subject back into its
//! breaker and node. `docs/nats.md` is the user's copy of this layout.

use std::fmt;

use breaker_actors::machine::{BreakerName, NodeId};
use breaker_actors::transport::LeaseShard;

/// The longest prefix, in bytes (it becomes part of stream, bucket and subject names).
pub const MAX_PREFIX_LEN: usize = 32;

/// The breaker token of batch subjects: `fusebox.out.~batch.<node>`.
pub const BATCH_TOKEN: &str = "~batch";

/// The prefix the layout uses when none is configured.
pub const DEFAULT_PREFIX: &str = "fusebox";

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Empty, too long, or not made of `[a-z0-9_]` starting with a letter.
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPrefix { prefix } => write!(
                f,
                "invalid NATS prefix {prefix:?}: 1..={MAX_PREFIX_LEN} bytes of [a-z0-9_], starting with a letter"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// The names of one fleet's streams, buckets and subjects.
///
/// ```
/// use transport_nats::layout::Layout;
/// let layout = Layout::default();
/// assert_eq!(layout.outcome_stream(), "FUSEBOX_OUTCOMES");
/// assert_eq!(layout.state_bucket(), "fusebox_state");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Default for Layout {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl Layout {
    /// A layout with `prefix`: lower case so that bucket names read like the documented ones and
    /// stream names are its upper-case form.
    pub fn new(prefix: &str) -> Result<Self, LayoutError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self { prefix: prefix.to_owned() })
        } else {
            Err(LayoutError::InvalidPrefix { prefix: prefix.to_owned() })
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream of outcome reports: `FUSEBOX_OUTCOMES`.
    pub fn outcome_stream(&self) -> String {
        format!("{}_OUTCOMES", self.prefix.to_ascii_uppercase())
    }

    /// The stream of operator commands: `FUSEBOX_CONTROL`.
    pub fn control_stream(&self) -> String {
        format!("{}_CONTROL", self.prefix.to_ascii_uppercase())
    }

    /// The lease bucket: `fusebox_leases`.
    pub fn lease_bucket(&self) -> String {
        format!("{}_leases", self.prefix)
    }

    /// The decision bucket: `fusebox_state`.
    pub fn state_bucket(&self) -> String {
        format!("{}_state", self.prefix)
    }

    /// The config bucket: `fusebox_config`.
    pub fn config_bucket(&self) -> String {
        format!("{}_config", self.prefix)
    }

    /// Every outcome subject: `fusebox.out.>`.
    pub fn outcome_subjects(&self) -> String {
        format!("{}.out.>", self.prefix)
    }

    /// Every outcome subject of `breaker`: `fusebox.out.<breaker>.*`.
    pub fn breaker_outcome_subjects(&self, breaker: &BreakerName) -> String {
        format!("{}.out.{breaker}.*", self.prefix)
    }

    /// The subject `node` reports `breaker`'s outcomes on: `fusebox.out.<breaker>.<node>`.
    pub fn outcome_subject(&self, breaker: &BreakerName, node: &NodeId) -> String {
        format!("{}.out.{breaker}.{node}", self.prefix)
    }

    /// The subject `node` publishes its batches of reports on: `fusebox.out.~batch.<node>`
    /// (`~` is no breaker name's character, so no breaker's subjects overlap it, and the
    /// node's permission for its own outcome subjects, `fusebox.out.*.<node>`, covers it).
    pub fn batch_subject(&self, node: &NodeId) -> String {
        format!("{}.out.{BATCH_TOKEN}.{node}", self.prefix)
    }

    /// The node of a batch subject, if `subject` is one and the node token is a valid name.
    pub fn parse_batch_subject(&self, subject: &str) -> Option<NodeId> {
        let node = subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".out.")?.strip_prefix(BATCH_TOKEN)?;
        NodeId::new(node.strip_prefix('.')?).ok()
    }

    /// Every control subject: `fusebox.ctl.>`.
    pub fn control_subjects(&self) -> String {
        format!("{}.ctl.>", self.prefix)
    }

    /// The control subject of `breaker`: `fusebox.ctl.<breaker>`.
    pub fn control_subject(&self, breaker: &BreakerName) -> String {
        format!("{}.ctl.{breaker}", self.prefix)
    }

    /// The breaker of a control subject, if `subject` is one and its token a valid name.
    pub fn parse_control_subject(&self, subject: &str) -> Option<BreakerName> {
        BreakerName::new(subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".ctl.")?).ok()
    }

    /// Every describe subject, which each node subscribes to once (core NATS, no
    /// `JetStream`): `fusebox.describe.*`.
    pub fn describe_subjects(&self) -> String {
        format!("{}.describe.*", self.prefix)
    }

    /// The subject operators send a describe request for `breaker` on:
    /// `fusebox.describe.<breaker>`.
    pub fn describe_subject(&self, breaker: &BreakerName) -> String {
        format!("{}.describe.{breaker}", self.prefix)
    }

    /// The breaker of a describe subject, if `subject` is one and its token a valid name.
    pub fn parse_describe_subject(&self, subject: &str) -> Option<BreakerName> {
        BreakerName::new(subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".describe.")?).ok()
    }

    /// The breaker and node of an outcome subject, if `subject` is one and both tokens are
    /// valid names.
    pub fn parse_outcome_subject(&self, subject: &str) -> Option<(BreakerName, NodeId)> {
        let rest = subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".out.")?;
        let (breaker, node) = rest.split_once('.')?;
        Some((BreakerName::new(breaker).ok()?, NodeId::new(node).ok()?))
    }
}

/// The lease key of `shard` in the lease bucket: `shard-3`.
pub fn lease_key(shard: LeaseShard) -> String {
    shard.to_string()
}

/// The key of `shard`'s term record in the lease bucket (the last term granted, kept
/// without a TTL): `terms.shard-3`.
pub fn term_record_key(shard: LeaseShard) -> String {
    format!("terms.{shard}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let l = Layout::new("acme_cb").unwrap();
        let b = BreakerName::new("pay-ments").unwrap();
        let n = NodeId::new("n_1").unwrap();
        assert_eq!(l.outcome_stream(), "ACME_CB_OUTCOMES");
        assert_eq!(l.control_stream(), "ACME_CB_CONTROL");
        assert_eq!(l.lease_bucket(), "acme_cb_leases");
        assert_eq!(l.config_bucket(), "acme_cb_config");
        assert_eq!(l.outcome_subject(&b, &n), "acme_cb.out.pay-ments.n_1");
        assert_eq!(l.control_subject(&b), "acme_cb.ctl.pay-ments");
        assert_eq!(l.parse_outcome_subject("acme_cb.out.pay-ments.n_1"), Some((b.clone(), n.clone())));
        assert_eq!(l.batch_subject(&n), "acme_cb.out.~batch.n_1");
        assert_eq!(l.parse_batch_subject("acme_cb.out.~batch.n_1"), Some(n));
        assert_eq!(l.parse_outcome_subject("acme_cb.out.~batch.n_1"), None, "no breaker is called ~batch");
        assert_eq!(l.parse_batch_subject("acme_cb.out.~batch.n.1"), None);
        assert_eq!(l.parse_control_subject("acme_cb.ctl.pay-ments"), BreakerName::new("pay-ments").ok());
        assert_eq!(l.parse_control_subject("acme_cb.ctl.pay.ments"), None);
        assert_eq!(l.describe_subjects(), "acme_cb.describe.*");
        assert_eq!(l.describe_subject(&b), "acme_cb.describe.pay-ments");
        assert_eq!(l.parse_describe_subject("acme_cb.describe.pay-ments"), Some(b));
        assert_eq!(l.parse_describe_subject("acme_cb.describe.pay.ments"), None);
        assert_eq!(l.parse_describe_subject("acme_cb.ctl.pay-ments"), None);
    }

    #[test]
    fn bad_prefixes_and_subjects_are_refused() {
        for bad in ["", "Fusebox", "fuse.box", "fuse>", "1fuse", &"a".repeat(MAX_PREFIX_LEN + 1)] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
        let l = Layout::default();
        for bad in ["fusebox.out.b", "fusebox.out.b.n.x", "fusebox.ctl.b.n", "other.out.b.n", "fusebox.out.b.*"] {
            assert_eq!(l.parse_outcome_subject(bad), None, "{bad:?}");
        }
    }
}
