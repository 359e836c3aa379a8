//! Validated names: breaker names and node ids.
//!
//! Both become one NATS subject token and one KV key later, so they are restricted to
//! `[A-Za-z0-9_-]`, 1 to 64 bytes. Validation happens once, at the boundary; everything
//! inside the machine holds the validated types.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest breaker name or node id, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9_-]`.
    InvalidChar {
        /// The first offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "name is empty"),
            Self::TooLong { len } => {
                write!(f, "name is {len} bytes long, at most {MAX_NAME_LEN} allowed")
            }
            Self::InvalidChar { ch, at } => {
                write!(f, "name has {ch:?} at byte {at}; only A-Z, a-z, 0-9, '_' and '-' are allowed")
            }
        }
    }
}

impl std::error::Error for NameError {}

fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some((at, ch)) = name.char_indices().find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        return Err(NameError::InvalidChar { ch, at });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// Validates `name` (`[A-Za-z0-9_-]`, 1 to 64 bytes).
            pub fn new(name: &str) -> Result<Self, NameError> {
                validate(name)?;
                Ok(Self(Arc::from(name)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// The name of a breaker, unique in a fleet: one subject token, one KV key.
    BreakerName
);
validated_name!(
    /// The id of a node (one process of a service), unique in a fleet.
    NodeId
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_subject_safe_names() {
        for ok in ["a", "payments-api", "node_07", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(BreakerName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_would_break_a_subject_or_key() {
        assert_eq!(NodeId::new(""), Err(NameError::Empty));
        assert_eq!(NodeId::new(&"x".repeat(65)), Err(NameError::TooLong { len: 65 }));
        for (bad, ch, at) in [("a.b", '.', 1), ("a*", '*', 1), ("a b", ' ', 1), (">", '>', 0)] {
            assert_eq!(BreakerName::new(bad), Err(NameError::InvalidChar { ch, at }));
        }
        assert!(matches!(BreakerName::new("é"), Err(NameError::InvalidChar { ch: 'é', at: 0 })));
    }

    #[test]
    fn deserialising_validates() {
        let ok: NodeId = serde_json::from_str("\"n1\"").unwrap();
        assert_eq!(ok.as_str(), "n1");
        let err = serde_json::from_str::<NodeId>("\"n.1\"").unwrap_err();
        assert!(err.to_string().contains("'.'"), "{err}");
    }
}
