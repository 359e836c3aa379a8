//! Provisioning: creates the fleet's streams and buckets (`docs/nats.md`) if they do not
//! exist, and checks the ones that do. Idempotent: every node runs it at connect. A resource
//! that exists with a setting Fusebox's semantics depend on (subjects, retention, history,
//! TTL support) set otherwise is an [`ProvisionError::Incompatible`] naming the setting; it
//! is never changed behind the operator's back. Tuning settings (replicas, ages, sizes,
//! storage) an operator changed are kept as found.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::layout::Layout;

/// How dead lease holders are expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaseExpiry {
    /// Per-key TTL with limit markers when the server supports it (>= 2.11), else
    /// [`LeaseExpiry::BucketMaxAge`].
    #[default]
    Auto,
    /// Per-key TTL (`Nats-TTL`) with limit markers: an expiry is announced to watchers.
    PerKeyTtl,
    /// The bucket's `max_age`: works on every server, expiry is not announced (standbys
    /// retry on their own timer). The lease TTL must not exceed it.
    BucketMaxAge(Duration),
}

/// The sizes and ages of the fleet's streams and buckets, used when creating them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Replicas of every stream and bucket (R3 or more in production: see `docs/nats.md`).
    pub replicas: usize,
    /// File storage (durable) or memory storage.
    pub storage: stream::StorageType,
    /// How long a report is kept: the window a new decider replays.
    pub report_max_age: Duration,
    /// Reports kept per node and breaker.
    pub report_max_per_subject: i64,
    /// Bytes the outcome stream may hold.
    pub report_max_bytes: i64,
    /// How long an unconsumed operator command is kept.
    pub command_max_age: Duration,
    /// Unconsumed commands kept per breaker.
    pub command_max_per_subject: i64,
    /// Decisions kept per breaker in the state bucket (the audit trail).
    pub decision_history: i64,
    /// Versions kept per breaker in the config bucket.
    pub config_history: i64,
    /// How dead lease holders are expired.
    pub lease_expiry: LeaseExpiry,
    /// The largest message any stream or bucket accepts.
    pub max_message_size: i32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            storage: stream::StorageType::File,
            report_max_age: Duration::from_secs(60),
            report_max_per_subject: 10_000,
            report_max_bytes: 256 * 1024 * 1024,
            command_max_age: Duration::from_secs(60),
            command_max_per_subject: 64,
            decision_history: 64,
            config_history: 16,
            lease_expiry: LeaseExpiry::Auto,
            max_message_size: 64 * 1024,
        }
    }
}

/// How long a limit marker (the announcement of a lease expiry) stays in the lease bucket.
const LIMIT_MARKER_TTL: Duration = Duration::from_secs(30);

/// Why provisioning failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionError {
    /// A stream or bucket exists with a setting Fusebox cannot work with.
    Incompatible {
        /// The stream (a bucket's stream is `KV_<bucket>`).
        resource: String,
        /// The setting.
        setting: &'static str,
        /// What Fusebox needs.
        expected: String,
        /// What the server has.
        found: String,
    },
    /// Per-key TTL was asked for and the server does not support it.
    TtlUnsupported {
        /// The server's version.
        server_version: String,
    },
    /// The server refused or did not answer.
    Server {
        /// What was being done.
        doing: String,
        /// The server's or client's error.
        error: String,
    },
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incompatible { resource, setting, expected, found } => write!(
                f,
                "stream {resource} exists with incompatible {setting}: Fusebox needs {expected}, the server has {found}; \
                 change it or use another prefix"
            ),
            Self::TtlUnsupported { server_version } => {
                write!(f, "per-key lease TTL needs nats-server >= 2.11, the server is {server_version}")
            }
            Self::Server { doing, error } => write!(f, "{doing}: {error}"),
        }
    }
}

impl std::error::Error for ProvisionError {}

fn server(doing: impl Into<String>) -> impl FnOnce(String) -> ProvisionError {
    let doing = doing.into();
    move |error| ProvisionError::Server { doing, error }
}

/// What provisioning found or made.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The outcome stream.
    pub outcomes: stream::Stream,
    /// The control stream.
    pub control: stream::Stream,
    /// The lease bucket.
    pub leases: kv::Store,
    /// The decision bucket.
    pub state: kv::Store,
    /// The config bucket.
    pub config: kv::Store,
    /// How lease expiry works on this fleet (never `Auto`).
    pub lease_expiry: LeaseExpiry,
    /// The outcome stream's `max_age` as found: a report older than that is useless to
    /// publish.
    pub report_max_age: Duration,
}

/// Whether `version` (`major.minor.patch[-…]`) is at least `major.minor`.
pub fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Creates or checks every stream and bucket of `layout`.
pub async fn provision(
    js: &jetstream::Context,
    layout: &Layout,
    settings: &StoreSettings,
    server_version: &str,
) -> Result<Provisioned, ProvisionError> {
    let lease_expiry = match settings.lease_expiry {
        LeaseExpiry::Auto if version_at_least(server_version, 2, 11) => LeaseExpiry::PerKeyTtl,
        LeaseExpiry::Auto => LeaseExpiry::BucketMaxAge(Duration::from_secs(10)),
        LeaseExpiry::PerKeyTtl if !version_at_least(server_version, 2, 11) => {
            return Err(ProvisionError::TtlUnsupported { server_version: server_version.to_owned() });
        }
        other => other,
    };
    let outcomes = ensure_stream(js, outcome_stream(layout, settings)).await?;
    let control = ensure_stream(js, control_stream(layout, settings)).await?;
    let state = ensure_bucket(js, bucket(&layout.state_bucket(), settings.decision_history, settings)).await?;
    let config = ensure_bucket(js, bucket(&layout.config_bucket(), settings.config_history, settings)).await?;
    let mut lease_config = bucket(&layout.lease_bucket(), 1, settings);
    if let LeaseExpiry::BucketMaxAge(age) = lease_expiry {
        lease_config.max_age = age;
    } else {
        lease_config.allow_message_ttl = true;
        lease_config.subject_delete_marker_ttl = Some(LIMIT_MARKER_TTL);
    }
    let leases = ensure_bucket(js, lease_config).await?;
    let report_max_age = outcomes.cached_info().config.max_age;
    Ok(Provisioned { outcomes, control, leases, state, config, lease_expiry, report_max_age })
}

fn outcome_stream(layout: &Layout, settings: &StoreSettings) -> stream::Config {
    stream::Config {
        name: layout.outcome_stream(),
        description: Some("Fusebox outcome reports, one subject per breaker and node".to_owned()),
        subjects: vec![layout.outcome_subjects()],
        retention: stream::RetentionPolicy::Limits,
        max_age: settings.report_max_age,
        max_messages_per_subject: settings.report_max_per_subject,
        max_bytes: settings.report_max_bytes,
        max_message_size: settings.max_message_size,
        discard: stream::DiscardPolicy::Old,
        // The server requires the duplicate window to fit in max_age.
        duplicate_window: settings.report_max_age.min(Duration::from_secs(120)),
        storage: settings.storage,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

fn control_stream(layout: &Layout, settings: &StoreSettings) -> stream::Config {
    stream::Config {
        name: layout.control_stream(),
        description: Some("Fusebox operator commands, consumed once by the breaker's decider".to_owned()),
        subjects: vec![layout.control_subjects()],
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: settings.command_max_age,
        max_messages_per_subject: settings.command_max_per_subject,
        max_message_size: settings.max_message_size,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: settings.command_max_age.min(Duration::from_secs(120)),
        storage: settings.storage,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// The stream behind a KV bucket, as `async_nats` would create it (allow direct, rollup,
/// deny delete, discard new), built here so that creating and checking use one definition.
fn bucket(name: &str, history: i64, settings: &StoreSettings) -> stream::Config {
    stream::Config {
        name: format!("KV_{name}"),
        description: Some(format!("Fusebox bucket {name}")),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: history,
        max_message_size: settings.max_message_size,
        storage: settings.storage,
        num_replicas: settings.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

async fn ensure_bucket(js: &jetstream::Context, wanted: stream::Config) -> Result<kv::Store, ProvisionError> {
    let bucket = wanted.name.trim_start_matches("KV_").to_owned();
    ensure_stream(js, wanted).await?;
    js.get_key_value(bucket.clone()).await.map_err(|e| server(format!("opening bucket {bucket}"))(e.to_string()))
}

/// How long provisioning keeps retrying what a cluster answers slowly: a stream another node
/// is creating, a leader being elected.
const PROVISION_DEADLINE: Duration = Duration::from_secs(30);

/// Creates or checks the stream, retrying transient failures until [`PROVISION_DEADLINE`],
/// and returns once it has a leader (a clustered stream accepts nothing before).
async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config) -> Result<stream::Stream, ProvisionError> {
    let name = wanted.name.clone();
    let deadline = tokio::time::Instant::now() + PROVISION_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        let error = match find_or_create(js, &wanted).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) => return Ok(stream),
                Ok(_) => "no leader elected yet".to_owned(),
                Err(e) => e.to_string(),
            },
            Err(incompatible @ ProvisionError::Incompatible { .. }) => return Err(incompatible),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + pause > deadline {
            return Err(ProvisionError::Server { doing: format!("provisioning stream {name}"), error });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn find_or_create(js: &jetstream::Context, wanted: &stream::Config) -> Result<stream::Stream, ProvisionError> {
    let name = &wanted.name;
    match js.get_stream(name).await {
        Ok(existing) => {
            check(wanted, &existing.cached_info().config)?;
            return Ok(existing);
        }
        Err(e) if !is_not_found(&e) => return Err(server(format!("looking up stream {name}"))(e.to_string())),
        Err(_) => {}
    }
    match js.create_stream(wanted.clone()).await {
        Ok(created) => Ok(created),
        // Another node won the race: the next look finds its stream.
        Err(e) if already_exists(&e) => {
            Err(ProvisionError::Server { doing: format!("creating stream {name}"), error: "created meanwhile".into() })
        }
        Err(e) => Err(server(format!("creating stream {name}"))(e.to_string())),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn already_exists(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST)
}

/// Compares the settings Fusebox's semantics depend on.
pub(crate) fn check(wanted: &stream::Config, found: &stream::Config) -> Result<(), ProvisionError> {
    let incompatible = |setting, expected: String, found: String| ProvisionError::Incompatible {
        resource: wanted.name.clone(),
        setting,
        expected,
        found,
    };
    if wanted.subjects != found.subjects {
        return Err(incompatible("subjects", format!("{:?}", wanted.subjects), format!("{:?}", found.subjects)));
    }
    if wanted.retention != found.retention {
        return Err(incompatible("retention", format!("{:?}", wanted.retention), format!("{:?}", found.retention)));
    }
    let is_bucket = wanted.name.starts_with("KV_");
    if is_bucket && wanted.max_messages_per_subject != found.max_messages_per_subject {
        return Err(incompatible(
            "history (max_msgs_per_subject)",
            wanted.max_messages_per_subject.to_string(),
            found.max_messages_per_subject.to_string(),
        ));
    }
    if is_bucket && !found.allow_direct {
        return Err(incompatible("allow_direct", "true".to_owned(), "false".to_owned()));
    }
    if wanted.allow_message_ttl && !found.allow_message_ttl {
        return Err(incompatible("allow_msg_ttl (per-key lease TTL)", "true".to_owned(), "false".to_owned()));
    }
    if wanted.subject_delete_marker_ttl.is_some() && found.subject_delete_marker_ttl.is_none() {
        return Err(incompatible(
            "subject_delete_marker_ttl (limit markers announce lease expiry)",
            format!("{:?}", wanted.subject_delete_marker_ttl),
            "none".to_owned(),
        ));
    }
    if !wanted.max_age.is_zero() && is_bucket && found.max_age != wanted.max_age {
        return Err(incompatible(
            "max_age (the lease expiry)",
            format!("{:?}", wanted.max_age),
            format!("{:?}", found.max_age),
        ));
    }
    if wanted.max_message_size > 0 && found.max_message_size > 0 && found.max_message_size < wanted.max_message_size {
        return Err(incompatible(
            "max_msg_size",
            format!(">= {}", wanted.max_message_size),
            found.max_message_size.to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_at_least("2.15.1", 2, 11));
        assert!(version_at_least("2.11.0-beta.2", 2, 11));
        assert!(!version_at_least("2.9.10", 2, 11));
        assert!(!version_at_least("garbage", 2, 11));
    }

    #[test]
    fn incompatible_settings_are_named() {
        let layout = Layout::default();
        let settings = StoreSettings::default();
        let wanted = control_stream(&layout, &settings);
        let mut found = wanted.clone();
        found.num_replicas = 3;
        found.max_age = Duration::from_secs(600);
        assert_eq!(check(&wanted, &found), Ok(()), "tuning is the operator's");
        found.retention = stream::RetentionPolicy::Limits;
        let err = check(&wanted, &found).unwrap_err();
        assert!(matches!(err, ProvisionError::Incompatible { setting: "retention", .. }), "{err}");
        assert!(err.to_string().contains("FUSEBOX_CONTROL"), "{err}");
        let wanted = bucket("fusebox_state", 64, &settings);
        let mut found = wanted.clone();
        found.max_messages_per_subject = 1;
        let err = check(&wanted, &found).unwrap_err();
        assert!(matches!(err, ProvisionError::Incompatible { setting: "history (max_msgs_per_subject)", .. }));
    }
}
