//! NATS transport for Fusebox: [`nats::NatsTransport`] implements the breaker runtime's
//! `Transport` over `JetStream` (outcome feed, control stream, KV leases, decisions and
//! configs), with the wire [`codec`]s, the [`layout`] of names and [`provision`]ing of
//! streams and buckets. `docs/nats.md` is the user's guide. (The harness that starts real
//! nats-server processes for the tests is `fusebox_testkit::servers`, not part of this crate.)
//!
//! ```no_run
//! use breaker_actors::machine::NodeId;
//! use breaker_actors::{BreakerConfig, Registry};
//! use transport_nats::nats::{NatsConfig, NatsTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NatsConfig::new(vec!["nats://127.0.0.1:4222".into()], NodeId::new("checkout-7")?);
//! let transport = NatsTransport::connect(config).await?; // creates or checks streams and buckets
//! let registry = Registry::builder().transport(transport).start().await?;
//! let payments = registry.breaker("payments-api", BreakerConfig::default()).await?; // open if the fleet is
//! let receipt = payments.call(async { Ok::<_, std::io::Error>("charged") }).await;
//! # let _ = receipt;
//! registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```

/// The NATS client this crate is built on, for [`nats::ConnectHook`]s and
/// [`nats::NatsTransport::with_client`] (the same version, whatever the caller's own).
pub use async_nats;

pub mod codec;
pub mod layout;
pub mod nats;
pub mod provision;
