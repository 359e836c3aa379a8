//! `outage-timeline` (`make demo`): replays a scripted outage through the deterministic
//! fleet harness and prints its timeline and summary. It exits non-zero when the story does
//! not unfold (no trip, probes over budget, not closed at the end, no takeover), so the demo
//! doubles as a smoke check.

use std::process::ExitCode;

use fusebox_examples::timeline::{self, MAX_NODES, Script};

const USAGE: &str = concat!(
    "usage: outage-timeline [--nodes N] [--seed S] [--quiet]\n",
    "  --nodes N  nodes in the simulated fleet (2..=64, default 4)\n",
    "  --seed S   seed of the dependency's failures and the jitter (default 1)\n",
    "  --quiet    print the summary only",
);

struct Args {
    nodes: usize,
    seed: u64,
    quiet: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args { nodes: 4, seed: 1, quiet: false };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nodes" => {
                let value = args.next().ok_or("--nodes needs a value")?;
                parsed.nodes = value.parse().map_err(|_| format!("--nodes: {value:?} is not a number"))?;
                if !(2..=MAX_NODES).contains(&parsed.nodes) {
                    return Err(format!("--nodes: {} is not in 2..={MAX_NODES} (a takeover needs two)", parsed.nodes));
                }
            }
            "--seed" => {
                let value = args.next().ok_or("--seed needs a value")?;
                parsed.seed = value.parse().map_err(|_| format!("--seed: {value:?} is not a number"))?;
            }
            "--quiet" | "-q" => parsed.quiet = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("outage-timeline: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let timeline = match timeline::run(&Script::outage(args.nodes, args.seed)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("outage-timeline: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.quiet {
        println!("{}", timeline.render_moments());
    }
    print!("{}", timeline.render_summary());
    let problems = timeline.problems();
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("\noutage-timeline: the story did not unfold:");
    for p in problems {
        eprintln!("  - {p}");
    }
    ExitCode::FAILURE
}
