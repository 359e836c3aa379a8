//! `fusebox describe <breaker>`: everything about one breaker in one place. The config
//! (the config bucket's value, as `transport_nats::codec::decode_config` reads it), the lease
//! of its shard (holder and term), the current decision, and what only the deciding node
//! holds (its evidence window and each node's contribution), asked with one core NATS
//! request on `<prefix>.describe.<breaker>` that only the decider answers.

use std::io::Write;
use std::time::Duration;

use breaker_actors::machine::BreakerName;
use breaker_actors::registry::lease_shard;
use serde::Serialize;
use transport_nats::codec::{self, DescribeReply, LeaseHolder, Limits};

use super::error::{CliError, seconds};
use super::render::{self, DecisionRow};
use super::run::{known, shard_view};
use super::session::Session;

/// How long `describe` waits for the decider's answer unless `--timeout` says.
pub const DEFAULT_DESCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The lease of a breaker's shard in [`Description`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    /// The lease key (`shard-<n>`).
    pub key: String,
    /// The node holding it, if the value decodes.
    pub holder: Option<String>,
    /// Its term (null for a value of the format before terms).
    pub term: Option<u64>,
    /// The key's revision.
    pub revision: u64,
    /// Why the value does not decode.
    pub error: Option<String>,
}

/// `describe --json`: one object (see the crate docs for the fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    /// The breaker.
    pub breaker: String,
    /// The config bucket's value, decoded (null without one, or when it does not decode).
    pub config: Option<serde_json::Value>,
    /// Why the config bucket's value does not decode.
    pub config_error: Option<String>,
    /// The lease of its shard, null when nobody holds it.
    pub lease: Option<LeaseRow>,
    /// The current decision, as a `history` row.
    pub decision: Option<DecisionRow>,
    /// The decider's answer (`docs/wire-format.md`), null when none came.
    pub decider: Option<DescribeReply>,
    /// Why there is no answer: `no decider answered within 2 s`, or an undecodable answer.
    pub decider_error: Option<String>,
}

/// Runs `describe`, waiting at most `wait` for the decider.
pub async fn describe(
    session: &Session,
    breaker: &BreakerName,
    json: bool,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let layout = session.layout();
    let state = session.bucket(layout.state_bucket()).await?;
    known(session, Some(&state), breaker).await?;
    let limits = Limits::default();

    let configs = session.bucket(layout.config_bucket()).await?;
    let (config, config_error) = match session.entry(&configs, breaker.as_str()).await? {
        None => (None, None),
        Some(entry) => match codec::decode_config(&entry.value, &limits) {
            Ok(config) => (serde_json::to_value(config).ok(), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };

    let leases = session.bucket(layout.lease_bucket()).await?;
    let shard = shard_view(session, &leases, breaker).await?;
    let lease = shard.lease.as_ref().map(|seen| {
        let (holder, term, error) = match &seen.holder {
            Ok(LeaseHolder::Holder(value)) => (Some(value.node.to_string()), Some(value.term.0), None),
            Ok(LeaseHolder::Legacy(node)) => (Some(node.to_string()), None, None),
            Err(e) => (None, None, Some(e.clone())),
        };
        LeaseRow { key: shard.lease_key.clone(), holder, term, revision: seen.revision, error }
    });

    let decision = session.entry(&state, breaker.as_str()).await?.map(|entry| DecisionRow::new(&entry));

    let payload = codec::encode_describe_request(breaker).map_err(|e| CliError::Output(e.to_string()))?;
    let subject = layout.describe_subject(breaker);
    let what = format!("asking the decider on {subject}");
    let (decider, decider_error) = match session.request(&what, subject, payload.into(), wait).await? {
        None => (None, Some(format!("no decider answered within {}", seconds(wait)))),
        Some(answer) => match codec::decode_describe_reply(breaker, &answer, &limits) {
            Ok(reply) => (Some(reply), None),
            Err(e) => (None, Some(format!("the decider's answer does not decode: {e}"))),
        },
    };

    let description =
        Description { breaker: breaker.to_string(), config, config_error, lease, decision, decider, decider_error };
    if json {
        let text = serde_json::to_string(&description).map_err(|e| CliError::Output(e.to_string()))?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", text(&description, session.lease_shards()))?;
    }
    Ok(())
}

/// The text form: one labelled line per part, the config last.
pub fn text(d: &Description, shards: u32) -> String {
    let mut lines = vec![format!("breaker   {}", d.breaker)];
    lines.push(match &d.lease {
        Some(LeaseRow { key, holder: Some(holder), term, revision, .. }) => {
            let term = term.map_or_else(|| "unknown".to_owned(), |t| t.to_string());
            format!("lease     {key} held by {holder}, term {term} (revision {revision})")
        }
        Some(LeaseRow { key, error, revision, .. }) => format!(
            "lease     {key} at revision {revision} does not decode: {}",
            error.as_deref().unwrap_or("unknown value")
        ),
        None => format!("lease     none (shard {} of {shards})", breaker_shard(&d.breaker, shards)),
    });
    lines.push(match &d.decision {
        Some(row) => format!("decision  {}", row.line()),
        None => "decision  none yet".to_owned(),
    });
    match (&d.decider, &d.decider_error) {
        (Some(r), _) => {
            let boxed = r
                .override_ends_in_ms
                .map_or_else(String::new, |ms| format!(", back to automatic in {}", render::age(ms)));
            lines.push(format!(
                "decider   {} (term {}) at {}, phase {}, state {}{boxed}",
                r.node,
                r.term.0,
                render::id(r.last_decided),
                render::id(r.phase),
                render::state_text(&r.state)
            ));
            let w = r.window;
            lines.push(format!("window    {} calls, {} failed, {} slow", w.calls, w.failures, w.slow));
            if r.contributions.is_empty() {
                lines.push("nodes     none reported failed or slow calls in this phase".to_owned());
            }
            for (i, c) in r.contributions.iter().enumerate() {
                let label = if i == 0 { "nodes    " } else { "         " };
                lines.push(format!("{label} {}: {} failed, {} slow", c.node, c.failed, c.slow));
            }
        }
        (None, error) => lines.push(format!("decider   {}", error.as_deref().unwrap_or("none"))),
    }
    match (&d.config, &d.config_error) {
        (Some(config), _) => {
            let pretty = serde_json::to_string_pretty(config).unwrap_or_default();
            lines.push(format!("config    {}", pretty.replace('\n', "\n          ")));
        }
        (None, Some(error)) => lines.push(format!("config    does not decode: {error}")),
        (None, None) => lines.push("config    none in the config bucket".to_owned()),
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn breaker_shard(breaker: &str, shards: u32) -> u32 {
    BreakerName::new(breaker).map_or(0, |b| lease_shard(&b, shards).0)
}
