//! Why a transport could not be made ([`ConnectError`]), and how a NATS error becomes a
//! `TransportError` ([`backend`]).

use std::fmt;

use breaker_actors::transport::TransportError;

use super::MIN_SERVER;
use super::connect::AuthError;
use crate::provision::ProvisionError;

/// Why [`NatsTransport::connect`](super::NatsTransport::connect) failed.
#[derive(Debug)]
pub enum ConnectError {
    /// No server URL was given, and `NATS_URL` names none.
    NoServers,
    /// A credentials or TLS file could not be read or is not what it should be.
    Auth(AuthError),
    /// The client could not connect.
    Connect(async_nats::ConnectError),
    /// Streams or buckets could not be created or are incompatible.
    Provision(ProvisionError),
    /// The server is older than [`MIN_SERVER`].
    ServerTooOld {
        /// Its version.
        version: String,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoServers => f.write_str("no NATS server URL given (NatsConfig::servers is empty, so is NATS_URL)"),
            Self::Auth(e) => write!(f, "NATS connection settings: {e}"),
            Self::Connect(e) => write!(f, "connecting to NATS: {e}"),
            Self::Provision(e) => write!(f, "provisioning: {e}"),
            Self::ServerTooOld { version } => {
                write!(f, "nats-server {version} is too old: Fusebox needs {}.{} or later", MIN_SERVER.0, MIN_SERVER.1)
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Auth(e) => Some(e),
            Self::Provision(e) => Some(e),
            Self::NoServers | Self::ServerTooOld { .. } => None,
        }
    }
}

pub(super) fn backend(e: impl fmt::Display) -> TransportError {
    TransportError::Backend(e.to_string())
}
