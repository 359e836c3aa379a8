//! One test binary for the end-to-end suites (each file its own module, as it was its own
//! binary before): linking and code generation per binary were a large part of the test
//! step's time. `nats_metrics` stays a binary of its own: it installs the process-wide
//! metrics recorder. Run one suite with `cargo test -p fusebox-tests --test end_to_end nats::`.

mod nats;
mod node_client;
mod ops;
mod python;
mod python_client;
mod tidy;
