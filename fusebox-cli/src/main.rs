//! The `fusebox` operator CLI: status, watch, history and description of a fleet's
//! breakers, operator commands, configs, and test outcomes, over NATS. Everything lives in the
//! library (`fusebox_cli`), where it is tested; `docs/cli.md` is the guide.

use std::process::ExitCode;

fn main() -> ExitCode {
    fusebox_cli::main()
}
