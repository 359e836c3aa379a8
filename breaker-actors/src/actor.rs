//! The `BreakerActor`: one per breaker per node. It owns the breaker's [`Machine`] and
//! shares its [`HotPath`] with the service; when the registry's flusher pokes it (once per
//! flush interval at most, only while the hot path has undrained outcomes) it drains the hot
//! path into the machine and ticks it; a timer at the machine's earliest deadline
//! ([`Effect::WakeAt`]) ticks it otherwise, so an idle breaker costs no timer wakeup; it
//! feeds the machine what the transport left in the breaker's
//! [`Inbox`]; while its machine decides, it consumes the breaker's reports and operator
//! commands into that inbox; and it carries out every [`Effect`] without awaiting I/O in its handler
//! (operations run in spawned tasks whose results come back through the inbox).
//!
//! Its mailbox stays bounded whatever the traffic: at most one flush is outstanding (the
//! flusher sends the next only after the actor took the last), at most one wake-up timer,
//! at most one inbox doorbell
//! (see `transport`), and control messages from the registry.
//!
//! A restarted actor (after a panic) starts a fresh machine on the same hot path and the
//! same inbox. Its snapshot generations and probe rounds are offset past the ones the hot
//! path has seen, so that calls admitted under the old machine's snapshots can never be
//! attributed to the new machine's generations (they are fed as stale), and a new probe
//! round always resets the hot path's probe count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::hot::HotPath;
use crate::machine::{
    Admission, BreakerName, DeciderView, DecisionId, Effect, Event, Input, LocalOutcomes, Machine, Millis, NodeParams,
    OutcomeCounts, Snapshot, StateLabel, Term, ValidConfig,
};
use crate::node::{LeaseCmd, NodeContext};
use crate::observe::{BreakerMetrics, CallStats};
use crate::transport::{ConnState, Inbox, LeaseShard, Revision, Subscription, WriteOutcome};

/// Deliveries fed to the machine per doorbell; the rest wait for the next ring, so that
/// flushes interleave with a long replay.
const INBOX_BATCH: usize = 64;
/// Report publications in flight per breaker; beyond it a report is dropped and counted
/// (the decider tolerates lost reports; an unbounded backlog would not be tolerable).
const MAX_PUBLISHES_IN_FLIGHT: usize = 32;
/// Attempts of a resync read after the connection returns.
const RESYNC_ATTEMPTS: u32 = 5;

/// What a breaker actor is told.
pub(crate) enum BreakerMsg {
    /// Drain the hot path and tick the machine: sent by the registry's flusher, once per
    /// flush interval at most, and only while the hot path has undrained outcomes.
    Flush,
    /// A wake-up the machine asked for.
    Wake,
    /// The inbox has something.
    Inbox,
    /// Step down gracefully (the registry is shutting down).
    Shutdown(RpcReplyPort<()>),
    /// A copy of the machine (tests, debugging).
    #[cfg(feature = "test-hooks")]
    Inspect(RpcReplyPort<Box<Machine>>),
    /// What the machine's decider holds now (`None`: not deciding), for `fusebox describe`.
    Describe(RpcReplyPort<Option<DeciderView>>),
    /// Test hook: panic (supervision tests).
    #[cfg(feature = "test-hooks")]
    Panic,
}

pub(crate) struct ActorArgs {
    pub(crate) ctx: Arc<NodeContext>,
    pub(crate) name: BreakerName,
    /// Shared with the registry's entry (a config is kept once per breaker, plus the
    /// machine's own copy).
    pub(crate) config: Arc<ValidConfig>,
    pub(crate) hot: Arc<HotPath>,
    pub(crate) inbox: Inbox,
    pub(crate) shard: LeaseShard,
    pub(crate) incarnation: u64,
    pub(crate) bootstrapped: Arc<watch::Sender<bool>>,
    /// The newest decision announced on this node, across restarts: each is announced once.
    pub(crate) announced: Arc<Mutex<DecisionId>>,
    pub(crate) restarted: bool,
    /// Flush and wake-up messages handled, across restarts (a test hook's count).
    pub(crate) timer_messages: Arc<AtomicU64>,
    /// Set by the registry's flusher when it sends [`BreakerMsg::Flush`], cleared when the
    /// actor takes it: at most one flush is in the mailbox.
    pub(crate) flush_pending: Arc<AtomicBool>,
    /// The breaker's series, registered when it was created (shared across restarts).
    pub(crate) metrics: Arc<BreakerMetrics>,
}

/// What a decider consumes: started when its machine gains a term, dropped (stopped) when
/// it steps down from that term or the breaker shuts down.
struct Consumers {
    term: Term,
    _reports: Subscription,
    _commands: Subscription,
}

type WakeTimer = JoinHandle<Result<(), ractor::MessagingErr<BreakerMsg>>>;

pub(crate) struct BreakerActor;

pub(crate) struct ActorState {
    args: ActorArgs,
    machine: Machine,
    /// The newest decision-bucket revision fed to the machine: the next CAS expects it.
    last_read: Revision,
    /// The decider's consumers (reports, commands) of the term they were started for.
    consumer: Option<Consumers>,
    _watch: Subscription,
    conn: watch::Receiver<ConnState>,
    conn_seen: ConnState,
    lost_fed: bool,
    offset: u64,
    wake: Option<(Millis, WakeTimer)>,
    bootstrapped: bool,
    publishes: Arc<Semaphore>,
    calls: CallStats,
    /// The state the `fusebox_state` series show (`None`: not set by this actor yet).
    shown_state: Option<StateLabel>,
    /// The machine's count of reports merged into its window, as last counted.
    merged: u64,
}

impl Actor for BreakerActor {
    type Msg = BreakerMsg;
    type State = ActorState;
    type Arguments = ActorArgs;

    async fn pre_start(&self, myself: ActorRef<BreakerMsg>, args: ActorArgs) -> Result<ActorState, ActorProcessingErr> {
        let shared = args.ctx.clone();
        let params = NodeParams {
            breaker: args.name.clone(),
            node: shared.node.clone(),
            incarnation: args.incarnation,
            lease_margin_ms: u64::try_from(shared.settings.lease_margin.as_millis()).unwrap_or(u64::MAX),
        };
        let machine = Machine::with_valid(params, ValidConfig::clone(&args.config));
        let offset = if args.restarted { args.hot.snapshot().generation } else { 0 };
        let watch = shared.transport.watch_decision(&args.name, args.inbox.clone());
        // Connection changes ring the inbox from the registry's one watcher (no task here).
        let conn = shared.transport.connection();
        let conn_seen = ConnState { connected: true, losses: conn.borrow().losses };
        let me = myself.clone();
        args.inbox.set_bell(Arc::new(move || {
            // A dead actor's bell goes unanswered until its successor sets a new one.
            let _ = me.cast(BreakerMsg::Inbox);
        }));
        // No flush tick of its own: the registry's flusher pokes it when calls were recorded.
        Ok(ActorState {
            calls: CallStats::new(args.name.clone()),
            args,
            machine,
            last_read: 0,
            consumer: None,
            _watch: watch,
            conn,
            conn_seen,
            lost_fed: false,
            offset,
            wake: None,
            bootstrapped: false,
            publishes: Arc::new(Semaphore::new(MAX_PUBLISHES_IN_FLIGHT)),
            shown_state: None,
            merged: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<BreakerMsg>,
        message: BreakerMsg,
        state: &mut ActorState,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(message, BreakerMsg::Flush | BreakerMsg::Wake) {
            state.args.timer_messages.fetch_add(1, Ordering::Relaxed);
        }
        match message {
            BreakerMsg::Flush => {
                // Before the drain: a call recorded after it is poked again next interval.
                state.args.flush_pending.store(false, Ordering::Release);
                state.flush(&myself);
            }
            BreakerMsg::Wake => {
                state.wake = None;
                state.feed(&myself, Input::Tick);
                state.rearm_wake(&myself);
                state.calls.maybe_summarise(state.args.hot.snapshot().state);
            }
            BreakerMsg::Inbox => state.read_inbox(&myself),
            BreakerMsg::Shutdown(reply) => {
                // The last calls are reported before the breaker goes quiet.
                state.flush(&myself);
                state.feed(&myself, Input::Shutdown);
                state.consumer = None;
                let _ = reply.send(());
            }
            #[cfg(feature = "test-hooks")]
            BreakerMsg::Inspect(reply) => {
                // Brought up to now first: a process resumed after a long stop must not
                // answer from its machine's last step (a lease it still thinks good).
                state.feed(&myself, Input::Tick);
                let _ = reply.send(Box::new(state.machine.clone()));
            }
            BreakerMsg::Describe(reply) => {
                // As for `Inspect`: a lease run out while idle is not deciding.
                state.feed(&myself, Input::Tick);
                let now = state.args.ctx.now();
                let _ = reply.send(state.machine.decider_view(now));
            }
            #[cfg(feature = "test-hooks")]
            BreakerMsg::Panic => panic!("breaker {}: panic injected by a test hook", state.args.name),
        }
        // Once per message, not per input: what the machine's state shows after its steps.
        state.merged = state.args.metrics.machine_stepped(&state.machine, state.merged);
        Ok(())
    }
}

impl ActorState {
    fn flush(&mut self, myself: &ActorRef<BreakerMsg>) {
        let now = self.args.ctx.now();
        self.args.ctx.clock.advance_to(now.0);
        // Looked at before the drain: a trip seen here was made after its run was counted,
        // so this drain brings the machine the run (a trip made after it waits for the next).
        let tripped_itself = self.args.hot.tripped_itself();
        let drained = self.args.hot.drain();
        self.args.metrics.record_rejections(&drained.rejections);
        for outcomes in drained.outcomes {
            self.calls.record(&self.args.metrics, &outcomes.counts);
            // Generations at or below the offset are the previous machine's: stale here.
            let generation = outcomes.generation.saturating_sub(self.offset);
            self.feed(myself, Input::LocalOutcomes(LocalOutcomes { generation, ..outcomes }));
        }
        if drained.stale_calls > 0 {
            let counts = OutcomeCounts { ignored: drained.stale_calls, ..OutcomeCounts::default() };
            // Generation 0 is never a machine's: the machine counts these as stale.
            self.feed(myself, Input::LocalOutcomes(LocalOutcomes { generation: 0, counts, longest_failure_streak: 0 }));
        }
        self.feed(myself, Input::Tick);
        if tripped_itself && self.args.hot.tripped_itself() {
            // Fed the run, the machine did not trip its overlay (it had moved on since the
            // armed snapshot): its own snapshot stands.
            self.args.metrics.streak_trip_undone();
            self.install(self.machine.snapshot());
        }
        self.calls.maybe_summarise(self.args.hot.snapshot().state);
    }

    fn read_inbox(&mut self, myself: &ActorRef<BreakerMsg>) {
        let inbox = self.args.inbox.clone();
        inbox.disarm();
        self.sync_connection(myself);
        if let Some(read) = inbox.take_decision() {
            self.last_read = self.last_read.max(read.revision);
            let input = match read.decision {
                Some(d) => Input::DecisionObserved(d),
                None => Input::NoDecisionYet,
            };
            self.feed(myself, input);
        }
        // Lease news wait until the machine knows the fleet state: a decider that takes
        // over before bootstrapping would restate nothing and lose a CAS for it.
        if let Some(news) = inbox.take_lease(self.machine.is_bootstrapped()) {
            self.feed(myself, news);
        }
        let (batch, more) = inbox.pop_batch(INBOX_BATCH);
        for delivery in batch {
            if let Some(revision) = delivery.revision {
                // A rejection carries the key's revision now, lower than one fed before only
                // if the bucket went back (lost writes, an older backup): follow it, or every
                // later write would expect a revision the bucket never reaches again.
                self.last_read = if matches!(delivery.input, Input::DecisionRejected { .. }) {
                    revision
                } else {
                    self.last_read.max(revision)
                };
            }
            self.feed(myself, delivery.input);
        }
        if more || (self.machine.is_bootstrapped() && inbox.has_lease_news()) {
            inbox.ring();
        }
    }

    /// Feeds connection changes; a loss and a return that happened between two looks are
    /// fed as both, so the machine resyncs.
    fn sync_connection(&mut self, myself: &ActorRef<BreakerMsg>) {
        let now = *self.conn.borrow_and_update();
        if now == self.conn_seen {
            return;
        }
        if !self.lost_fed && (now.losses > self.conn_seen.losses || !now.connected) {
            self.lost_fed = true;
            self.feed(myself, Input::ConnectionLost);
        }
        if now.connected && self.lost_fed {
            self.lost_fed = false;
            self.feed(myself, Input::ConnectionRestored);
        }
        self.conn_seen = now;
    }

    fn feed(&mut self, myself: &ActorRef<BreakerMsg>, input: Input) {
        let now = self.args.ctx.now();
        let effects = self.machine.step(now, input);
        for effect in effects {
            self.carry_out(myself, effect);
        }
        self.args.inbox.set_deciding(self.machine.is_deciding());
        if !self.bootstrapped && self.machine.is_bootstrapped() {
            self.bootstrapped = true;
            // A restarted machine's first snapshot may equal its initial one and never be
            // emitted: install it, so the hot path stops answering from the old machine.
            self.install(self.machine.snapshot());
            self.args.bootstrapped.send_replace(true);
        }
    }

    fn install(&mut self, snapshot: Snapshot) {
        let mut s = snapshot;
        s.generation += self.offset;
        if let Admission::Probe { round, .. } = &mut s.admission {
            *round += self.offset;
        }
        self.args.hot.install(&s);
        self.args.metrics.show_state(self.shown_state, s.state);
        self.shown_state = Some(s.state);
    }

    fn carry_out(&mut self, myself: &ActorRef<BreakerMsg>, effect: Effect) {
        let shared = self.args.ctx.clone();
        match effect {
            Effect::Snapshot(snapshot) => self.install(snapshot),
            Effect::PublishReport(report) => match self.publishes.clone().try_acquire_owned() {
                Ok(permit) => {
                    let publish = shared.transport.publish_report(report);
                    let (name, metrics) = (self.args.name.clone(), self.args.metrics.clone());
                    tokio::spawn(async move {
                        match publish.await {
                            Ok(()) => metrics.report_published(),
                            Err(e) => {
                                tracing::debug!(breaker = name.as_str(), error = %e, "report not published");
                                metrics.report_lost();
                            }
                        }
                        drop(permit);
                    });
                }
                Err(_) => self.args.metrics.report_lost(),
            },
            Effect::WriteDecision(decision) => {
                let id = decision.id;
                let write = shared.transport.write_decision(decision, self.last_read);
                let inbox = self.args.inbox.clone();
                tokio::spawn(async move {
                    let (input, revision) = match write.await {
                        WriteOutcome::Written { revision } => (Input::DecisionWritten { id }, Some(revision)),
                        WriteOutcome::Rejected { current, revision } => {
                            (Input::DecisionRejected { id, current }, Some(revision))
                        }
                        WriteOutcome::Failed(_) => (Input::DecisionWriteFailed { id }, None),
                    };
                    let _ = inbox.push(input, revision).await;
                });
            }
            Effect::StepDown { term, reason } => {
                if self.consumer.as_ref().is_some_and(|c| c.term == term) {
                    self.consumer = None;
                }
                let _ = shared.leases.send(LeaseCmd::SteppedDown { shard: self.args.shard, term, reason });
            }
            Effect::Resync => {
                let (transport, name, inbox) =
                    (shared.transport.clone(), self.args.name.clone(), self.args.inbox.clone());
                tokio::spawn(async move {
                    for attempt in 0..RESYNC_ATTEMPTS {
                        match transport.read_decision(&name).await {
                            Ok(read) => return inbox.offer_decision(read),
                            Err(_) => tokio::time::sleep(Duration::from_millis(50) * 2u32.pow(attempt)).await,
                        }
                    }
                    // The decision watch offers the current value on reconnection anyway.
                    tracing::warn!(breaker = name.as_str(), "resync read failed");
                });
            }
            Effect::RunHealthCheck { attempt } => {
                let (check, name, inbox) = (shared.health.clone(), self.args.name.clone(), self.args.inbox.clone());
                let timeout = shared.settings.health_timeout;
                tokio::spawn(async move {
                    let healthy = match check {
                        Some(check) => tokio::time::timeout(timeout, check(name)).await.unwrap_or(false),
                        None => false,
                    };
                    let _ = inbox.push(Input::HealthCheckResult { attempt, healthy }, None).await;
                });
            }
            Effect::WakeAt(at) => self.schedule_wake(myself, at),
            Effect::ReloadConfig { .. } => {
                shared.reload_config(self.args.name.clone());
            }
            Effect::Event(event) => self.event(event),
        }
    }

    /// A wake-up that fired before its deadline by the clock's rounding leaves the machine's
    /// deadline unchanged, so the machine announces no new one: ask for it again. (No flush
    /// tick would come to the rescue: every deadline reaches the actor through a wake.)
    fn rearm_wake(&mut self, myself: &ActorRef<BreakerMsg>) {
        if let Some(at) = self.machine.next_wake() {
            if self.wake.is_none() && at > self.args.ctx.now() {
                self.schedule_wake(myself, at);
            }
        }
    }

    /// One timer, at the machine's earliest deadline (which it announces whenever it
    /// changes, later ones too: a renewed lease moves its deadline on, and a timer left at
    /// the old one would wake an idle decider for nothing), however far: nothing else
    /// ticks the machine of an idle breaker.
    fn schedule_wake(&mut self, myself: &ActorRef<BreakerMsg>, at: Millis) {
        let delay = Duration::from_millis(at.since(self.args.ctx.now()));
        if let Some((when, timer)) = &self.wake {
            if *when == at {
                return;
            }
            timer.abort();
        }
        self.wake = Some((at, myself.send_after(delay, || BreakerMsg::Wake)));
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::LeaseGained { term } => {
                let transport = &self.args.ctx.transport;
                // The old term's consumers stop before the new ones start.
                self.consumer = None;
                self.consumer = Some(Consumers {
                    term: *term,
                    _reports: transport.consume_reports(&self.args.name, self.args.inbox.clone()),
                    _commands: transport.consume_commands(&self.args.name, self.args.inbox.clone()),
                });
            }
            Event::Applied { id, .. } => {
                let mut announced = self.args.announced.lock().unwrap_or_else(PoisonError::into_inner);
                if *id <= *announced {
                    // A restarted machine re-applies what its predecessor announced.
                    return;
                }
                *announced = *id;
            }
            Event::Reconfigured { .. } => self.args.metrics.configured(self.machine.config()),
            _ => {}
        }
        self.args.ctx.observer.emit(&self.args.name, &self.args.metrics, event);
    }
}
