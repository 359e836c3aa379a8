//! The `model-check` command: `sim` runs seeded fleet simulations under fault plans,
//! `explore` checks the protocol exhaustively. Both print a summary and exit non-zero on
//! any violation, or 2 on a command line they cannot run.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use breaker_actors::machine::CommandKind;
use model_check::explore::{ExploreSpec, explore};
use model_check::fleet::PlantedBug;
use model_check::sim::{self, FaultKind, SimSpec, SimSummary};

const USAGE: &str = "\
usage:
  model-check sim [--seeds N] [--first-seed S] [--nodes M] [--faults all|none|KIND,...]
                  [--chaos-ms T] [--plant store-without-cas]
  model-check sim --seed S [--nodes M] [--faults ...] [--chaos-ms T] [--trace] [--plant ...]
  model-check explore [--nodes 2|3] [--batches N] [--time-steps N] [--crashes N]
                      [--duplications N] [--drops N] [--lease-expiries N] [--ignored-batches N]
                      [--commands force-open,reset,...] [--max-in-flight N] [--max-states N]
  model-check scale [--nodes N] [--breakers B] [--shards S] [--ms T] [--plant unbatched|per-breaker-consumers|per-breaker-resync]

fault kinds: delay, reorder, duplicate, drop, partition, clock, crash, pause, command, foreign,
             lease-wipe, rollback, retune, feed-stall";

/// A command line that cannot run.
#[derive(Debug)]
struct UsageError(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(UsageError(message)) => {
            eprintln!("model-check: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Prints `text` and a newline; a reader that went away (`| head`) is not an error.
fn emit(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Runs the command; whether every property held.
fn run(args: &[String]) -> Result<bool, UsageError> {
    match args.first().map(String::as_str) {
        Some("sim") => run_sim(&args[1..]),
        Some("explore") => run_explore(&args[1..]),
        Some("scale") => run_scale(&args[1..]),
        Some("-h" | "--help") => {
            emit(USAGE);
            Ok(true)
        }
        Some(other) => Err(UsageError(format!("unknown command {other:?}"))),
        None => Err(UsageError("a command is needed".into())),
    }
}

/// The flags of a command line, as `--name value` pairs and bare `--name` switches.
struct Flags<'a> {
    args: &'a [String],
    switches: &'a [&'a str],
}

impl<'a> Flags<'a> {
    fn parse(args: &'a [String], known: &[&str], switches: &'a [&'a str]) -> Result<Self, UsageError> {
        let mut i = 0;
        while i < args.len() {
            let name = args[i].as_str();
            if switches.contains(&name) {
                i += 1;
            } else if known.contains(&name) {
                if i + 1 >= args.len() {
                    return Err(UsageError(format!("{name} needs a value")));
                }
                i += 2;
            } else {
                return Err(UsageError(format!("unknown argument {name:?}")));
            }
        }
        Ok(Self { args, switches })
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        let mut i = 0;
        let mut found = None;
        while i < self.args.len() {
            if self.switches.contains(&self.args[i].as_str()) {
                i += 1;
                continue;
            }
            if self.args[i] == name {
                found = self.args.get(i + 1).map(String::as_str);
            }
            i += 2;
        }
        found
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, UsageError> {
        self.value(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| UsageError(format!("{name} wants a whole number, not {v:?}")))
        })
    }

    fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
}

fn run_sim(args: &[String]) -> Result<bool, UsageError> {
    let known = ["--seeds", "--first-seed", "--seed", "--nodes", "--faults", "--chaos-ms", "--plant"];
    let flags = Flags::parse(args, &known, &["--trace"])?;
    let nodes = usize::try_from(flags.number("--nodes", 3)?).map_err(|_| UsageError("--nodes is too large".into()))?;
    let faults =
        FaultKind::parse_list(flags.value("--faults").unwrap_or("all")).map_err(|e| UsageError(e.to_string()))?;
    let chaos_ms = flags.number("--chaos-ms", sim::DEFAULT_CHAOS_MS)?;
    let planted = match flags.value("--plant") {
        None => None,
        Some("store-without-cas") => Some(PlantedBug::StoreWithoutCas),
        Some(other) => return Err(UsageError(format!("unknown planted bug {other:?} (known: store-without-cas)"))),
    };
    let (first, count, trace) = match flags.value("--seed") {
        Some(_) => (flags.number("--seed", 0)?, 1, flags.has("--trace")),
        None => (flags.number("--first-seed", 0)?, flags.number("--seeds", 100)?, false),
    };
    if flags.has("--trace") && !trace {
        return Err(UsageError("--trace replays one seed: give --seed".into()));
    }
    let started = Instant::now();
    let mut summary = SimSummary::default();
    for seed in first..first.saturating_add(count) {
        let spec = SimSpec { seed, nodes, faults: faults.clone(), chaos_ms, planted, trace };
        let report = sim::run_seed(&spec).map_err(|e| UsageError(e.to_string()))?;
        if trace {
            // A reader that stops early (`| head`) closes the pipe: stop printing quietly.
            let mut out = std::io::stdout().lock();
            let printed = writeln!(out, "plan: {:?}", report.plan)
                .and_then(|()| report.trace.iter().try_for_each(|line| writeln!(out, "{line}")))
                .and_then(|()| writeln!(out));
            if printed.is_err() {
                return Ok(report.violations.is_empty());
            }
        }
        summary.add(&report);
    }
    emit(format_args!("{summary}\nwall time:        {:.1} s", started.elapsed().as_secs_f64()));
    Ok(summary.failures.is_empty())
}

/// The scale preset (`model_check::scale`): one run, its figures and any violation.
fn run_scale(args: &[String]) -> Result<bool, UsageError> {
    use model_check::scale::{self, ScaleBug, ScaleSpec};
    let flags = Flags::parse(args, &["--nodes", "--breakers", "--shards", "--ms", "--plant"], &[])?;
    let preset = ScaleSpec::preset();
    let size = |name: &str, default: usize| -> Result<usize, UsageError> {
        usize::try_from(flags.number(name, default as u64)?).map_err(|_| UsageError(format!("{name} is too large")))
    };
    let planted = match flags.value("--plant") {
        None => None,
        Some("unbatched") => Some(ScaleBug::Unbatched),
        Some("per-breaker-consumers") => Some(ScaleBug::PerBreakerConsumers),
        Some("per-breaker-resync") => Some(ScaleBug::PerBreakerResync),
        Some(other) => return Err(UsageError(format!("unknown bug {other:?}"))),
    };
    let spec = ScaleSpec {
        nodes: size("--nodes", preset.nodes)?,
        breakers: size("--breakers", preset.breakers)?,
        shards: u32::try_from(flags.number("--shards", u64::from(preset.shards))?)
            .map_err(|_| UsageError("--shards is too large".into()))?,
        duration_ms: flags.number("--ms", preset.duration_ms)?,
        planted,
        ..preset
    };
    let started = std::time::Instant::now();
    let report = scale::run(&spec).map_err(|e| UsageError(e.to_string()))?;
    emit(format!(
        "scale:            {} nodes x {} breakers, {} shards, {} ms simulated",
        spec.nodes, spec.breakers, spec.shards, spec.duration_ms
    ));
    emit(format!(
        "messages:         {} carrying {} reports; most per node per flush {}",
        report.messages, report.reports, report.max_messages_per_flush
    ));
    emit(format!(
        "consumers:        most per node {}, most on one stream {}",
        report.max_consumers_per_node, report.max_consumers_per_stream
    ));
    emit(format!(
        "leases:           {} operations, most in flight on one node {}",
        report.lease_ops, report.max_lease_ops_in_flight
    ));
    emit(format!(
        "decisions:        {}; breakers decided at the end {} of {}; failing opened everywhere {} of {}",
        report.decisions, report.decided_at_end, spec.breakers, report.opened, report.failing
    ));
    emit(format!("undelivered:      {} reports (no holder for their shard)", report.undelivered));
    emit(format!("violations:       {}", report.violations.len()));
    for (at, property, detail) in report.violations.iter().take(10) {
        emit(format!("  [{at} ms] {property}: {detail}"));
    }
    emit(format!("wall time:        {:.1} s", started.elapsed().as_secs_f64()));
    Ok(report.violations.is_empty())
}

fn run_explore(args: &[String]) -> Result<bool, UsageError> {
    let budgets = [
        "--batches",
        "--crashes",
        "--duplications",
        "--drops",
        "--lease-expiries",
        "--ignored-batches",
        "--time-steps",
    ];
    let mut known = vec!["--nodes", "--max-states", "--max-in-flight", "--commands"];
    known.extend(budgets);
    let flags = Flags::parse(args, &known, &[])?;
    let mut spec = match flags.number("--nodes", 2)? {
        2 => ExploreSpec::two_nodes(),
        3 => ExploreSpec::three_nodes(),
        other => return Err(UsageError(format!("explore runs 2 or 3 nodes, not {other}"))),
    };
    let too_large = |name: &str| UsageError(format!("{name} is too large"));
    for name in budgets {
        let Some(_) = flags.value(name) else { continue };
        let value = u32::try_from(flags.number(name, 0)?).map_err(|_| too_large(name))?;
        match name {
            "--batches" => spec.batches = value,
            "--crashes" => spec.crashes = value,
            "--duplications" => spec.duplications = value,
            "--drops" => spec.drops = value,
            "--lease-expiries" => spec.lease_expiries = value,
            "--ignored-batches" => spec.ignored_batches = value,
            _ => spec.time_steps = value,
        }
    }
    if flags.value("--max-states").is_some() {
        spec.max_states = usize::try_from(flags.number("--max-states", 0)?).map_err(|_| too_large("--max-states"))?;
    }
    if flags.value("--max-in-flight").is_some() {
        spec.max_in_flight =
            usize::try_from(flags.number("--max-in-flight", 0)?).map_err(|_| too_large("--max-in-flight"))?;
    }
    if let Some(list) = flags.value("--commands") {
        spec.commands = parse_commands(list)?;
    }
    let report = explore(&spec).map_err(|e| UsageError(e.to_string()))?;
    emit(&report);
    Ok(report.all_pass())
}

/// `force-open,force-closed,disable,metrics-only,reset`, in order.
fn parse_commands(list: &str) -> Result<Vec<CommandKind>, UsageError> {
    list.split(',')
        .map(|name| match name.trim() {
            "force-open" => Ok(CommandKind::ForceOpen),
            "force-closed" => Ok(CommandKind::ForceClosed),
            "disable" => Ok(CommandKind::Disable),
            "metrics-only" => Ok(CommandKind::MetricsOnly),
            "reset" => Ok(CommandKind::Reset),
            other => Err(UsageError(format!(
                "unknown command {other:?} (known: force-open, force-closed, disable, metrics-only, reset)"
            ))),
        })
        .collect()
}
