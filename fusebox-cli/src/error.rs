//! What can go wrong in `fusebox`, as one error type whose `Display` is the message the
//! operator reads, and the exit code each kind maps to: 2 for usage, 1 for everything that
//! happened while talking to the fleet.

use std::fmt;
use std::time::Duration;

/// Why a `fusebox` invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The command line is wrong in a way clap could not see (exit code 2).
    Usage(String),
    /// No server could be reached.
    Unreachable {
        /// The URLs tried, comma-separated.
        servers: String,
        /// The client's reason.
        detail: String,
    },
    /// The server refused the credentials.
    AuthenticationFailed {
        /// The URLs tried, comma-separated.
        servers: String,
        /// The client's reason.
        detail: String,
    },
    /// The TLS handshake failed (an untrusted or unverifiable certificate, a client
    /// certificate the server refused).
    Tls {
        /// The URLs tried, comma-separated.
        servers: String,
        /// The client's reason.
        detail: String,
    },
    /// The server refused a publish or subscription (a permissions violation), or a
    /// request went unanswered because of one.
    PermissionDenied {
        /// What was being done.
        what: String,
        /// The server's words, and a hint when one applies.
        detail: String,
    },
    /// A stream or bucket of the fleet does not exist: wrong prefix or server, or no node
    /// has started yet (nodes provision; this tool never does).
    FleetMissing {
        /// The prefix used.
        prefix: String,
        /// `stream` or `bucket`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Neither a config nor a decision exists for the breaker.
    UnknownBreaker {
        /// The breaker.
        breaker: String,
        /// The prefix used.
        prefix: String,
    },
    /// A command was stored by the control stream, but no decision applying it appeared.
    NotApplied {
        /// The command, as on the wire (`force_open`).
        command: String,
        /// The breaker.
        breaker: String,
        /// How long it waited.
        waited: Duration,
    },
    /// `watch --count N` saw fewer decisions before `--timeout`.
    WatchTimedOut {
        /// Decisions seen.
        seen: u64,
        /// Decisions wanted.
        wanted: u64,
        /// How long it watched.
        waited: Duration,
    },
    /// A request got no answer in time (and no permissions violation explains it).
    TimedOut {
        /// What was being done.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// Any other failure of the client or the server.
    Nats {
        /// What was being done.
        what: String,
        /// The client's or server's reason.
        detail: String,
    },
    /// Writing the output failed.
    Output(String),
    /// The dashboard could not listen on its address or stopped serving.
    Serve {
        /// The address.
        addr: String,
        /// The system's reason.
        detail: String,
    },
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// `10 s`, `1.5 s`, `0.25 s`: whole seconds without decimals, else as few as needed.
pub fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{} s", s.trim_end_matches('0'))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(detail) => write!(f, "{detail}"),
            Self::Unreachable { servers, detail } => write!(f, "cannot reach NATS at {servers}: {detail}"),
            Self::AuthenticationFailed { servers, detail } => {
                write!(f, "NATS at {servers} refused the credentials: {detail}")
            }
            Self::Tls { servers, detail } => write!(f, "TLS with NATS at {servers} failed: {detail}"),
            Self::PermissionDenied { what, detail } => write!(f, "permission denied: {what}: {detail}"),
            Self::FleetMissing { prefix, kind, name } => {
                write!(f, "no Fusebox fleet under prefix {prefix}: {kind} {name} not found")
            }
            Self::UnknownBreaker { breaker, prefix } => {
                write!(f, "unknown breaker {breaker:?} (no config or decision under prefix {prefix})")
            }
            Self::NotApplied { command, breaker, waited } => write!(
                f,
                "{command} for {breaker:?} published but not applied within {} — is any node deciding this breaker?",
                seconds(*waited)
            ),
            Self::WatchTimedOut { seen, wanted, waited } => {
                write!(f, "saw {seen} of {wanted} decisions within {}", seconds(*waited))
            }
            Self::TimedOut { what, after } => write!(f, "timed out after {}: {what}", seconds(*after)),
            Self::Nats { what, detail } => write!(f, "{what}: {detail}"),
            Self::Output(detail) => write!(f, "writing the output: {detail}"),
            Self::Serve { addr, detail } => write!(f, "serving the dashboard on {addr}: {detail}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Output(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_documented() {
        let e = CliError::UnknownBreaker { breaker: "x".into(), prefix: "fusebox".into() };
        assert_eq!(e.to_string(), r#"unknown breaker "x" (no config or decision under prefix fusebox)"#);
        let e = CliError::FleetMissing { prefix: "acme".into(), kind: "bucket", name: "acme_state".into() };
        assert_eq!(e.to_string(), "no Fusebox fleet under prefix acme: bucket acme_state not found");
        let e = CliError::NotApplied {
            command: "force_open".into(),
            breaker: "payments".into(),
            waited: Duration::from_secs(10),
        };
        assert_eq!(
            e.to_string(),
            r#"force_open for "payments" published but not applied within 10 s — is any node deciding this breaker?"#
        );
        assert_eq!((e.exit_code(), CliError::Usage(String::new()).exit_code()), (1, 2));
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
    }
}
