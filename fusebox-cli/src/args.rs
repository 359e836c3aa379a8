//! The command line of `fusebox`: global connection options and the subcommands, as clap
//! derive types, with the parsers that turn names and durations into checked values so that
//! a bad one is a usage error (exit 2) before anything touches the network.

use std::path::PathBuf;
use std::time::Duration;

use breaker_actors::machine::{BreakerName, CommandKind, MAX_TEXT_LEN, NodeId, check_override};
use clap::{Args, Parser, Subcommand};
use transport_nats::codec::MAX_EVENT_COUNT;
use transport_nats::layout::Layout;
use transport_nats::nats::connect::split_urls;
use transport_nats::nats::{Auth, AuthError, ConnectionSettings, NatsContext, Tls};

use super::config::ConfigCmd;

/// The server when none is given (`--server`, `FUSEBOX_NATS_URL`, `NATS_URL`, a context).
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";
/// How long a request (connect, KV read, publish ack) may take unless `--timeout` says.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command waits for its decision unless `--timeout` says.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Look at and steer a Fusebox fleet's circuit breakers over NATS.
#[derive(Debug, Parser)]
#[command(name = "fusebox", version)]
pub struct Cli {
    /// How to reach the fleet.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Connection options, shared by every subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct Global {
    /// NATS server URL; repeat for a cluster [default: `NATS_URL`, else the context's, else
    /// `nats://127.0.0.1:4222`].
    #[arg(
        long = "server",
        short = 's',
        global = true,
        env = "FUSEBOX_NATS_URL",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub servers: Vec<String>,
    /// User name.
    #[arg(long, global = true, env = "FUSEBOX_NATS_USER", requires = "password", conflicts_with_all = ["creds", "nkey", "token"])]
    pub user: Option<String>,
    /// Password (prefer the environment variable: arguments show in `ps`).
    #[arg(long, global = true, env = "FUSEBOX_NATS_PASSWORD", hide_env_values = true, requires = "user")]
    pub password: Option<String>,
    /// A `.creds` file: user JWT and nkey seed (operator mode, decentralised auth).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["nkey", "token"])]
    pub creds: Option<PathBuf>,
    /// A file holding an nkey user seed (`SU...`).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "token")]
    pub nkey: Option<PathBuf>,
    /// A token (prefer the environment variable: arguments show in `ps`).
    #[arg(long, global = true, env = "FUSEBOX_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA certificates the server's certificate must chain to.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of a client certificate (mutual TLS), with `--tls-key`.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The TLS handshake first, before the server's INFO (the server's `handshake_first`).
    #[arg(long, global = true)]
    pub tls_first: bool,
    /// A nats CLI context (`~/.config/nats/context/NAME.json`) for the server, credentials
    /// and TLS the options above do not give [default: `NATS_CONTEXT`, else the nats CLI's
    /// selected context].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The fleet's prefix: streams, buckets and subjects derive from it.
    #[arg(long, global = true, default_value = "fusebox", value_parser = parse_layout, value_name = "PREFIX")]
    pub prefix: Layout,
    /// `JetStream` API prefix, for an account that imports the fleet's API
    /// (the operators of docs/auth.md: `$JS.fusebox.API`).
    #[arg(long, global = true, value_name = "SUBJECT")]
    pub js_api_prefix: Option<String>,
    /// Inbox prefix for replies and KV watches (the operators of docs/auth.md:
    /// `_INBOX_fusebox_ops`).
    #[arg(long, global = true, value_name = "SUBJECT")]
    pub inbox_prefix: Option<String>,
    /// How long to wait: for each request (default 5s); for a command's decision (default
    /// 10s); for `watch`, how long to watch (default: until Ctrl-C). `500ms`, `5s`, `2m`; a
    /// bare number is seconds.
    #[arg(long, global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// The fleet's number of lease shards (the nodes' `lease_shards`): which lease key
    /// covers a breaker.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub lease_shards: u32,
}

impl Global {
    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    /// The servers, credentials and TLS to connect with: the options, then `NATS_URL` for
    /// the servers, then the context (`--context`, `NATS_CONTEXT` or the nats CLI's
    /// selection) for whatever is still unset, then [`DEFAULT_SERVER`].
    pub fn connection(&self) -> Result<(Vec<String>, ConnectionSettings), AuthError> {
        let context = match &self.context {
            Some(name) => {
                let dir = NatsContext::config_dir().unwrap_or_else(|| PathBuf::from(".config/nats"));
                Some(NatsContext::load(&dir, name)?)
            }
            None => NatsContext::load_selected()?,
        }
        .unwrap_or_default();
        let nats_url = std::env::var("NATS_URL").map(|list| split_urls(&list)).unwrap_or_default();
        let servers = [self.servers.clone(), nats_url, context.servers()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_SERVER.to_owned()]);
        let from_context = context.settings();
        let auth = match (&self.user, &self.password, &self.creds, &self.nkey, &self.token) {
            (Some(user), Some(password), ..) => Auth::user_password(user.clone(), password.clone()),
            (_, _, Some(creds), ..) => Auth::CredsFile(creds.clone()),
            (_, _, _, Some(nkey), _) => Auth::NKeyFile(nkey.clone()),
            (.., Some(token)) => Auth::Token(token.clone()),
            _ => from_context.auth,
        };
        let tls = Tls {
            ca: self.tls_ca.clone().or(from_context.tls.ca),
            client_cert: self.tls_cert.clone().or(from_context.tls.client_cert),
            client_key: self.tls_key.clone().or(from_context.tls.client_key),
            required: false,
            first: self.tls_first || from_context.tls.first,
        };
        Ok((servers, ConnectionSettings { auth, tls }))
    }
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Every breaker: fleet state, decision id, decider, last reason, age.
    Status {
        /// One JSON array instead of a table (fields in the `cli` module docs).
        #[arg(long)]
        json: bool,
    },
    /// Decisions as they are written, one line each, until Ctrl-C.
    Watch {
        /// Only this breaker (default: all).
        #[arg(value_parser = parse_breaker)]
        breaker: Option<BreakerName>,
        /// Exit after this many decisions (an error if `--timeout` comes first).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The decisions kept for a breaker (the state bucket's history), oldest first.
    History {
        /// The breaker.
        #[arg(value_parser = parse_breaker)]
        breaker: BreakerName,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Reject every call until reset (or for `--for`).
    ForceOpen(ManualArgs),
    /// Permit every call until reset (or for `--for`), recording outcomes.
    ForceClosed(ManualArgs),
    /// Permit every call and record nothing, until reset (or for `--for`).
    Disable(ManualArgs),
    /// Permit every call; evaluate the rules without enforcing them, until reset (or for
    /// `--for`).
    MetricsOnly(ManualArgs),
    /// Back to automatic: closed, with fresh windows.
    Reset(CommandArgs),
    /// Report test outcomes as a foreign publisher would (one JSON batch).
    Publish(PublishArgs),
    /// Recover a wedged breaker: replace a lease value no node can hold and an undecodable
    /// or impossible decision with an audited restatement (closed), then wait for a
    /// decider to take over. Writes to the lease and state buckets (node rights).
    Repair(CommandArgs),
    /// The fleet's config of a breaker: show it, diff a file against it, set it
    /// (`docs/tuning.md`).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The breaker in full: its config, lease holder and term, current decision, and what
    /// its decider holds (evidence window, per-node contributions), asked of the decider.
    Describe {
        /// The breaker.
        #[arg(value_parser = parse_breaker)]
        breaker: BreakerName,
        /// One JSON object instead of text (fields in the `cli` module docs).
        #[arg(long)]
        json: bool,
    },
    /// Serve a live web page of every breaker of the fleet (`docs/dashboard.md`) until
    /// Ctrl-C: states, deciders, reasons and evidence, overrides, probes, and each
    /// breaker's history.
    Dashboard {
        /// The address to serve on (port 0: any free port; the address is printed).
        #[arg(long, default_value = super::dashboard::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: std::net::SocketAddr,
    },
    /// Print a shell completion script: `fusebox completions bash > /etc/bash_completion.d/fusebox`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// The arguments of an operator command.
#[derive(Debug, Clone, Args)]
pub struct CommandArgs {
    /// The breaker.
    #[arg(value_parser = parse_breaker)]
    pub breaker: BreakerName,
    /// Why: recorded in the decision (at most 256 characters).
    #[arg(long, value_parser = parse_text)]
    pub reason: String,
    /// Who: recorded in the decision (default: `$USER`, else `cli`; at most 256 characters).
    #[arg(long, value_parser = parse_text)]
    pub actor: Option<String>,
}

impl CommandArgs {
    /// The actor to record.
    pub fn actor(&self) -> String {
        self.actor.clone().unwrap_or_else(default_actor)
    }
}

/// The arguments of a command that sets a manual state.
#[derive(Debug, Clone, Args)]
pub struct ManualArgs {
    /// The breaker, reason and actor.
    #[command(flatten)]
    pub command: CommandArgs,
    /// Time-box the override: after this long the decider returns the breaker to automatic
    /// control (closed, as a reset would). `90s`, `30m`, `2h`, `1d`; at most 7 days.
    #[arg(long = "for", value_parser = parse_override, value_name = "DURATION")]
    pub duration: Option<Duration>,
}

impl ManualArgs {
    /// The time box in milliseconds, as the command carries it.
    pub fn duration_ms(&self) -> Option<u64> {
        self.duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// An override's duration: what [`parse_duration`] reads, and hours (`2h`) and days
/// (`1d`); at least 1 ms and at most 7 days.
pub fn parse_override(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let hours = |n: &str, per: f64| -> Result<Duration, String> {
        let value: f64 = n.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 2h, 1d)"))?;
        Duration::try_from_secs_f64(value * per).map_err(|e| format!("{s:?}: {e}"))
    };
    let duration = if let Some(n) = s.strip_suffix('h') {
        hours(n, 3600.0)?
    } else if let Some(n) = s.strip_suffix('d') {
        hours(n, 86_400.0)?
    } else {
        parse_duration(s)?
    };
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    check_override(CommandKind::ForceOpen, Some(ms)).map_err(|e| e.to_string())?;
    Ok(duration)
}

/// The actor when none is given: the login name, else `cli`.
pub fn default_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.chars().count() <= MAX_TEXT_LEN)
        .unwrap_or_else(|| "cli".to_owned())
}

/// The arguments of `publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The breaker.
    #[arg(value_parser = parse_breaker)]
    pub breaker: BreakerName,
    /// Failed calls.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_EVENT_COUNT))]
    pub failures: u64,
    /// Successful calls.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_EVENT_COUNT))]
    pub successes: u64,
    /// Slow (successful but slow) calls.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_EVENT_COUNT))]
    pub slow: u64,
    /// The node id to report as: the last token of the subject.
    #[arg(long, default_value = "cli", value_parser = parse_node, value_name = "ID")]
    pub node: NodeId,
}

pub(crate) fn parse_breaker(s: &str) -> Result<BreakerName, String> {
    BreakerName::new(s).map_err(|e| e.to_string())
}

fn parse_node(s: &str) -> Result<NodeId, String> {
    NodeId::new(s).map_err(|e| e.to_string())
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    Layout::new(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_text(s: &str) -> Result<String, String> {
    let len = s.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(format!("{len} characters, at most {MAX_TEXT_LEN}"));
    }
    Ok(s.to_owned())
}

/// `500ms`, `5s`, `1.5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown unit {other:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "5h", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_texts_are_checked_while_parsing() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("fusebox").chain(args.iter().copied()));
        assert!(parse(&["history", "payments"]).is_ok());
        assert!(parse(&["history", "pay.ments"]).is_err());
        assert!(parse(&["--prefix", "Fuse", "status"]).is_err());
        assert!(parse(&["force-open", "payments"]).is_err(), "--reason is required");
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        assert!(parse(&["reset", "payments", "--reason", &long]).is_err());
        assert!(parse(&["publish", "payments", "--failures", "1000001"]).is_err());
        let timed = parse(&["force-open", "payments", "--reason", "x", "--for", "30m"]).unwrap();
        let Cmd::ForceOpen(args) = timed.command else { panic!("force-open parses as force-open") };
        assert_eq!(args.duration_ms(), Some(30 * 60 * 1000));
        assert!(parse(&["disable", "payments", "--reason", "x", "--for", "7d"]).is_ok());
        for bad in ["8d", "169h", "0s", "soon"] {
            assert!(parse(&["disable", "payments", "--reason", "x", "--for", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["reset", "payments", "--reason", "x", "--for", "1m"]).is_err(), "a reset has no time box");
        let cli = parse(&["status", "--server", "nats://a:1", "--server", "nats://b:2", "--timeout", "2s"]).unwrap();
        assert_eq!(cli.global.servers, ["nats://a:1", "nats://b:2"]);
        assert_eq!(cli.global.timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn one_kind_of_credentials_at_a_time_and_certificates_with_their_keys() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("fusebox").chain(args.iter().copied()));
        assert!(parse(&["status", "--creds", "a.creds", "--tls-ca", "ca.pem", "--tls-first"]).is_ok());
        assert!(parse(&["status", "--creds", "a.creds", "--nkey", "a.nk"]).is_err());
        assert!(parse(&["status", "--nkey", "a.nk", "--token", "t"]).is_err());
        assert!(parse(&["status", "--user", "u", "--password", "p", "--token", "t"]).is_err());
        assert!(parse(&["status", "--tls-cert", "c.pem"]).is_err(), "--tls-cert needs --tls-key");
        assert!(parse(&["status", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
    }
}
