//! The `fusebox` operator CLI: status, watch and history of a fleet's breakers, operator
//! commands, and test outcomes, over NATS. Everything lives in `fusebox_examples::cli`, where
//! it is tested; `docs/cli.md` is the guide.

use std::process::ExitCode;

fn main() -> ExitCode {
    fusebox_examples::cli::main()
}
