//! The node shell's coordination rules, pure like the machine (time and messages in,
//! actions out): what the transports of a node share across its breakers. Today:
//! [`batch`], the one report message per node per flush interval.

pub mod batch;

pub use batch::{Batch, BatchLimits, ReportBatcher, Urgency};
