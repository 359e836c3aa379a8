//! One test binary for the CLI's suites (each file its own module, as it was its own binary
//! before): linking and code generation per binary were a large part of the test step's
//! time. Run one suite with `cargo test -p fusebox-cli --test end_to_end dashboard::`.

mod cli;
mod cli_auth;
mod dashboard;
mod support;
