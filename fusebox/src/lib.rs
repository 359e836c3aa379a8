//! Fusebox: distributed circuit breakers for Rust services, kept in agreement across a whole
//! fleet through NATS. One instance's evidence protects all of them, a recovering dependency
//! sees a bounded number of probes fleet-wide, a new instance starts with what the fleet
//! already knows, and no call ever waits on the network to learn whether it may go out.
//!
//! This crate is the one to depend on. It re-exports what a service needs; the crates under
//! it (`breaker-actors`, `transport-nats`) are its implementation.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `nats` | yes | [`nats`]: the NATS transport (`NatsTransport`, `NatsConfig`) |
//! | `toml` | yes | [`BreakerConfig::from_toml_str`] and [`BreakerConfig::from_toml_file`] |
//! | `tower` | no | [`tower`]: `FuseboxLayer`, a tower middleware over a breaker |
//! | `http` | no | [`http`]: classifiers that count HTTP 5xx and gRPC error statuses as failures |
//!
//! # Quick start
//!
//! A [`Registry`] holds a node's breakers. [`Registry::local`] is the embedded default (one
//! process, no NATS); over NATS, see [below](#over-nats).
//!
//! ```
//! use fusebox::{BreakerConfig, CallError, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::local().await?;
//! let payments = registry.breaker("payments-api", BreakerConfig::default()).await?;
//! match payments.call(async { Ok::<_, std::io::Error>("charged") }).await {
//!     Ok(receipt) => println!("{receipt}"),
//!     Err(CallError::Rejected(rejected)) => println!("failing fast: {rejected}"), // no call made
//!     Err(CallError::Failed(error)) => println!("failed: {error}"), // counted against the dependency
//! }
//! registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Breakers
//!
//! [`Registry::breaker`] returns a [`Breaker`], a cheap handle (clone it freely) that asks
//! the breaker's lock-free hot path whether a call may go out: no lock, no allocation, no
//! clock read and no network in the closed state. [`Breaker::call`] runs a future if
//! admitted and records how it went; [`Breaker::try_acquire`] hands out a [`Permit`] for code
//! that records the outcome itself.
//!
//! ```
//! # use fusebox::{BreakerConfig, Registry, StateLabel};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let registry = Registry::local().await?;
//! let inventory = registry.breaker("inventory", BreakerConfig::default()).await?;
//! match inventory.try_acquire() {
//!     Ok(permit) => {
//!         let reply: Result<u32, &str> = Ok(7); // the call to the dependency
//!         match reply {
//!             Ok(_) => permit.success(),
//!             Err(_) => permit.failure(),
//!         }
//!     }
//!     Err(rejected) => println!("not now: {rejected}"),
//! }
//! assert_eq!(inventory.state(), StateLabel::Closed);
//! # registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! A [`BreakerConfig`] says when the fleet trips (the [`config::TripPolicy`]: failure rate,
//! slow-call rate, consecutive failures, burn rate, over a count or time window), how long it
//! stays open ([`config::OpenPolicy`]), how it probes a recovering dependency
//! ([`config::HalfOpenPolicy`]: a probe budget for the whole fleet), what a node decides on
//! its own evidence ([`config::LocalOverlayPolicy`]) and what it does while it cannot reach
//! NATS ([`config::OutageConfig`]). Every field has a default; a config is checked when a
//! breaker is registered, and a wrong one is a [`ConfigError`] naming the field.
//! `docs/config.md` in the repository lists every key.
//!
//! In code, [`BreakerConfig::builder`] sets fields from [`Duration`](std::time::Duration)s
//! and validates on [`build`](BreakerConfigBuilder::build); a duration that is zero where
//! that is invalid, not whole milliseconds, or beyond a `u64` of them is a [`ConfigError`]
//! naming the field too:
//!
//! ```
//! use std::time::Duration;
//! use fusebox::BreakerConfig;
//! use fusebox::config::OutagePolicy;
//!
//! let config = BreakerConfig::builder()
//!     .count_window(50)
//!     .minimum_calls(20)
//!     .failure_rate(0.25)
//!     .slow_calls(Duration::from_millis(800), 0.5) // a call of 800 ms or more is slow
//!     .exponential_backoff(Duration::from_secs(1), Duration::from_secs(300), 2, 0.1)
//!     .half_open_probes(6, 3) // 6 probes fleet-wide, 3 successes close
//!     .quorum(2)
//!     .local_overlay(|local| local.consecutive_failures(5).open_for(Duration::from_secs(10)))
//!     .outage(OutagePolicy::LastKnown, Duration::from_secs(10))
//!     .build()?;
//! assert_eq!(config.quorum, 2);
//! let error = BreakerConfig::builder().open_for(Duration::ZERO).build().unwrap_err();
//! assert_eq!(error.field, "open.duration_ms");
//! # Ok::<(), fusebox::ConfigError>(())
//! ```
//!
//! From outside the process, a config is serde's form of the struct: JSON in the config
//! bucket (`docs/wire-format.md`), TOML files with [`BreakerConfig::from_toml_file`]
//! (feature `toml`, on by default) and environment variables with
//! [`BreakerConfig::from_env`] or [`BreakerConfig::with_env`] over a base. Every duration is
//! a `<name>_ms` integer or, read, `<name>` in humantime text (`"500ms"`, `"60s"`,
//! `"1h 30m"`), not both; configs are always written with `_ms`. Unknown keys are errors.
//! A [`ConfigLoadError`] says where: the key path and the TOML line, or the variable.
//!
#![cfg_attr(feature = "toml", doc = "```")]
#![cfg_attr(not(feature = "toml"), doc = "```ignore")]
//! use std::time::Duration;
//! use fusebox::BreakerConfig;
//!
//! let from_file = BreakerConfig::from_toml_str(
//!     r#"
//!     [trip]
//!     window = { count = { calls = 50 } }
//!     minimum_calls = 20
//!     failure_rate = 0.25
//!
//!     [open.fixed]
//!     duration = "30s"  # or duration_ms = 30000
//!     "#,
//! )?;
//! let built = BreakerConfig::builder()
//!     .count_window(50)
//!     .minimum_calls(20)
//!     .failure_rate(0.25)
//!     .open_for(Duration::from_secs(30))
//!     .build()?;
//! assert_eq!(from_file, built);
//!
//! let error = BreakerConfig::from_toml_str("[open.fixed]\nduration = \"6Os\"").unwrap_err();
//! assert!(error.to_string().contains(r#"line 2, column 12: open.fixed.duration: invalid duration "6Os""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Environment variables name the nested keys upper-cased and joined by `__`
//! ([`config::ENV_SEPARATOR`]; single underscores are part of field names), after a prefix
//! of your choice: `FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE=0.25`,
//! `FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION=30s`, `FUSEBOX_PAYMENTS__LOCAL=null`. A value is
//! read as JSON when it is JSON and as a string otherwise. [`BreakerConfig::with_env_vars`]
//! takes the variables as pairs (as here), [`BreakerConfig::with_env`] from the process:
//!
//! ```
//! use fusebox::BreakerConfig;
//!
//! let vars = [("FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE", "0.25"), ("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION", "30s")];
//! let config = BreakerConfig::default() // or from a file
//!     .with_env_vars("FUSEBOX_PAYMENTS", vars.map(|(name, value)| (name.to_owned(), value.to_owned())))?;
//! assert_eq!(config.trip.failure_rate, Some(0.25));
//! # Ok::<(), fusebox::ConfigLoadError>(())
//! ```
//!
//! Or set the struct's fields directly, durations in milliseconds:
//!
//! ```
//! use fusebox::BreakerConfig;
//! use fusebox::config::{OpenPolicy, TripPolicy, WindowConfig};
//!
//! let config = BreakerConfig {
//!     trip: TripPolicy {
//!         window: WindowConfig::Count { calls: 50 },
//!         minimum_calls: 20,
//!         failure_rate: Some(0.25),
//!         ..TripPolicy::default()
//!     },
//!     open: OpenPolicy::Fixed { duration_ms: 30_000 },
//!     ..BreakerConfig::default()
//! };
//! assert!(config.validate().is_ok());
//! ```
//!
//! # The tower layer
//!
//! With the `tower` feature, [`tower::FuseboxLayer`] wraps any tower service: a rejected
//! call never reaches it and comes back as [`tower::FuseboxError::Rejected`].
//!
#![cfg_attr(feature = "tower", doc = "```")]
#![cfg_attr(not(feature = "tower"), doc = "```ignore")]
//! # use fusebox::{BreakerConfig, Registry};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let registry = Registry::local().await?;
//! use fusebox::tower::FuseboxLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let payments = registry.breaker("payments-api", BreakerConfig::default()).await?;
//! let service = FuseboxLayer::new(payments)
//!     .layer(service_fn(|order: u32| async move { Ok::<_, std::io::Error>(order * 2) }));
//! assert_eq!(service.oneshot(21).await.ok(), Some(42));
//! # registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With the `http` feature too, a response can count as a failure: give the layer a
//! [`ResultClassifier`] such as [`http::ServerErrorsAsFailures`] (5xx) or
//! [`http::GrpcErrorsAsFailures`] (the `grpc-status` header), and answer rejections from
//! a cache by request with [`tower::FuseboxLayer::with_async_fallback`].
//! `docs/guide-axum.md` in the repository puts it in an axum service and a reqwest client.
//!
#![cfg_attr(all(feature = "tower", feature = "http"), doc = "```")]
#![cfg_attr(not(all(feature = "tower", feature = "http")), doc = "```ignore")]
//! # use fusebox::{BreakerConfig, Registry};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let registry = Registry::local().await?;
//! use fusebox::http::ServerErrorsAsFailures;
//! use fusebox::tower::{FuseboxError, FuseboxLayer};
//! use fusebox::Rejected;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let search = registry.breaker("search", BreakerConfig::default()).await?;
//! let backend = service_fn(|query: String| async move {
//!     let mut unavailable = http::Response::new(query);
//!     *unavailable.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!     Ok::<_, std::io::Error>(unavailable)
//! });
//! let service = FuseboxLayer::new(search)
//!     .classify_results_with(ServerErrorsAsFailures::new()) // the 503 counts as a failure
//!     .with_async_fallback(|query: String, rejected: Rejected| async move {
//!         if query.is_empty() { Err(FuseboxError::Rejected(rejected)) } else { Ok(http::Response::new(query)) }
//!     })
//!     .layer(backend);
//! assert_eq!(service.oneshot("rust".into()).await?.status(), 503); // returned as it is
//! # registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Over NATS
//!
//! One transport per process, every node pointing at the same servers; the transport creates
//! (or checks) the fleet's streams and buckets. `docs/nats.md` in the repository describes
//! what it provisions and `docs/auth.md` the rights a node needs.
//!
#![cfg_attr(feature = "nats", doc = "```no_run")]
#![cfg_attr(not(feature = "nats"), doc = "```ignore")]
//! use fusebox::nats::{NatsConfig, NatsTransport};
//! use fusebox::{BreakerConfig, NodeId, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NatsConfig::new(vec!["nats://127.0.0.1:4222".into()], NodeId::new("checkout-7")?);
//! let transport = NatsTransport::connect(config).await?;
//! let registry = Registry::builder().transport(transport).start().await?;
//! let payments = registry.breaker("payments-api", BreakerConfig::default()).await?; // open if the fleet is
//! # drop(payments);
//! # Ok(())
//! # }
//! ```
//!
//! # Events and operator commands
//!
//! [`Registry::subscribe`] streams every transition and decision as [`BreakerEvent`]s;
//! [`Registry::command`] reaches whichever node decides a breaker and is recorded in the
//! decision (see [`CommandKind`]); [`Registry::command_for`] time-boxes it (at most
//! [`MAX_OVERRIDE_MS`], 7 days): the decider returns to automatic control when it runs out,
//! with reason [`Reason::OverrideExpired`].
//!
//! ```
//! # use fusebox::{BreakerConfig, CommandKind, Registry, StateLabel};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let registry = Registry::local().await?;
//! let search = registry.breaker("search", BreakerConfig::default()).await?;
//! registry.command("search", CommandKind::ForceOpen, "alice", "INC-42").await?;
//! let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
//! while search.state() != StateLabel::ForcedOpen && std::time::Instant::now() < deadline {
//!     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//! }
//! assert!(search.try_acquire().is_err());
//! # registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```

/// What decides how a call's result counts: [`Breaker::call_classified`] takes a
/// [`Classifier`] of errors, [`Breaker::call_result_classified`] a [`ResultClassifier`] of
/// whole results (an `Ok` HTTP 5xx can be a failure).
pub use breaker_actors::hot::{AllErrorsFail, Classifier, ErrorsOnly, ResultClassifier};
pub use breaker_actors::machine::{
    BreakerConfigBuilder, BreakerName, Command, CommandKind, ConfigError, Decision, DecisionId, Event, FleetState,
    MAX_OVERRIDE_MS, NameError, NodeId, OverrideError, Reason, StateLabel, Term,
};
pub use breaker_actors::{
    Breaker, BreakerConfig, BreakerEvent, CallError, ConfigLoadError, Outcome, OwnedPermit, Permit, Registry,
    RegistryBuilder, RegistryError, RejectReason, Rejected,
};

/// Every metric Fusebox exports, in one table ([`metrics::ALL`]: name, type, unit, labels,
/// help; `docs/metrics.md` lists them), the name constants, and the buckets to give the
/// `_seconds` histograms ([`metrics::SECONDS_BUCKETS`]). Fusebox records through the
/// `metrics` facade: install the exporter of your choice before starting the registry.
pub mod metrics {
    pub use breaker_actors::observe::names::*;
}

/// The pure state machine under every breaker ([`machine::step`]: time and inputs in,
/// effects out), for simulation and model checking; a service never needs it.
pub mod machine {
    pub use breaker_actors::machine::*;
}

/// The parts of a [`BreakerConfig`], the builder of its local overlay, and the separator
/// of environment variable names.
pub mod config {
    pub use breaker_actors::load::ENV_SEPARATOR;
    pub use breaker_actors::machine::{
        BurnRateRule, DEFAULT_MAX_EVIDENCE_AGE_MS, HalfOpenPolicy, HealthCheckPolicy, LocalOverlayBuilder,
        LocalOverlayPolicy, OpenPolicy, OutageConfig, OutagePolicy, RampPolicy, TripPolicy, WindowConfig,
    };
}

/// The tower middleware over a [`Breaker`] (feature `tower`).
#[cfg(feature = "tower")]
pub mod tower {
    pub use breaker_actors::hot::{AllErrorsFail, Classifier, ErrorsOnly, ResultClassifier};
    pub use breaker_actors::tower::{
        AsyncFallback, AsyncFallbackFuture, AsyncFallbackLayer, Fallback, FallbackFuture, FallbackLayer, FuseboxError,
        FuseboxLayer, FuseboxService, OnProbe, ProbesUnmarked, ResponseFuture,
    };
}

/// Classifiers of HTTP and gRPC responses (feature `http`): give one to
/// [`FuseboxLayer::classify_results_with`](crate::tower::FuseboxLayer::classify_results_with)
/// (feature `tower`) or [`Breaker::call_result_classified`] so a 5xx answered `Ok` counts
/// as a failure.
#[cfg(feature = "http")]
pub mod http {
    pub use breaker_actors::http::{GrpcCode, GrpcErrorsAsFailures, ServerErrorsAsFailures};
}

/// The NATS transport (feature `nats`): one [`NatsTransport`](nats::NatsTransport) per
/// process, given to [`RegistryBuilder::transport`](crate::RegistryBuilder::transport).
/// How it authenticates and secures its connections (creds, nkeys, tokens, TLS, nats CLI
/// contexts, a hook or a client of your own): [`NatsConfig::connection`](nats::NatsConfig::connection),
/// [`Auth`](nats::Auth), [`Tls`](nats::Tls).
#[cfg(feature = "nats")]
pub mod nats {
    pub use transport_nats::async_nats;
    pub use transport_nats::codec::Limits;
    pub use transport_nats::layout::Layout;
    pub use transport_nats::nats::connect::{servers_from_env, split_urls};
    pub use transport_nats::nats::{
        Auth, AuthError, ConnectError, ConnectHook, ConnectRole, ConnectionSettings, MIN_SERVER, NatsConfig,
        NatsContext, NatsTransport, Setting, StatsSnapshot, Tls,
    };
    pub use transport_nats::provision::{LeaseExpiry, ProvisionError, StoreSettings};
}

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// `docs/config.md`'s examples, compiled and run as doctests (its TOML example is checked
/// against the builder's in `tests/config_docs.rs`).
#[doc = include_str!("../../docs/config.md")]
#[cfg(doctest)]
pub struct ConfigDocDoctests;
