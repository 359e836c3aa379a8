//! What each subcommand does over a [`Session`]: read the state and config buckets
//! (`status`, `history`, `watch`), publish an operator command and wait for the decision
//! that applies it, or publish a foreign outcome batch. Output goes to the writers given,
//! progress and hints to `log`, so the binary's stdout stays parseable.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use breaker_actors::machine::{BreakerName, Command, CommandKind, Decision, NodeId, Reason, WIRE_VERSION};
use breaker_actors::registry::lease_shard;
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;
use transport_nats::codec::{self, CONTENT_TYPE, JSON, Limits, MSG_ID, TermRecord};
use transport_nats::layout;

use super::args::{Cli, Cmd, CommandArgs, DEFAULT_COMMAND_TIMEOUT, ManualArgs, PublishArgs};
use super::describe;
use super::error::CliError;
use super::render::{self, DecisionRow, HISTORY_HEADERS, STATUS_HEADERS, StatusRow};
use super::repair::{self, LeaseSeen, Problems};
use super::session::Session;

/// Runs `cli`, writing results to `out` and progress to `log`.
pub async fn run(cli: Cli, out: &mut impl Write, log: &mut impl Write) -> Result<(), CliError> {
    // Completions need no fleet.
    if let Cmd::Completions { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut command, "fusebox", out);
        return Ok(());
    }
    // Usage errors come before any connection attempt.
    if let Cmd::Publish(args) = &cli.command
        && args.failures == 0
        && args.successes == 0
        && args.slow == 0
    {
        return Err(CliError::Usage("nothing to publish: give --failures, --successes or --slow".into()));
    }
    let session = Session::connect(&cli.global).await?;
    if let Cmd::Dashboard { listen } = &cli.command {
        return super::dashboard::run(session, *listen, out).await;
    }
    let wait = cli.global.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
    match &cli.command {
        Cmd::Status { json } => status(&session, *json, out).await,
        Cmd::Watch { breaker, count, json } => {
            watch(&session, breaker.as_ref(), *count, cli.global.timeout, *json, out, log).await
        }
        Cmd::History { breaker, json } => history(&session, breaker, *json, out).await,
        Cmd::ForceOpen(args) => manual(&session, CommandKind::ForceOpen, args, wait, out, log).await,
        Cmd::ForceClosed(args) => manual(&session, CommandKind::ForceClosed, args, wait, out, log).await,
        Cmd::Disable(args) => manual(&session, CommandKind::Disable, args, wait, out, log).await,
        Cmd::MetricsOnly(args) => manual(&session, CommandKind::MetricsOnly, args, wait, out, log).await,
        Cmd::Reset(args) => command(&session, CommandKind::Reset, args, None, wait, out, log).await,
        Cmd::Describe { breaker, json } => {
            let wait = cli.global.timeout.unwrap_or(describe::DEFAULT_DESCRIBE_WAIT);
            describe::describe(&session, breaker, *json, wait, out).await
        }
        Cmd::Publish(args) => publish(&session, args, out).await,
        Cmd::Repair(args) => repair(&session, args, wait, out, log).await,
        Cmd::Config(cmd) => Box::pin(super::config::run(&session, cmd, wait, out, log)).await,
        Cmd::Completions { .. } | Cmd::Dashboard { .. } => Ok(()),
    }
}

pub(crate) fn json_line(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(value).map_err(|e| CliError::Output(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

async fn status(session: &Session, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let state = session.bucket(session.layout().state_bucket()).await?;
    let config = session.bucket(session.layout().config_bucket()).await?;
    let decided: BTreeSet<String> = session.keys(&state).await?.into_iter().collect();
    let configured: BTreeSet<String> = session.keys(&config).await?.into_iter().collect();
    let leases = session.bucket(session.layout().lease_bucket()).await?;
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    for breaker in decided.union(&configured) {
        let entry = if decided.contains(breaker) { session.entry(&state, breaker).await? } else { None };
        let mut row = StatusRow::new(breaker, entry.as_ref(), configured.contains(breaker), now);
        if let Ok(name) = BreakerName::new(breaker) {
            let view = shard_view(session, &leases, &name).await?;
            let read = entry.as_ref().map(render::decode);
            row.problem = view.diagnose(read.as_ref()).summary();
        }
        rows.push(row);
    }
    if json {
        return json_line(out, &rows);
    }
    let cells: Vec<Vec<String>> = rows.iter().map(StatusRow::cells).collect();
    write!(out, "{}", render::table(&STATUS_HEADERS, &cells))?;
    Ok(())
}

async fn history(session: &Session, breaker: &BreakerName, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let state = session.bucket(session.layout().state_bucket()).await?;
    let entries = session.history(&state, breaker.as_str()).await?;
    if entries.is_empty() {
        known(session, None, breaker).await?;
    }
    let rows: Vec<DecisionRow> = entries.iter().map(DecisionRow::new).collect();
    if json {
        return json_line(out, &rows);
    }
    let cells: Vec<Vec<String>> = rows.iter().map(DecisionRow::cells).collect();
    write!(out, "{}", render::table(&HISTORY_HEADERS, &cells))?;
    Ok(())
}

/// Fails with [`CliError::UnknownBreaker`] unless `breaker` has a decision (when `state` is
/// given) or a config.
pub(crate) async fn known(
    session: &Session,
    state: Option<&async_nats::jetstream::kv::Store>,
    breaker: &BreakerName,
) -> Result<(), CliError> {
    if let Some(state) = state
        && session.entry(state, breaker.as_str()).await?.is_some()
    {
        return Ok(());
    }
    let config = session.bucket(session.layout().config_bucket()).await?;
    if session.entry(&config, breaker.as_str()).await?.is_some() {
        return Ok(());
    }
    Err(CliError::UnknownBreaker { breaker: breaker.to_string(), prefix: session.layout().prefix().to_owned() })
}

async fn watch(
    session: &Session,
    breaker: Option<&BreakerName>,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    let state = session.bucket(session.layout().state_bucket()).await?;
    let mut changes = session.watch(&state, breaker.map(BreakerName::as_str)).await?;
    let what = format!("watching {}/{}", state.name, breaker.map_or(">", BreakerName::as_str));
    // Tells whoever runs this (a person, or a test) that every decision from now on shows.
    writeln!(log, "{what} (Ctrl-C to stop)")?;
    log.flush()?;
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let ctrl_c = async {
        // Without a signal handler the watch goes on until its count or timeout.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    let mut seen = 0;
    while count.is_none_or(|wanted| seen < wanted) {
        tokio::select! {
            () = &mut ctrl_c => return Ok(()),
            () = sleep_until(deadline) => {
                return match count {
                    Some(wanted) => Err(CliError::WatchTimedOut { seen, wanted, waited: started.elapsed() }),
                    None => Ok(()),
                };
            }
            error = session.violation(&what) => return Err(error),
            change = changes.next() => {
                let entry = session.watched(&what, change)?;
                let row = DecisionRow::new(&entry);
                if json {
                    json_line(out, &row)?;
                } else {
                    writeln!(out, "{}", row.line())?;
                }
                out.flush()?;
                seen += 1;
            }
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn manual(
    session: &Session,
    kind: CommandKind,
    args: &ManualArgs,
    wait: Duration,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    command(session, kind, &args.command, args.duration_ms(), wait, out, log).await
}

async fn command(
    session: &Session,
    kind: CommandKind,
    args: &CommandArgs,
    duration_ms: Option<u64>,
    wait: Duration,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    let actor = args.actor();
    let reason = args.reason.clone();
    let applies = |d: &Decision| matches!(&d.reason, Reason::Manual { command: k, actor: a, reason: r } if *k == kind && *a == actor && *r == reason);
    let command = Command {
        version: WIRE_VERSION,
        breaker: args.breaker.clone(),
        kind,
        actor: actor.clone(),
        reason: reason.clone(),
        duration_ms,
    };
    command_and_wait(session, &command, wait, applies, out, log).await
}

/// Publishes `command` and waits, at most `wait`, for a decision that `applies` says
/// carries it out, printing it.
pub(crate) async fn command_and_wait(
    session: &Session,
    command: &Command,
    wait: Duration,
    applies: impl Fn(&Decision) -> bool,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    let layout = session.layout();
    let breaker = &command.breaker;
    let name = render::command_name(command.kind);
    let state = session.bucket(layout.state_bucket()).await?;
    known(session, Some(&state), breaker).await?;
    // Watching before publishing: the decision may be written before the ack arrives.
    let mut changes = session.watch(&state, Some(breaker.as_str())).await?;
    let payload = codec::encode_command(command)
        .map_err(|e| CliError::Nats { what: format!("encoding the {name} command"), detail: e.to_string() })?;
    let message = PublishMessage::build().payload(payload.into()).header(CONTENT_TYPE, JSON);
    let what = format!("publishing {name} on {}", layout.control_subject(breaker));
    let ack = session.publish(&what, layout.control_subject(breaker), message, layout.control_stream()).await?;
    writeln!(
        log,
        "published {name} for {breaker} ({} seq {}); waiting for a decider to apply it",
        ack.stream, ack.sequence
    )?;
    log.flush()?;

    let what = format!("waiting for the decision applying {name}");
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                return Err(CliError::NotApplied { command: name.to_owned(), breaker: breaker.to_string(), waited: wait });
            }
            error = session.violation(&what) => return Err(error),
            change = changes.next() => {
                let entry = session.watched(&what, change)?;
                let Ok(decision) = render::decode(&entry) else { continue };
                if applies(&decision) {
                    writeln!(out, "applied: {}", DecisionRow::new(&entry).line())?;
                    return Ok(());
                }
            }
        }
    }
}

/// What the lease bucket holds for a breaker's shard.
pub(crate) struct ShardView {
    pub(crate) lease_key: String,
    record_key: String,
    pub(crate) lease: Option<LeaseSeen>,
    record: Option<TermRecord>,
    /// The term record's revision (0: none).
    record_rev: u64,
    per_key_ttl: bool,
}

impl ShardView {
    fn diagnose(&self, decision: Option<&Result<Decision, String>>) -> Problems {
        repair::diagnose(self.lease.as_ref(), self.per_key_ttl, self.record.as_ref(), decision)
    }
}

pub(crate) async fn shard_view(
    session: &Session,
    leases: &kv::Store,
    breaker: &BreakerName,
) -> Result<ShardView, CliError> {
    let shard = lease_shard(breaker, session.lease_shards());
    let (lease_key, record_key) = (layout::lease_key(shard), layout::term_record_key(shard));
    let limits = Limits::default();
    let lease = session.raw_entry(leases, &lease_key).await?.map(|(revision, payload, has_ttl)| LeaseSeen {
        revision,
        holder: codec::decode_lease(&payload, &limits).map_err(|e| e.to_string()),
        has_ttl,
    });
    let raw_record = session.raw_entry(leases, &record_key).await?;
    let record_rev = raw_record.as_ref().map_or(0, |(revision, _, _)| *revision);
    let record = raw_record.and_then(|(_, payload, _)| codec::decode_term_record(&payload, &limits).ok());
    let per_key_ttl = leases.stream.cached_info().config.allow_message_ttl;
    Ok(ShardView { lease_key, record_key, lease, record, record_rev, per_key_ttl })
}

async fn repair(
    session: &Session,
    args: &CommandArgs,
    wait: Duration,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<(), CliError> {
    let breaker = &args.breaker;
    let state = session.bucket(session.layout().state_bucket()).await?;
    known(session, Some(&state), breaker).await?;
    let leases = session.bucket(session.layout().lease_bucket()).await?;
    let view = shard_view(session, &leases, breaker).await?;
    let entry = session.entry(&state, breaker.as_str()).await?;
    let decoded = entry.as_ref().map(render::decode);
    let problems = view.diagnose(decoded.as_ref());
    if problems.is_empty() {
        writeln!(out, "nothing to repair for {breaker}: its lease value and decision are sound")?;
        return Ok(());
    }
    for problem in [&problems.lease, &problems.decision].into_iter().flatten() {
        writeln!(out, "found: {problem}")?;
    }
    // Watching before writing: the new decider's restatement may come at once.
    let mut changes = session.watch(&state, Some(breaker.as_str())).await?;
    let mut above = decoded.as_ref().and_then(|d| d.as_ref().ok()).map_or(0, |d| d.id.term.0);
    if problems.decision.is_some() {
        let history = session.history(&state, breaker.as_str()).await?;
        let terms: Vec<u64> = history.iter().filter_map(|e| render::decode(e).ok()).map(|d| d.id.term.0).collect();
        let term = repair::repair_term(view.lease.as_ref(), view.record.as_ref(), &terms);
        let encode = |e: codec::EncodeError| CliError::Output(e.to_string());
        // The term record first: every lease granted from now on is above the repair.
        let record = TermRecord { version: codec::LEASE_VERSION, term, unexplained: None };
        let payload = codec::encode_term_record(&record).map_err(encode)?;
        if !session.update(&leases, &view.record_key, payload.into(), view.record_rev).await? {
            return Err(moved(&view.record_key));
        }
        let decider = NodeId::new(repair::REPAIRER).map_err(|e| CliError::Output(e.to_string()))?;
        let restatement = repair::restatement(breaker, term, decider, &args.actor(), &args.reason);
        let payload = codec::encode_decision(&restatement).map_err(encode)?;
        let revision = entry.as_ref().map_or(0, |e| e.revision);
        if !session.update(&state, breaker.as_str(), payload.into(), revision).await? {
            return Err(moved(breaker.as_str()));
        }
        writeln!(
            out,
            "wrote: term record {term}, restatement {} closed ({})",
            render::id(restatement.id),
            render::long_reason(&restatement.reason),
            term = term.0
        )?;
        above = term.0;
    }
    if let (Some(_), Some(lease)) = (&problems.lease, &view.lease) {
        if session.delete_at(&leases, &view.lease_key, lease.revision).await? {
            writeln!(out, "deleted: the lease value at revision {}", lease.revision)?;
        } else {
            writeln!(log, "the lease value moved on before it could be deleted (a node replaced it)")?;
        }
    }
    writeln!(log, "waiting for a decider to take {breaker} over above term {above}")?;
    log.flush()?;
    let what = "waiting for a decider after the repair";
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                return Err(CliError::NotApplied { command: "repair".to_owned(), breaker: breaker.to_string(), waited: wait });
            }
            error = session.violation(what) => return Err(error),
            change = changes.next() => {
                let entry = session.watched(what, change)?;
                let Ok(decision) = render::decode(&entry) else { continue };
                if decision.id.term.0 > above && decision.decider.as_str() != repair::REPAIRER {
                    writeln!(out, "repaired: {}", DecisionRow::new(&entry).line())?;
                    return Ok(());
                }
            }
        }
    }
}

fn moved(key: &str) -> CliError {
    CliError::Nats { what: format!("repairing {key}"), detail: "it changed meanwhile; run repair again".to_owned() }
}

async fn publish(session: &Session, args: &PublishArgs, out: &mut impl Write) -> Result<(), CliError> {
    let layout = session.layout();
    let subject = layout.outcome_subject(&args.breaker, &args.node);
    // Failures last, so that they form the message's failure streak (event order counts).
    let events: Vec<serde_json::Value> = [("success", args.successes), ("slow", args.slow), ("failure", args.failures)]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(outcome, count)| serde_json::json!({ "outcome": outcome, "count": count }))
        .collect();
    let batch = serde_json::json!({
        "version": WIRE_VERSION,
        "breaker": args.breaker.as_str(),
        "node": args.node.as_str(),
        "events": events,
    });
    let payload = serde_json::to_vec(&batch).map_err(|e| CliError::Output(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(MSG_ID, message_id(&args.node.to_string()).as_str());
    let message = PublishMessage::build().payload(payload.into()).headers(headers);
    let what = format!("publishing outcomes on {subject}");
    let ack = session.publish(&what, subject.clone(), message, layout.outcome_stream()).await?;
    let counts: Vec<String> = [("successes", args.successes), ("slow", args.slow), ("failures", args.failures)]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(what, count)| format!("{count} {what}"))
        .collect();
    writeln!(out, "published {} on {subject} ({} seq {})", counts.join(", "), ack.stream, ack.sequence)?;
    Ok(())
}

/// A `Nats-Msg-Id` no other message of the stream has: the node, this process and the
/// time. (Retrying the same message would reuse it; the CLI does not retry.)
fn message_id(node: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("fusebox-cli:{node}:{}:{nanos}", std::process::id())
}
