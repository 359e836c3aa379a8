//! The node shell's coordination rules, pure like the machine (time and messages in,
//! actions out): what the runtime of a node shares across its breakers, run by the registry
//! and the NATS transport and by `model-check`'s fleet harness alike. [`batch`]: the one
//! report message per node per flush interval; [`lease`]: lease upkeep over the shards;
//! [`tenants`]: one node-wide consumer from the first registration to the last; [`watch`]:
//! the node's one decision watch demultiplexed to its breakers, and its one resync per period.

pub mod batch;
pub mod lease;
pub mod tenants;
pub mod watch;

pub use batch::{Batch, BatchLimits, ReportBatcher, Urgency};
pub use lease::{LeaseEffect, LeaseInput, LeaseKeeper, RenewAnswer, merge_lease_news};
pub use tenants::{TenantChange, Tenants};
pub use watch::{DecisionDemux, Offer, Source, WatchStart};
