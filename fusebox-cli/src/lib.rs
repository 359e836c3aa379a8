//! The `fusebox` operator CLI: look at a fleet's breakers and steer them over NATS, with
//! plain async-nats and the fleet's names ([`transport_nats::layout::Layout`]) and codecs
//! ([`transport_nats::codec`]). It is not a node: it never creates a stream or bucket (an
//! operator may not), takes no lease and decides nothing. `docs/cli.md` is the user's guide;
//! `src/main.rs` only calls [`main`].
//!
//! ```text
//! fusebox [--server URL]... [--user U --password P | --creds FILE | --nkey FILE | --token T]
//!         [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-first] [--context NAME]
//!         [--prefix fusebox] [--js-api-prefix SUBJECT] [--inbox-prefix SUBJECT] [--timeout DURATION] <command>
//!
//!   status [--json]                      every breaker: state, term, seq, decider, reason, age
//!   watch [BREAKER] [--count N] [--json] decisions as they are written
//!   history BREAKER [--json]             the decisions kept in the state bucket
//!   describe BREAKER [--json]            config, lease, decision, and the decider's window
//!   force-open | force-closed | disable | metrics-only BREAKER --reason TEXT [--actor NAME] [--for DURATION]
//!   reset BREAKER --reason TEXT [--actor NAME]
//!   publish BREAKER [--failures N] [--successes N] [--slow N] [--node ID]
//!   repair BREAKER --reason TEXT [--actor NAME]   fix a bad lease value or decision
//!   dashboard [--listen 127.0.0.1:8089]          a live web page of every breaker (docs/dashboard.md)
//!   completions bash|zsh|fish|elvish|powershell  a shell completion script
//!   config show BREAKER [--history] [--json]      the fleet's config, its version and source
//!   config diff BREAKER --file F                  what a config file would change
//!   config set BREAKER --file F --reason TEXT [--actor NAME]   an operator's config (docs/tuning.md)
//! ```
//!
//! `--for DURATION` (`90s`, `30m`, `2h`, `1d`; at most 7 days) time-boxes a manual command:
//! the decider returns the breaker to automatic control when it runs out (reason
//! `override_expired`). `describe` waits `--timeout` (default 2 s) for the decider's answer.
//!
//! Global `--lease-shards N` (default 16) must match the nodes' `lease_shards`: `status` and
//! `repair` read the lease key of the breaker's shard.
//!
//! Exit codes: 0 success, 1 an operational error ([`CliError`] other than `Usage`), 2 a usage
//! error. Environment: `FUSEBOX_NATS_URL` (comma-separated URLs; else `NATS_URL`),
//! `FUSEBOX_NATS_USER`, `FUSEBOX_NATS_PASSWORD`, `FUSEBOX_NATS_TOKEN`, `NATS_CONTEXT` (a nats
//! CLI context, [`transport_nats::nats::NatsContext`]).
//!
//! # JSON output
//!
//! The field names below are a stable interface: fields may be added, none renamed or
//! removed. Absent values are `null`. States and kinds use the wire spelling of
//! `docs/wire-format.md` (`half_open`, `forced_open`, `force_open`, `failure_rate`).
//!
//! `status --json` prints one array with one object per breaker that has a decision (a key
//! of `<prefix>_state`) or a config (a key of `<prefix>_config`), sorted by name
//! ([`StatusRow`]):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `breaker` | string | the breaker |
//! | `state` | string or null | fleet state of the current decision; null before the first one |
//! | `term`, `seq` | integer or null | the decision's id |
//! | `decider` | string or null | the node that made it |
//! | `reason_kind` | string or null | `tripped`, `manual`, `open_elapsed`, ... |
//! | `reason` | string or null | the reason in a few words (`tripped: failure_rate 10/10 from 1 node`) |
//! | `revision` | integer or null | its KV revision |
//! | `updated` | string or null | when the server stored it, RFC 3339 UTC with milliseconds |
//! | `age_ms` | integer or null | milliseconds since then, by this machine's clock |
//! | `configured` | boolean | whether `<prefix>_config` has a config for it |
//! | `decision` | object or null | the decision as stored (`docs/wire-format.md`) |
//! | `error` | string or null | why a stored value could not be read |
//! | `problem` | string or null | what `fusebox repair` would fix: a lease value no node holds (undecodable, or without a TTL), a decision that does not decode or is of a term no lease had |
//!
//! `history --json` prints one array, oldest first, and `watch --json` one object per line,
//! of [`DecisionRow`]s:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `breaker` | string | the breaker (the key) |
//! | `revision` | integer | the KV revision |
//! | `time` | string | when the server stored it, RFC 3339 UTC |
//! | `operation` | string | `put`; `delete` or `purge` for a marker (no decision) |
//! | `state`, `term`, `seq`, `decider`, `reason_kind` | | as in `status` |
//! | `reason` | string or null | the reason with everything it carries (a trip's evidence) |
//! | `evidence` | object or null | a trip's evidence: `rule`, `decisive`, `failed`, `slow`, `nodes`, `streak`, and `rate` (0 to 1: the slow share for `slow_call_rate`, the failure share otherwise; null without decisive calls) |
//! | `expires_after_ms` | integer or null | a time-boxed manual state's duration (`--for`) |
//! | `decision` | object or null | the decision as stored |
//! | `error` | string or null | a marker, or why the value could not be read |
//!
//! `reason_kind` `override_expired` is the decision that ended a time-boxed override.
//!
//! `describe --json` prints one object ([`describe::Description`]):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `breaker` | string | the breaker |
//! | `config` | object or null | the config bucket's value for it, as the nodes decode it |
//! | `config_error` | string or null | why that value does not decode |
//! | `lease` | object or null | its shard's lease: `key` (`shard-<n>`), `holder`, `term`, `revision`, `error` (a value that does not decode); null when nobody holds it |
//! | `decision` | object or null | the current decision, as a `history` row |
//! | `decider` | object or null | the deciding node's answer (`docs/wire-format.md`, "Describe"): `node`, `term`, `last_decided`, `phase`, `state`, `backoff_level`, `window` (`calls`, `failures`, `slow`), `contributions` (`[{node, failed, slow}]`, per node in this phase), `override_ends_in_ms`, `config` |
//! | `decider_error` | string or null | `no decider answered within 2 s`, or why the answer does not decode |

pub mod args;
pub mod config;
pub mod dashboard;
pub mod describe;
pub mod error;
pub mod render;
pub mod repair;
pub mod run;
pub mod session;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use self::args::Cli;
pub use self::error::CliError;
pub use self::render::{ContributorRow, DecisionRow, EvidenceRow, StatusRow};
pub use self::run::run;

/// The `fusebox` binary: parses the command line (clap exits 2 on a usage error), runs the
/// command on a single-threaded runtime, prints an error to stderr and maps it to the exit
/// code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut log = std::io::stderr();
    match runtime.block_on(run(cli, &mut out, &mut log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            let _ = writeln!(log, "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
