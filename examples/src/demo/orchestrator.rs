//! The demo's conductor (the `cluster-demo` binary behind `make demo`): starts the nats-server
//! cluster, the dependency and the instances, plays the script (fail, recover, kill the
//! decider, kill a server, fail and recover again), shows the fleet, measures, and cleans up
//! whatever happens (children die with it: they are killed on drop and stop when their stdin
//! closes; servers are killed by PID).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use breaker_actors::machine::{Decision, FleetState, Reason, StateLabel};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use transport_nats::servers::NatsCluster;

use super::dependency::{Dependency, FleetView};
use super::view::{self, Row};
use super::{BREAKER, InstanceLine, now_ms};

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
    created_ms: u64,
}

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
    cluster: NatsCluster,
    dependency: Dependency,
    instances: Vec<Instance>,
    updates: mpsc::Receiver<Update>,
    sender: mpsc::Sender<Update>,
    decisions: Vec<Seen>,
    applied: Vec<(String, u64, u64, u64)>,
    half_open_rounds: BTreeMap<(u64, u64), u64>,
    step: String,
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
            "{} | step: {} | dependency: {} | servers up: {}",
            self.elapsed(),
            self.step,
            if self.dependency.is_healthy() { "healthy" } else { "FAILING" },
            self.cluster.nodes().iter().filter(|n| n.pid().is_some()).count()
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
                let view = match &seen.decision.state {
                    FleetState::Open { .. } | FleetState::ForcedOpen => FleetView::Open,
                    FleetState::HalfOpen { .. } => {
                        let phase = (seen.decision.phase.term.0, seen.decision.phase.seq);
                        let next = u64::try_from(self.half_open_rounds.len()).unwrap_or(u64::MAX);
                        FleetView::HalfOpen(*self.half_open_rounds.entry(phase).or_insert(next))
                    }
                    _ => FleetView::Flowing,
                };
                self.dependency.set_view(view);
                if self.args.ci {
                    println!("{} decision {}", self.elapsed(), describe(&seen));
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
            // heartbeats (tens of seconds): a direct read twice a second spots a stall, and
            // the watch starts again after the last revision seen, so nothing is missed.
            let mut last = 0;
            loop {
                let watch = if last == 0 {
                    kv.watch_with_history(BREAKER).await
                } else {
                    kv.watch_from_revision(BREAKER, last + 1).await
                };
                let Ok(mut watch) = watch else {
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
                            let Ok(decision) = serde_json::from_slice::<Decision>(&entry.value) else { continue };
                            let created_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                            if sender.send(Update::Decision(Seen { decision, created_ms })).await.is_err() {
                                return;
                            }
                        }
                        _ = check.tick() => {
                            if matches!(kv.entry(BREAKER).await, Ok(Some(e)) if e.revision > last) {
                                break;
                            }
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn decider(&self) -> Option<usize> {
        self.instances.iter().position(|i| i.row.alive && i.row.deciding)
    }

    fn all_alive_in(&self, state: &str) -> bool {
        self.instances.iter().filter(|i| i.row.alive).all(|i| i.row.state == state)
    }

    async fn script(&mut self, program: &PathBuf) -> Result<Vec<(String, String)>, String> {
        let urls = self.cluster.urls();
        for n in 1..=self.args.instances {
            let mut args = vec!["--node".to_owned(), format!("i{n}"), "--dependency".into()];
            args.push(self.dependency.addr().to_string());
            for url in &urls {
                args.extend(["--server".to_owned(), url.clone()]);
            }
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
        Ok(self.figures(detection, recovery, failover))
    }

    fn figures(&self, detection: Option<u64>, recovery: Option<u64>, failover: Option<u64>) -> Vec<(String, String)> {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let created: BTreeMap<(u64, u64), u64> =
            self.decisions.iter().map(|s| ((s.decision.id.term.0, s.decision.id.seq), s.created_ms)).collect();
        let propagation: Vec<u64> = self
            .applied
            .iter()
            .filter_map(|(_, term, seq, at)| created.get(&(*term, *seq)).map(|c| at.saturating_sub(*c)))
            .collect();
        let counts = self.dependency.counts();
        let probes = self.dependency.probes();
        let per_round: Vec<u64> = (0..u64::try_from(self.half_open_rounds.len()).unwrap_or(0))
            .map(|r| probes.get(&Some(r)).copied().unwrap_or(0))
            .collect();
        let granted: BTreeSet<u32> = self
            .decisions
            .iter()
            .filter_map(|s| match &s.decision.state {
                FleetState::HalfOpen { grants, .. } => Some(grants.iter().map(|g| g.probes).sum()),
                _ => None,
            })
            .collect();
        let terms: BTreeSet<u64> = self.decisions.iter().map(|s| s.decision.id.term.0).collect();
        vec![
            ("detection (dependency fails -> open decision)".into(), ms(detection)),
            ("recovery (dependency healthy -> closed decision)".into(), ms(recovery)),
            (
                "propagation decision -> instance, p50 / p99 / n".into(),
                format!(
                    "{} / {} / {}",
                    ms(view::quantile(&propagation, 0.5)),
                    ms(view::quantile(&propagation, 0.99)),
                    propagation.len()
                ),
            ),
            (
                "probes reaching the dependency per half-open round (budget 2)".into(),
                format!("{per_round:?} (granted per round: max {})", granted.iter().max().copied().unwrap_or(0)),
            ),
            ("failover (decider killed -> new term's decision)".into(), ms(failover)),
            (
                "calls reaching the dependency while the fleet was open (before instances applied it)".into(),
                counts.get(&FleetView::Open).copied().unwrap_or(0).to_string(),
            ),
            ("decisions / terms".into(), format!("{} / {}", self.decisions.len(), terms.len())),
        ]
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
    let (sender, updates) = mpsc::channel(4096);
    let mut demo = Demo {
        args,
        started: Instant::now(),
        cluster,
        dependency,
        instances: Vec::new(),
        updates,
        sender,
        decisions: Vec::new(),
        applied: Vec::new(),
        half_open_rounds: BTreeMap::new(),
        step: "starting".into(),
        last_draw: Instant::now(),
        interrupted: false,
    };
    let outcome = demo.script(&program).await;
    demo.stop_instances().await;
    match outcome {
        Ok(rows) => Summary { rows, failed: None },
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
