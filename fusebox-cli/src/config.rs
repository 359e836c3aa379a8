//! `fusebox config show|diff|set`: the fleet's config of a breaker as the config bucket
//! holds it (`docs/tuning.md`), what a local file would change, and an operator's set:
//! the next version with source `operator`, the `reconfigure` command, and the wait for a
//! decision made under the new version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use breaker_actors::machine::{
    BreakerConfig, BreakerName, Command, CommandKind, ConfigRecord, ConfigSource, WIRE_VERSION, operator_version,
};
use clap::{Args, Subcommand};
use serde_json::Value;
use transport_nats::codec::{self, Limits};

use super::args::{default_actor, parse_breaker, parse_text};
use super::error::CliError;
use super::render;
use super::run::{command_and_wait, json_line};
use super::session::Session;

/// The `config` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// The fleet's config of a breaker: its version, who set it, and every setting.
    Show {
        /// The breaker.
        #[arg(value_parser = parse_breaker)]
        breaker: BreakerName,
        /// Every value the config bucket keeps for it, oldest first: the tuning trail.
        #[arg(long)]
        history: bool,
        /// JSON instead of text (the stored record; an array with `--history`).
        #[arg(long)]
        json: bool,
    },
    /// What setting a config file would change, setting by setting.
    Diff {
        /// The breaker.
        #[arg(value_parser = parse_breaker)]
        breaker: BreakerName,
        /// A `BreakerConfig` as JSON (`docs/wire-format.md`, the `config` object).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Set the fleet's config: the file's config with the next version (or the file's own
    /// if higher), recorded as an operator's; waits until a decision made under it is in
    /// the state bucket. Writes to the config bucket (node rights).
    Set(SetArgs),
}

/// The arguments of `config set`.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The breaker.
    #[arg(value_parser = parse_breaker)]
    pub breaker: BreakerName,
    /// A `BreakerConfig` as JSON.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Why: recorded in the config bucket and the decision (at most 256 characters).
    #[arg(long, value_parser = parse_text)]
    pub reason: String,
    /// Who (default: `$USER`, else `cli`; at most 256 characters).
    #[arg(long, value_parser = parse_text)]
    pub actor: Option<String>,
}

/// Runs a `config` subcommand.
pub async fn run(
    session: &Session,
    cmd: &ConfigCmd,
    wait: Duration,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Show { breaker, history, json } => show(session, breaker, *history, *json, out).await,
        ConfigCmd::Diff { breaker, file } => {
            let local = read_file(file)?;
            let (fleet, _) = fleet_record(session, breaker).await?;
            write_diff(out, &fleet.config, &local)
        }
        ConfigCmd::Set(args) => Box::pin(set(session, args, wait, out, log)).await,
    }
}

/// Reads a config file (JSON), checked as the nodes would check it.
fn read_file(path: &Path) -> Result<BreakerConfig, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let config: BreakerConfig = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{} is not a breaker config: {e}", path.display())))?;
    config.validate().map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    Ok(config)
}

fn unreadable(breaker: &BreakerName, e: &impl ToString) -> CliError {
    CliError::Output(format!("the fleet's config of {breaker} is unreadable: {}", e.to_string()))
}

/// The fleet's record of `breaker` and its revision.
async fn fleet_record(session: &Session, breaker: &BreakerName) -> Result<(ConfigRecord, u64), CliError> {
    let store = session.bucket(session.layout().config_bucket()).await?;
    let Some((revision, payload, _)) = session.raw_entry(&store, breaker.as_str()).await? else {
        return Err(CliError::UnknownBreaker {
            breaker: breaker.to_string(),
            prefix: session.layout().prefix().to_owned(),
        });
    };
    let record = codec::decode_config_record(&payload, &Limits::default()).map_err(|e| unreadable(breaker, &e))?;
    Ok((record, revision))
}

fn source_text(source: &ConfigSource) -> String {
    match source {
        ConfigSource::Deployed { node } => format!("deployed by node {node}"),
        ConfigSource::Operator { actor, reason } => format!("set by {actor}: {reason}"),
        ConfigSource::Unknown => "source not recorded".to_owned(),
    }
}

async fn show(
    session: &Session,
    breaker: &BreakerName,
    history: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if !history {
        let (record, revision) = fleet_record(session, breaker).await?;
        if json {
            let bytes = codec::encode_config_record(&record).map_err(|e| CliError::Output(e.to_string()))?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| CliError::Output(e.to_string()))?;
            return json_line(out, &value);
        }
        writeln!(
            out,
            "{breaker}: version {}, {} (revision {revision})",
            record.config.version,
            source_text(&record.source)
        )?;
        let text = serde_json::to_string_pretty(&record.config).map_err(|e| CliError::Output(e.to_string()))?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let store = session.bucket(session.layout().config_bucket()).await?;
    let entries = session.history(&store, breaker.as_str()).await?;
    if entries.is_empty() {
        return Err(CliError::UnknownBreaker {
            breaker: breaker.to_string(),
            prefix: session.layout().prefix().to_owned(),
        });
    }
    let mut rows = Vec::new();
    for entry in &entries {
        let time = render::timestamp(entry.created);
        let decoded = codec::decode_config_record(&entry.value, &Limits::default());
        if json {
            let record = decoded.ok().and_then(|r| codec::encode_config_record(&r).ok());
            let record: Option<Value> = record.and_then(|b| serde_json::from_slice(&b).ok());
            rows.push(serde_json::json!({ "revision": entry.revision, "time": time, "record": record }));
            continue;
        }
        match decoded {
            Ok(record) => writeln!(
                out,
                "{} {time} version {} {}",
                entry.revision,
                record.config.version,
                source_text(&record.source)
            )?,
            Err(e) => writeln!(out, "{} {time} unreadable: {e}", entry.revision)?,
        }
    }
    if json {
        return json_line(out, &rows);
    }
    Ok(())
}

/// The settings two configs differ in, as dotted paths: `trip.failure_rate: 0.5 -> 0.8`.
pub fn diff(fleet: &BreakerConfig, local: &BreakerConfig) -> Vec<String> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, lines: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    walk(&sub, x.get(key), y.get(key), lines);
                }
            }
            (a, b) if a == b => {}
            (a, b) => {
                let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), Value::to_string);
                lines.push(format!("{path}: {} -> {}", show(a), show(b)));
            }
        }
    }
    let (a, b) = (serde_json::to_value(fleet).ok(), serde_json::to_value(local).ok());
    let mut lines = Vec::new();
    walk("", a.as_ref(), b.as_ref(), &mut lines);
    lines
}

fn write_diff(out: &mut impl Write, fleet: &BreakerConfig, local: &BreakerConfig) -> Result<(), CliError> {
    let lines = diff(fleet, local);
    if lines.is_empty() {
        writeln!(out, "no difference")?;
    }
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

async fn set(
    session: &Session,
    args: &SetArgs,
    wait: Duration,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    let breaker = &args.breaker;
    let wanted = read_file(&args.file)?;
    let actor = args.actor.clone().unwrap_or_else(default_actor);
    let store = session.bucket(session.layout().config_bucket()).await?;
    let (current, revision) = match fleet_record(session, breaker).await {
        Ok((record, revision)) => (Some(record), revision),
        Err(CliError::UnknownBreaker { .. }) => (None, 0),
        Err(e) => return Err(e),
    };
    let version = operator_version(&wanted, current.as_ref());
    let config = BreakerConfig { version, ..wanted };
    if let Some(current) = &current {
        write_diff(log, &current.config, &config)?;
    }
    let record =
        ConfigRecord { config, source: ConfigSource::Operator { actor: actor.clone(), reason: args.reason.clone() } };
    let payload = codec::encode_config_record(&record).map_err(|e| CliError::Output(e.to_string()))?;
    if !session.update(&store, breaker.as_str(), payload.into(), revision).await? {
        return Err(CliError::Output(format!(
            "the config of {breaker} changed while setting it (revision {revision} moved on): look again and retry"
        )));
    }
    writeln!(log, "wrote version {version} of {breaker} to {}", store.name)?;
    let applies = move |d: &breaker_actors::machine::Decision| d.config_version == version;
    let command = Command {
        version: WIRE_VERSION,
        breaker: breaker.clone(),
        kind: CommandKind::Reconfigure,
        actor,
        reason: args.reason.clone(),
        duration_ms: None,
    };
    command_and_wait(session, &command, wait, applies, out, log).await
}
