//! The demo's conductor (the `cluster-demo` binary behind `make demo`): starts the nats-server
//! cluster, the dependency and the instances, plays the script (fail, recover, kill the
//! decider, kill a server, fail and recover again), shows the fleet (in the terminal, and on
//! the live fleet page of `fusebox dashboard`, served in-process), measures, and cleans up
//! whatever happens (children die with it: they are killed on drop and stop when their stdin
//! closes; servers are killed by PID).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use breaker_actors::machine::{BreakerName, Decision, FleetState, Reason, StateLabel};
use fusebox_testkit::servers::NatsCluster;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use transport_nats::codec::{Limits, decode_decision};

use super::dependency::{Arrival, CallKind, Dependency, Phase};
use super::view::{self, Row};
use super::{BREAKER, InstanceLine, instance, now_ms};

/// The fleet-wide probe budget of the demo's breaker.
const PROBE_BUDGET: u32 = instance::PROBE_BUDGET;

/// The demo's options.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoArgs {
    /// Service instances to run (at least 2: one is killed).
    pub instances: usize,
    /// Multiplies every hold of the script (1.0: about a minute in all).
    pub scale: f64,
    /// Append lines instead of redrawing the screen.
    pub ci: bool,
    /// Run the Python instance if the venv and script are there.
    pub python: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        Self { instances: 4, scale: 1.0, ci: false, python: true }
    }
}

impl DemoArgs {
    /// Parses `[--instances N] [--scale F] [--ci] [--no-python]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--ci" => parsed.ci = true,
                "--no-python" => parsed.python = false,
                "--instances" | "--scale" => {
                    let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                    if flag == "--instances" {
                        parsed.instances = value.parse().map_err(|e| format!("--instances {value}: {e}"))?;
                    } else {
                        parsed.scale = value.parse().map_err(|e| format!("--scale {value}: {e}"))?;
                    }
                }
                "--help" | "-h" => {
                    return Err("usage: cluster-demo [--instances N (>= 2, default 4)] [--scale F (script speed, \
                                default 1.0)] [--ci] [--no-python]"
                        .into());
                }
                other => return Err(format!("unknown flag {other} (try --help)")),
            }
        }
        if parsed.instances < 2 {
            return Err("--instances must be at least 2 (the script kills one)".into());
        }
        if !(parsed.scale.is_finite() && parsed.scale > 0.0) {
            return Err("--scale must be a positive number".into());
        }
        Ok(parsed)
    }
}

/// A decision as the orchestrator saw it in the state bucket.
#[derive(Debug, Clone)]
struct Seen {
    decision: Decision,
    /// Its revision in the bucket: the store's order.
    revision: u64,
    /// When the server stored it (wall clock, ms since the Unix epoch).
    created_ms: u64,
}

impl Seen {
    fn from_entry(entry: &async_nats::jetstream::kv::Entry) -> Option<Self> {
        let breaker = BreakerName::new(&entry.key).ok()?;
        let decision = decode_decision(&breaker, &entry.value, &Limits::default()).ok()?;
        let created_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Some(Self { decision, revision: entry.revision, created_ms })
    }
}

/// How long the orchestrator waits for one answer from NATS: a request sent just before its
/// server died is never answered, and the client's own timeout (10 s) would stall the view.
const NATS_ANSWER: Duration = Duration::from_secs(1);

enum Update {
    Line(InstanceLine),
    Exited(String),
    Decision(Seen),
}

struct Instance {
    node: String,
    child: Child,
    row: Row,
}

/// The script's outcome: the measured figures, and the first step that failed, if any.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `(figure, value)` rows.
    pub rows: Vec<(String, String)>,
    /// The step that did not happen in time.
    pub failed: Option<String>,
}

struct Demo {
    args: DemoArgs,
    started: Instant,
    /// The same moment on the wall clock (ms), which decisions and arrivals are stamped with.
    started_ms: u64,
    cluster: NatsCluster,
    dependency: Dependency,
    instances: Vec<Instance>,
    updates: mpsc::Receiver<Update>,
    sender: mpsc::Sender<Update>,
    decisions: Vec<Seen>,
    applied: Vec<(String, u64, u64, u64)>,
    /// When the script killed a server (wall clock ms).
    server_killed_ms: Option<u64>,
    step: String,
    /// The live fleet page's address (`http://127.0.0.1:PORT`).
    dashboard: String,
    last_draw: Instant,
    interrupted: bool,
}

fn label(state: &FleetState) -> StateLabel {
    state.label()
}

fn describe(seen: &Seen) -> String {
    let d = &seen.decision;
    let reason = match &d.reason {
        Reason::Tripped { rule, evidence } => {
            format!("tripped ({rule:?}: {}/{} failed, {} nodes)", evidence.failed, evidence.decisive, evidence.nodes)
        }
        Reason::Manual { command, actor, reason } => format!("{command:?} by {actor}: {reason}"),
        other => format!("{other:?}").split([' ', '{']).next().unwrap_or_default().to_owned(),
    };
    format!("{}/{} {:?} by {} — {reason}", d.id.term.0, d.id.seq, label(&d.state), d.decider)
}

impl Demo {
    fn elapsed(&self) -> String {
        format!("t={:>5.1}s", self.started.elapsed().as_secs_f64())
    }

    fn say(&mut self, text: &str) {
        println!("{} {text}", self.elapsed());
    }

    fn hold(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs * self.args.scale)
    }

    fn draw(&mut self, force: bool) {
        if !force && self.last_draw.elapsed() < Duration::from_millis(if self.args.ci { 5_000 } else { 500 }) {
            return;
        }
        self.last_draw = Instant::now();
        let header = format!(
            "{} | step: {} | dependency: {} | servers up: {} | dashboard: {}",
            self.elapsed(),
            self.step,
            if self.dependency.is_healthy() { "healthy" } else { "FAILING" },
            self.cluster.nodes().iter().filter(|n| n.pid().is_some()).count(),
            self.dashboard
        );
        let rows: Vec<Row> = self.instances.iter().map(|i| i.row.clone()).collect();
        let recent: Vec<String> = self.decisions.iter().rev().take(4).rev().map(describe).collect();
        let text = view::table(&header, &rows, &recent);
        if self.args.ci {
            println!("{text}");
        } else {
            print!("\x1b[2J\x1b[H{text}");
        }
    }

    fn absorb(&mut self, update: Update) {
        match update {
            Update::Line(InstanceLine::Status { node, state, ok, failed, rejected, probes, deciding, term }) => {
                if let Some(i) = self.instances.iter_mut().find(|i| i.node == node) {
                    i.row = Row { node, alive: i.row.alive, state, ok, failed, rejected, probes, deciding, term };
                }
            }
            Update::Line(InstanceLine::Applied { node, term, seq, at_ms, .. }) => {
                self.applied.push((node, term, seq, at_ms));
            }
            Update::Exited(node) => {
                if let Some(i) = self.instances.iter_mut().find(|i| i.node == node) {
                    i.row.alive = false;
                    i.row.deciding = false;
                }
            }
            Update::Decision(seen) => {
                if self.args.ci {
                    // The store's own time too: a view that lags its store shows here.
                    let stored = seen.created_ms.saturating_sub(self.started_ms);
                    #[allow(clippy::cast_precision_loss)]
                    let stored = stored as f64 / 1000.0;
                    println!("{} decision {} (stored at t={stored:.1}s)", self.elapsed(), describe(&seen));
                }
                self.decisions.push(seen);
            }
        }
    }

    /// Takes updates until `until` holds or `within` passes: `true` if it held.
    async fn wait(&mut self, within: Duration, mut until: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if until(self) {
                return true;
            }
            self.draw(false);
            tokio::select! {
                update = self.updates.recv() => match update {
                    Some(update) => self.absorb(update),
                    None => return until(self),
                },
                () = tokio::time::sleep_until(deadline) => return until(self),
                _ = tokio::signal::ctrl_c() => {
                    self.say("interrupted: stopping everything");
                    self.interrupted = true;
                    return false;
                }
            }
        }
    }

    async fn step(&mut self, name: &str, within: Duration, until: impl FnMut(&Self) -> bool) -> Result<(), String> {
        name.clone_into(&mut self.step);
        self.say(&format!("--> {name}"));
        self.draw(true);
        if self.wait(within, until).await {
            Ok(())
        } else if self.interrupted {
            Err("interrupted".to_owned())
        } else {
            Err(format!("{name}: not within {within:?}"))
        }
    }

    async fn pause(&mut self, name: &str, duration: Duration) -> Result<(), String> {
        name.clone_into(&mut self.step);
        self.say(&format!("--> {name} ({:.0}s)", duration.as_secs_f64()));
        let _ = self.wait(duration, |_| false).await;
        if self.interrupted { Err("interrupted".to_owned()) } else { Ok(()) }
    }

    fn last_decision_after(&self, ms: u64, state: StateLabel) -> Option<&Seen> {
        self.decisions.iter().find(|s| s.created_ms >= ms && label(&s.decision.state) == state)
    }

    fn spawn_instance(&mut self, node: &str, program: &PathBuf, args: &[String]) -> Result<(), String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, name) = (self.sender.clone(), node.to_owned());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(parsed) = serde_json::from_str::<InstanceLine>(&line) {
                    if sender.send(Update::Line(parsed)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = sender.send(Update::Exited(name)).await;
        });
        self.instances.push(Instance {
            node: node.to_owned(),
            child,
            row: Row { node: node.to_owned(), alive: true, state: "starting".into(), ..Row::default() },
        });
        Ok(())
    }

    async fn watch_decisions(&self) -> Result<(), String> {
        let client = async_nats::connect(self.cluster.urls()).await.map_err(|e| format!("connecting: {e}"))?;
        let js = async_nats::jetstream::new(client);
        // The first instance provisions the bucket; wait for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let kv = loop {
            match js.get_key_value("fusebox_state").await {
                Ok(kv) => break kv,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(format!("the state bucket never appeared: {e}")),
            }
        };
        let sender = self.sender.clone();
        tokio::spawn(async move {
            // The watch is a push consumer that notices a lost server only by missed
            // heartbeats (seconds): a direct read twice a second spots a stall and hands the
            // newer value on (the history read at the end fills in what it skipped), and the
            // watch starts again after the last revision seen. Every request is bounded by
            // NATS_ANSWER: one sent just before a server died is never answered.
            let mut last = 0;
            loop {
                let watch = if last == 0 {
                    tokio::time::timeout(NATS_ANSWER, kv.watch_with_history(BREAKER)).await
                } else {
                    tokio::time::timeout(NATS_ANSWER, kv.watch_from_revision(BREAKER, last + 1)).await
                };
                let Ok(Ok(mut watch)) = watch else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let mut check = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        entry = watch.next() => {
                            let Some(Ok(entry)) = entry else { break };
                            if entry.revision <= last {
                                continue;
                            }
                            last = entry.revision;
                            let Some(seen) = Seen::from_entry(&entry) else { continue };
                            if sender.send(Update::Decision(seen)).await.is_err() {
                                return;
                            }
                        }
                        _ = check.tick() => {
                            let Ok(Ok(Some(entry))) = tokio::time::timeout(NATS_ANSWER, kv.entry(BREAKER)).await else {
                                continue;
                            };
                            if entry.revision > last {
                                last = entry.revision;
                                if let Some(seen) = Seen::from_entry(&entry) {
                                    if sender.send(Update::Decision(seen)).await.is_err() {
                                        return;
                                    }
                                }
                                break;
                            }
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Completes the decisions seen live with the bucket's history (the live view may have
    /// skipped some while its server was down), in the store's order.
    async fn complete_decisions(&mut self) {
        let history = async {
            let client = async_nats::connect(self.cluster.urls()).await.ok()?;
            let kv = async_nats::jetstream::new(client).get_key_value("fusebox_state").await.ok()?;
            let mut entries = kv.history(BREAKER).await.ok()?;
            let mut seen = Vec::new();
            while let Some(Ok(entry)) = entries.next().await {
                seen.extend(Seen::from_entry(&entry));
            }
            Some(seen)
        };
        let stored = tokio::time::timeout(Duration::from_secs(10), history).await.ok().flatten().unwrap_or_default();
        for seen in stored {
            if !self.decisions.iter().any(|s| s.revision == seen.revision) {
                self.decisions.push(seen);
            }
        }
        self.decisions.sort_by_key(|s| s.revision);
    }

    fn decider(&self) -> Option<usize> {
        self.instances.iter().position(|i| i.row.alive && i.row.deciding)
    }

    fn all_alive_in(&self, state: &str) -> bool {
        self.instances.iter().filter(|i| i.row.alive).all(|i| i.row.state == state)
    }

    /// Plays the script: detection, recovery and failover times if every step happened.
    async fn script(&mut self, program: &PathBuf) -> Result<(Option<u64>, Option<u64>, Option<u64>), String> {
        let urls = self.cluster.urls();
        for n in 1..=self.args.instances {
            let mut args = vec!["--node".to_owned(), format!("i{n}"), "--dependency".into()];
            args.push(self.dependency.addr().to_string());
            for url in &urls {
                args.extend(["--server".to_owned(), url.clone()]);
            }
            let metrics = free_loopback_port().map_err(|e| format!("a port for i{n}'s metrics: {e}"))?;
            args.extend(["--metrics-listen".to_owned(), metrics.to_string()]);
            self.say(&format!("i{n}: metrics on http://{metrics}/metrics"));
            self.spawn_instance(&format!("i{n}"), program, &args)?;
        }
        if self.args.python {
            match python_instance() {
                Ok((python, script)) => {
                    let args = [
                        script.display().to_string(),
                        "--url".into(),
                        urls.join(","),
                        "--node".into(),
                        "py1".into(),
                        "--breaker".into(),
                        BREAKER.into(),
                        "--dependency".into(),
                        self.dependency.addr().to_string(),
                    ];
                    self.spawn_instance("py1", &python, &args)?;
                }
                Err(e) => self.say(&format!("no Python instance: {e}")),
            }
        }
        self.watch_decisions().await?;
        let count = self.instances.len();
        self.step("fleet starting: every instance connected, one deciding", Duration::from_secs(30), |d| {
            d.instances.iter().filter(|i| i.row.state == "Closed").count() == count && d.decider().is_some()
        })
        .await?;
        self.pause("dependency healthy, calls flowing", self.hold(5.0)).await?;

        let failed_at = now_ms();
        self.dependency.set_healthy(false);
        self.step("dependency FAILING: the fleet must trip", Duration::from_secs(15), |d| {
            d.last_decision_after(failed_at, StateLabel::Open).is_some() && d.all_alive_in("Open")
        })
        .await?;
        let detection = self.last_decision_after(failed_at, StateLabel::Open).map(|s| s.created_ms - failed_at);
        self.pause("dependency still failing: half-open probes fail, the fleet re-opens", self.hold(6.0)).await?;

        let recovered_at = now_ms();
        self.dependency.set_healthy(true);
        self.step("dependency recovered: probes succeed, the fleet closes", Duration::from_secs(15), |d| {
            d.last_decision_after(recovered_at, StateLabel::Closed).is_some() && d.all_alive_in("Closed")
        })
        .await?;
        let recovery = self.last_decision_after(recovered_at, StateLabel::Closed).map(|s| s.created_ms - recovered_at);
        self.pause("closed again", self.hold(3.0)).await?;

        let victim = self.decider().ok_or("nobody decides")?;
        let old_term = self.instances[victim].row.term;
        let victim_node = self.instances[victim].node.clone();
        self.say(&format!("killing the decider {victim_node} (SIGKILL: no step-down, its lease must expire)"));
        let killed_at = now_ms();
        let _ = self.instances[victim].child.start_kill();
        self.instances[victim].row.alive = false;
        self.step("another instance takes over the lease", Duration::from_secs(20), |d| {
            d.decisions.iter().any(|s| s.created_ms >= killed_at && s.decision.id.term.0 > old_term)
                && d.decider().is_some()
        })
        .await?;
        let failover = self
            .decisions
            .iter()
            .find(|s| s.created_ms >= killed_at && s.decision.id.term.0 > old_term)
            .map(|s| s.created_ms - killed_at);

        self.say("killing nats-server n1 of 3");
        self.server_killed_ms = Some(now_ms());
        self.cluster.kill(0);
        // Not shorter than a JetStream leader election, whatever the scale.
        let settle = self.hold(4.0).max(Duration::from_secs(3));
        self.pause("one server down, the fleet carries on", settle).await?;
        let failed_again = now_ms();
        self.dependency.set_healthy(false);
        self.step("dependency FAILING again, with a server down: the fleet trips", Duration::from_secs(30), |d| {
            d.last_decision_after(failed_again, StateLabel::Open).is_some() && d.all_alive_in("Open")
        })
        .await?;
        let recovered_again = now_ms();
        self.dependency.set_healthy(true);
        self.step("dependency recovered again: the fleet closes", Duration::from_secs(30), |d| {
            d.last_decision_after(recovered_again, StateLabel::Closed).is_some() && d.all_alive_in("Closed")
        })
        .await?;
        self.draw(true);
        Ok((detection, recovery, failover))
    }

    /// Decision -> instance delays (ms), for every decision stored while an instance was
    /// following, until it applied that decision or a newer one (a node that skips a
    /// decision enforced the older state until then): `(node, decision, delay)`.
    fn propagation(&self) -> Vec<(String, Phase, u64)> {
        let mut applied: BTreeMap<&str, Vec<(Phase, u64)>> = BTreeMap::new();
        for (node, term, seq, at) in &self.applied {
            applied.entry(node.as_str()).or_default().push(((*term, *seq), *at));
        }
        let mut delays = Vec::new();
        for seen in &self.decisions {
            let id = (seen.decision.id.term.0, seen.decision.id.seq);
            for (node, list) in &applied {
                // Only nodes already following (a node still starting enforces nothing yet).
                if list.first().is_none_or(|(_, first)| *first > seen.created_ms) {
                    continue;
                }
                // Applied ids increase, so the first one at or past `id` is when it caught up.
                if let Some((_, at)) = list.iter().find(|(applied, _)| *applied >= id) {
                    delays.push(((*node).to_owned(), id, at.saturating_sub(seen.created_ms)));
                }
            }
        }
        delays
    }

    fn figures(&self, detection: Option<u64>, recovery: Option<u64>, failover: Option<u64>) -> Vec<(String, String)> {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let quantiles = |v: &[u64]| {
            format!(
                "{} / {} / {} / {}",
                ms(view::quantile(v, 0.5)),
                ms(view::quantile(v, 0.99)),
                ms(v.iter().max().copied()),
                v.len()
            )
        };
        let arrivals = self.dependency.arrivals();
        let (per_round, unattributed) = probes_by_round(&self.decisions, &arrivals);
        let counts: Vec<u64> = per_round.iter().map(|(_, _, n)| *n).collect();
        let phases: Vec<String> = per_round.iter().map(|((t, s), _, _)| format!("{t}/{s}")).collect();
        let granted = per_round.iter().map(|(_, g, _)| *g).max().unwrap_or(0);
        let delays = self.propagation();
        let killed = self.server_killed_ms.unwrap_or(u64::MAX);
        let created: BTreeMap<Phase, u64> =
            self.decisions.iter().map(|s| ((s.decision.id.term.0, s.decision.id.seq), s.created_ms)).collect();
        let propagation: Vec<u64> = delays.iter().map(|(_, _, d)| *d).collect();
        let after_kill: Vec<u64> = delays
            .iter()
            .filter(|(_, id, _)| created.get(id).is_some_and(|c| *c >= killed))
            .map(|(_, _, d)| *d)
            .collect();
        let mut slowest: Vec<&(String, Phase, u64)> = delays.iter().collect();
        slowest.sort_by_key(|(_, _, d)| std::cmp::Reverse(*d));
        let slowest: Vec<String> =
            slowest.iter().take(3).map(|(node, (t, s), d)| format!("{node} {t}/{s} {d} ms")).collect();
        let (while_open, by_node) = calls_while_open(&self.decisions, &arrivals);
        let by_node: Vec<String> = by_node.iter().map(|(node, n)| format!("{node} {n}")).collect();
        let terms: BTreeSet<u64> = self.decisions.iter().map(|s| s.decision.id.term.0).collect();
        vec![
            ("detection (dependency fails -> open decision)".into(), ms(detection)),
            ("recovery (dependency healthy -> closed decision)".into(), ms(recovery)),
            ("propagation decision -> instance, p50 / p99 / max / n".into(), quantiles(&propagation)),
            ("  of decisions stored after the server kill".into(), quantiles(&after_kill)),
            ("  slowest (instance, decision, delay)".into(), slowest.join(", ")),
            (
                format!("probes reaching the dependency per half-open round (budget {PROBE_BUDGET})"),
                format!(
                    "{counts:?} (rounds {}; granted per round: max {granted}; naming no round: {unattributed})",
                    phases.join(" ")
                ),
            ),
            ("failover (decider killed -> new term's decision)".into(), ms(failover)),
            (
                "calls reaching the dependency while the fleet was open (stored open, not yet applied)".into(),
                format!(
                    "{while_open} (by instance: {})",
                    if by_node.is_empty() { "-".to_owned() } else { by_node.join(", ") }
                ),
            ),
            ("decisions / terms".into(), format!("{} / {}", self.decisions.len(), terms.len())),
        ]
    }

    /// Why the run broke the probe budget, if it did (the demo fails on it).
    fn probe_budget_broken(&self) -> Option<String> {
        let (per_round, unattributed) = probes_by_round(&self.decisions, &self.dependency.arrivals());
        budget_broken(&per_round, unattributed)
    }

    async fn stop_instances(&mut self) {
        for i in &mut self.instances {
            // Closing stdin asks for a graceful stop (step down, flush); a kill follows if not.
            drop(i.child.stdin.take());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        for i in &mut self.instances {
            if tokio::time::timeout_at(deadline, i.child.wait()).await.is_err() {
                let _ = i.child.kill().await;
            }
        }
    }
}

/// The half-open rounds of the run in the store's order: each phase once, with the
/// most probes any of its decisions granted in total.
fn rounds(decisions: &[Seen]) -> Vec<(Phase, u32)> {
    let mut rounds: Vec<(Phase, u32)> = Vec::new();
    for seen in decisions {
        if let FleetState::HalfOpen { grants, .. } = &seen.decision.state {
            let phase = (seen.decision.phase.term.0, seen.decision.phase.seq);
            let granted = grants.iter().map(|g| g.probes).sum();
            match rounds.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, most)) => *most = (*most).max(granted),
                None => rounds.push((phase, granted)),
            }
        }
    }
    rounds
}

/// Probes that reached the dependency, by the half-open phase they named, and the
/// number that named no round of this run.
fn probes_by_round(decisions: &[Seen], arrivals: &[Arrival]) -> (Vec<(Phase, u32, u64)>, u64) {
    let rounds = rounds(decisions);
    let mut counts: BTreeMap<Phase, u64> = BTreeMap::new();
    let mut unattributed = 0;
    for arrival in arrivals {
        match arrival.kind {
            CallKind::Probe(Some(phase)) if rounds.iter().any(|(p, _)| *p == phase) => {
                *counts.entry(phase).or_default() += 1;
            }
            CallKind::Probe(_) => unattributed += 1,
            CallKind::Call => {}
        }
    }
    let per_round = rounds.iter().map(|(p, granted)| (*p, *granted, counts.get(p).copied().unwrap_or(0))).collect();
    (per_round, unattributed)
}

/// Ordinary calls that arrived while the stored decision was open: what a node that had
/// not applied it yet (or a call already in flight) let through. Judged by the store's
/// timestamps, not by when the orchestrator's view caught up. In all, and by the node that
/// sent them (`?` for none named).
fn calls_while_open(decisions: &[Seen], arrivals: &[Arrival]) -> (u64, BTreeMap<String, u64>) {
    let timeline: Vec<(u64, bool)> = decisions
        .iter()
        .map(|s| (s.created_ms, matches!(s.decision.state, FleetState::Open { .. } | FleetState::ForcedOpen)))
        .collect();
    let open_at = |at: u64| {
        let after = timeline.partition_point(|(created, _)| *created <= at);
        after.checked_sub(1).and_then(|i| timeline.get(i)).is_some_and(|(_, open)| *open)
    };
    let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
    for arrival in arrivals.iter().filter(|a| a.kind == CallKind::Call && open_at(a.at_ms)) {
        *by_node.entry(arrival.node.clone().unwrap_or_else(|| "?".to_owned())).or_default() += 1;
    }
    (by_node.values().sum(), by_node)
}

/// Why `per_round` breaks the probe budget, if it does: a round whose probes exceed the
/// budget (or what its decisions granted), or probes that name no round, whose budget cannot
/// be checked. The flagship guarantee, so the demo fails on it.
fn budget_broken(per_round: &[(Phase, u32, u64)], unattributed: u64) -> Option<String> {
    let mut broken: Vec<String> = per_round
        .iter()
        .filter(|(_, granted, n)| *n > u64::from(PROBE_BUDGET) || *n > u64::from(*granted))
        .map(|((t, s), granted, n)| format!("round {t}/{s} let {n} probes through (granted {granted})"))
        .collect();
    if unattributed > 0 {
        broken.push(format!("{unattributed} probes named no half-open round of the run"));
    }
    (!broken.is_empty()).then(|| format!("probe budget of {PROBE_BUDGET} broken: {}", broken.join("; ")))
}

/// A loopback address nothing listens on now (the kernel's pick; the instance binds it a
/// moment later).
fn free_loopback_port() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// The service-instance binary next to this one.
fn instance_program() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let program = me.with_file_name(format!("service-instance{}", std::env::consts::EXE_SUFFIX));
    if program.exists() {
        Ok(program)
    } else {
        Err(format!("{} not found: build it with `cargo build -p fusebox-examples --bins`", program.display()))
    }
}

/// The Python interpreter (`FUSEBOX_PYTHON`, or the venv `scripts/install-tools.sh` makes)
/// and the Python instance's script.
fn python_instance() -> Result<(PathBuf, PathBuf), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python =
        std::env::var_os("FUSEBOX_PYTHON").map_or_else(|| root.join("../.tools/venv/bin/python"), PathBuf::from);
    let script = root.join("python/fusebox_instance.py");
    if !python.exists() {
        return Err(format!("{} not found (run scripts/install-tools.sh)", python.display()));
    }
    if !script.exists() {
        return Err(format!("{} not found", script.display()));
    }
    Ok((python, script))
}

/// The live fleet page (`fusebox dashboard`) for the cluster, in this process on a free
/// loopback port: its address, what stops it, and its task. It waits on its own for the
/// state bucket the first instance provisions.
async fn start_dashboard(
    urls: &[String],
) -> Result<(String, oneshot::Sender<()>, tokio::task::JoinHandle<()>), String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let dashboard =
        fusebox_cli::dashboard::for_servers(urls, listen).await.map_err(|e| format!("starting the dashboard: {e}"))?;
    let addr = dashboard.local_addr().map_err(|e| format!("starting the dashboard: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = dashboard
            .serve(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            eprintln!("dashboard: {e}");
        }
    });
    Ok((format!("http://{addr}"), stop, task))
}

/// Runs the demo to its summary.
pub async fn run(args: DemoArgs) -> Summary {
    let program = match instance_program() {
        Ok(p) => p,
        Err(e) => return Summary { rows: Vec::new(), failed: Some(e) },
    };
    println!("starting a 3-node nats-server cluster on loopback...");
    let cluster = match tokio::task::spawn_blocking(|| NatsCluster::start(3)).await {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(e)) => return Summary { rows: Vec::new(), failed: Some(format!("starting nats-server: {e}")) },
        Err(e) => return Summary { rows: Vec::new(), failed: Some(format!("starting nats-server: {e}")) },
    };
    let dependency = match Dependency::start().await {
        Ok(d) => d,
        Err(e) => return Summary { rows: Vec::new(), failed: Some(format!("starting the dependency: {e}")) },
    };
    let (dashboard, stop_dashboard, dashboard_task) = match start_dashboard(&cluster.urls()).await {
        Ok(started) => started,
        Err(e) => return Summary { rows: Vec::new(), failed: Some(e) },
    };
    println!("dashboard: {dashboard}");
    let (sender, updates) = mpsc::channel(4096);
    let mut demo = Demo {
        args,
        started: Instant::now(),
        started_ms: now_ms(),
        cluster,
        dependency,
        instances: Vec::new(),
        updates,
        sender,
        decisions: Vec::new(),
        applied: Vec::new(),
        server_killed_ms: None,
        step: "starting".into(),
        dashboard,
        last_draw: Instant::now(),
        interrupted: false,
    };
    let outcome = demo.script(&program).await;
    demo.stop_instances().await;
    demo.complete_decisions().await;
    let _ = stop_dashboard.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), dashboard_task).await;
    match outcome {
        Ok(detection_recovery_failover) => {
            let (detection, recovery, failover) = detection_recovery_failover;
            let rows = demo.figures(detection, recovery, failover);
            Summary { rows, failed: demo.probe_budget_broken() }
        }
        Err(e) => {
            let rows = demo.figures(None, None, None);
            Summary { rows, failed: Some(e) }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use breaker_actors::machine::{BreakerName, DecisionId, Grant, NodeId, Term, VectorClock};

    /// Decision `term/seq` of `phase_seq`'s phase, stored at `created_ms`.
    fn seen(revision: u64, (term, seq): Phase, phase_seq: u64, state: FleetState, created_ms: u64) -> Seen {
        let decision = Decision {
            version: 1,
            breaker: BreakerName::new(BREAKER).unwrap(),
            id: DecisionId::new(term, seq),
            phase: DecisionId::new(term, phase_seq),
            state,
            backoff_level: 0,
            reason: Reason::OpenElapsed,
            decider: NodeId::new("i1").unwrap(),
            clock: VectorClock::new(Term(term)),
            config_version: 1,
            expires_after_ms: None,
        };
        Seen { decision, revision, created_ms }
    }

    fn half_open(probes: &[u32]) -> FleetState {
        let grants = probes
            .iter()
            .enumerate()
            .map(|(i, p)| Grant { node: NodeId::new(&format!("i{}", i + 1)).unwrap(), probes: *p })
            .collect();
        FleetState::HalfOpen { budget: PROBE_BUDGET, grants }
    }

    fn probe(at_ms: u64, phase: Option<Phase>) -> Arrival {
        Arrival { at_ms, kind: CallKind::Probe(phase), node: Some("i1".into()) }
    }

    fn call(at_ms: u64, node: Option<&str>) -> Arrival {
        Arrival { at_ms, kind: CallKind::Call, node: node.map(str::to_owned) }
    }

    /// Two rounds, the second's grant widened by a re-grant in the same phase.
    fn run_decisions() -> Vec<Seen> {
        vec![
            seen(1, (5, 1), 1, FleetState::Closed, 100),
            seen(2, (5, 2), 2, FleetState::Open { duration_ms: 2_000 }, 200),
            seen(3, (5, 3), 3, half_open(&[1]), 2_200),
            seen(4, (5, 4), 4, FleetState::Open { duration_ms: 2_000 }, 2_300),
            seen(5, (5, 5), 5, half_open(&[1]), 4_300),
            seen(6, (5, 6), 5, half_open(&[1, 1]), 4_400),
            seen(7, (5, 7), 7, FleetState::Closed, 4_500),
        ]
    }

    #[test]
    fn probes_count_towards_the_round_they_name_whenever_they_arrive() {
        let decisions = run_decisions();
        // A late probe of 5/3 arrives during the next round and still counts in 5/3.
        let arrivals = [probe(2_250, Some((5, 3))), probe(4_350, Some((5, 5))), probe(4_420, Some((5, 3)))];
        let (per_round, unattributed) = probes_by_round(&decisions, &arrivals);
        assert_eq!(per_round, vec![((5, 3), 1, 2), ((5, 5), 2, 1)]);
        assert_eq!(unattributed, 0);
        // 2 probes in a round granted 1: broken, though within the budget of 2.
        let broken = budget_broken(&per_round, unattributed).unwrap();
        assert!(broken.contains("round 5/3 let 2 probes through (granted 1)"), "{broken}");
    }

    #[test]
    fn a_round_beyond_the_budget_or_a_probe_naming_no_round_fails_the_run() {
        let decisions = run_decisions();
        let within = [probe(2_250, Some((5, 3))), probe(4_350, Some((5, 5))), probe(4_420, Some((5, 5)))];
        let (per_round, unattributed) = probes_by_round(&decisions, &within);
        assert_eq!(budget_broken(&per_round, unattributed), None);

        let over = [probe(4_350, Some((5, 5))), probe(4_360, Some((5, 5))), probe(4_420, Some((5, 5)))];
        let (per_round, unattributed) = probes_by_round(&decisions, &over);
        let broken = budget_broken(&per_round, unattributed).unwrap();
        assert!(broken.contains("round 5/5 let 3 probes through"), "{broken}");

        for stray in [probe(4_350, None), probe(4_350, Some((5, 4))), probe(4_350, Some((9, 1)))] {
            let (per_round, unattributed) = probes_by_round(&decisions, std::slice::from_ref(&stray));
            assert_eq!(unattributed, 1, "{stray:?}");
            assert!(budget_broken(&per_round, unattributed).unwrap().contains("named no half-open round"));
        }
    }

    #[test]
    fn calls_while_open_are_judged_by_the_stored_decisions_timestamps() {
        let decisions = run_decisions();
        // Before any decision, closed, open (twice), half-open (a call there is no call while
        // open), open again, closed.
        let arrivals = [50, 150, 200, 2_199, 2_250, 2_350, 4_600].map(|at| call(at, Some("i2")));
        assert_eq!(calls_while_open(&decisions, &arrivals), (3, BTreeMap::from([("i2".to_owned(), 3)])));
        let unnamed = [call(200, None), call(2_350, Some("i3"))];
        let by_node = BTreeMap::from([("?".to_owned(), 1), ("i3".to_owned(), 1)]);
        assert_eq!(calls_while_open(&decisions, &unnamed), (2, by_node));
        // Probes are never calls while open, whenever they arrive.
        assert_eq!(calls_while_open(&decisions, &[probe(250, Some((5, 3)))]).0, 0);
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(DemoArgs::parse(args("")).unwrap(), DemoArgs::default());
        let parsed = DemoArgs::parse(args("--instances 3 --scale 0.5 --ci --no-python")).unwrap();
        assert_eq!(parsed, DemoArgs { instances: 3, scale: 0.5, ci: true, python: false });
        assert!(DemoArgs::parse(args("--instances 1")).is_err());
        assert!(DemoArgs::parse(args("--scale -1")).is_err());
        assert!(DemoArgs::parse(args("--what")).is_err());
    }
}
