//! The hot-path benchmark: Fusebox's permit+record path against the local-only circuit
//! breakers people use today, same scenarios, same process, so the ratios are comparable even
//! on a noisy machine.
//!
//! Scenarios (one criterion group each, one benchmark id per breaker):
//! - `closed_1t`: admit a call and record a success, closed state, one thread;
//! - `closed_2t`: the same from two threads on one shared breaker (time per op per thread);
//! - `open_1t`: turn a call away, open state, one thread.
//!
//! Each peer is driven through its cheapest public path (see `BENCHMARKS.md`). After the
//! groups, a table of median estimates from this run is printed; it is read back from
//! criterion's `estimates.json` files, accepting only files written by this process.
//!
//! Run: `cargo bench -p hot-path-bench --bench hot_path`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::cast_precision_loss, reason = "nanosecond figures far below 2^52 are printed, not summed")]

use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use breaker_actors::hot::{Breaker, CoarseClock, HotPath, HotSettings};
use breaker_actors::machine::{Admission, BreakerConfig, BreakerName, Millis, Snapshot};
use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use failsafe::failure_policy::{ConsecutiveFailures, SuccessRateOverTimeWindow};
use failsafe::{StateMachine, backoff};
use layered::{Execute, Stack as _};
use tower::Service as _;

/// Long enough that a tripped peer stays open for the whole run (no half-open probes).
const OPEN_FOR: Duration = Duration::from_secs(3600);

/// The breakers in table order; `ID`s are criterion benchmark ids.
const CONTENDERS: [(&str, &str); 6] = [
    ("fusebox", "Fusebox"),
    ("recloser", "recloser 1.4"),
    ("failsafe_consecutive", "failsafe 1.3 (consecutive)"),
    ("failsafe_success_rate", "failsafe 1.3 (success rate)"),
    ("tower_resilience", "tower-resilience 0.13 (tower)"),
    ("seatbelt", "seatbelt 0.11 (async)"),
];

const SCENARIOS: [(&str, &str); 3] = [
    ("closed_1t", "permit+record, closed, 1 thread"),
    ("closed_2t", "permit+record, closed, 2 threads (per op per thread)"),
    ("open_1t", "rejection, open, 1 thread"),
];

// ---------------------------------------------------------------------------------------
// Driving futures without a runtime: the peers that only offer async APIs are measured on
// their own cost, not a scheduler's.

/// Polls `future` to completion with a no-op waker, spinning while it is pending (only a
/// contended `tokio::sync::Mutex` inside tower-resilience ever is).
fn spin_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------------------
// The contenders. Each is built closed; `trip` drives it open the way its own policy would
// (Fusebox: the actor would install a rejecting snapshot).

fn fusebox() -> Breaker {
    let config = BreakerConfig::default().validate().expect("the default config is valid");
    let name = BreakerName::new("bench").unwrap();
    Breaker::new(Arc::new(HotPath::new(name, HotSettings::from_config(&config), CoarseClock::new())))
}

fn fusebox_trip(breaker: &Breaker) {
    breaker
        .hot_path()
        .install(&Snapshot { retry_at: Some(Millis(30_000)), ..Snapshot::standalone(2, Admission::Reject) });
    assert!(breaker.try_acquire().is_err(), "fusebox did not open");
}

fn fusebox_call(breaker: &Breaker) {
    match black_box(breaker).try_acquire() {
        Ok(permit) => {
            black_box(1_u64);
            permit.success();
        }
        Err(rejected) => {
            black_box(rejected);
        }
    }
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom().error_rate(0.5).closed_len(100).open_wait(OPEN_FOR).build()
}

fn recloser_trip(recloser: &recloser::Recloser) {
    for _ in 0..10_000 {
        if let Err(recloser::Error::Rejected) = recloser.call(|| Err::<u64, ()>(())) {
            return;
        }
    }
    panic!("recloser did not open");
}

fn recloser_call(recloser: &recloser::Recloser) {
    drop(black_box(black_box(recloser).call(|| Ok::<u64, ()>(black_box(1)))));
}

type FailsafeConsecutive = StateMachine<ConsecutiveFailures<backoff::Constant>, ()>;
type FailsafeRate = StateMachine<SuccessRateOverTimeWindow<backoff::Constant>, ()>;

fn failsafe_consecutive() -> FailsafeConsecutive {
    let policy = failsafe::failure_policy::consecutive_failures(5, backoff::constant(OPEN_FOR));
    failsafe::Config::new().failure_policy(policy).build()
}

fn failsafe_success_rate() -> FailsafeRate {
    let policy = failsafe::failure_policy::success_rate_over_time_window(
        0.5,
        100,
        Duration::from_secs(30),
        backoff::constant(OPEN_FOR),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

fn failsafe_trip<P: failsafe::FailurePolicy>(breaker: &StateMachine<P, ()>) {
    for _ in 0..10_000 {
        if !breaker.is_call_permitted() {
            return;
        }
        breaker.on_error();
    }
    panic!("failsafe did not open");
}

/// `failsafe`'s success-rate policy only trips once a whole window has passed since it was
/// created: build and trip it on failsafe's own frozen clock instead of sleeping 30 s. It
/// opens until `frozen + 31 s + OPEN_FOR`, which the real clock stays before.
fn failsafe_success_rate_tripped() -> FailsafeRate {
    failsafe::clock::freeze(|clock| {
        let breaker = failsafe_success_rate();
        for _ in 0..100 {
            breaker.on_success();
        }
        clock.advance(Duration::from_secs(31));
        failsafe_trip(&breaker);
        breaker
    })
}

fn failsafe_call<P: failsafe::FailurePolicy>(breaker: &StateMachine<P, ()>) {
    let breaker = black_box(breaker);
    if black_box(breaker.is_call_permitted()) {
        black_box(1_u64);
        breaker.on_success();
    }
}

/// The no-op inner service the tower-only peer wraps: fails when asked to.
#[derive(Clone, Copy)]
struct Inner;

impl tower::Service<bool> for Inner {
    type Response = u64;
    type Error = ();
    type Future = std::future::Ready<Result<u64, ()>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, fail: bool) -> Self::Future {
        std::future::ready(if fail { Err(()) } else { Ok(black_box(1)) })
    }
}

type TowerResilience =
    tower_resilience::circuitbreaker::CircuitBreaker<Inner, tower_resilience::circuitbreaker::DefaultClassifier>;

fn tower_resilience() -> TowerResilience {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(100)
        .wait_duration_in_open(OPEN_FOR)
        .build()
        .unwrap();
    tower::Layer::layer(&layer, Inner)
}

type TowerResilienceError = tower_resilience::circuitbreaker::CircuitBreakerError<()>;

fn tower_resilience_once(service: &mut TowerResilience, fail: bool) -> Result<u64, TowerResilienceError> {
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("tower-resilience not ready: {other:?}"),
    }
    spin_on(service.call(fail))
}

fn tower_resilience_trip(service: &mut TowerResilience) {
    for _ in 0..10_000 {
        if tower_resilience_once(service, true).is_err_and(|e| e.is_circuit_open()) {
            assert!(service.is_open());
            return;
        }
    }
    panic!("tower-resilience did not open");
}

fn tower_resilience_call(service: &mut TowerResilience) {
    let mut cx = Context::from_waker(Waker::noop());
    let ready = service.poll_ready(&mut cx);
    debug_assert!(matches!(ready, Poll::Ready(Ok(()))));
    drop(black_box(ready));
    drop(black_box(spin_on(service.call(false))));
}

type SeatbeltOut = Result<u64, &'static str>;

/// The seatbelt service: its breaker over a no-op inner operation.
struct Seatbelt<S> {
    service: S,
    /// Keeps the clock's driver alive (the breaker only reads time; no timers run).
    _driver: tick::runtime::ClockDriver,
}

fn seatbelt() -> Seatbelt<impl layered::Service<bool, Out = SeatbeltOut>> {
    // The breaker only reads the clock; `with_fast_instant` is tick's documented cheaper
    // clock read, so seatbelt is measured at its fastest.
    let (clock, driver) = tick::runtime::InactiveClock::default().activate(Waker::noop().clone());
    let clock = clock.with_fast_instant(true);
    let context = seatbelt::ResilienceContext::<bool, SeatbeltOut>::new(&clock);
    let stack =
        (
            seatbelt::breaker::Breaker::layer("bench", &context)
                .recovery_with(|out: &SeatbeltOut, _| {
                    if out.is_ok() { seatbelt::RecoveryInfo::never() } else { seatbelt::RecoveryInfo::retry() }
                })
                .rejected_input_error(|_, _| "rejected")
                .failure_threshold(0.5)
                .min_throughput(100)
                .sampling_duration(Duration::from_secs(30))
                .break_duration(OPEN_FOR),
            Execute::new(|fail: bool| std::future::ready(if fail { Err("failed") } else { Ok(black_box(1)) })),
        );
    Seatbelt { service: stack.into_service(), _driver: driver }
}

fn seatbelt_trip<S: layered::Service<bool, Out = SeatbeltOut>>(seatbelt: &Seatbelt<S>) {
    for _ in 0..10_000 {
        if spin_on(seatbelt.service.execute(true)) == Err("rejected") {
            return;
        }
    }
    panic!("seatbelt did not open");
}

fn seatbelt_call<S: layered::Service<bool, Out = SeatbeltOut>>(seatbelt: &Seatbelt<S>) {
    let _ = black_box(spin_on(black_box(seatbelt).service.execute(false)));
}

// ---------------------------------------------------------------------------------------
// Scenario drivers.

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // 18 benchmarks: about 4 s each keeps a full run near a minute and a half.
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(50);
}

/// How long a thread has been runnable but not running, in ns (Linux's schedstat): on a
/// 2-vCPU machine shared with other work, two "parallel" threads may in fact take turns, and
/// then a 2-thread figure measures time-slicing, not contention.
fn run_queue_wait_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().nth(1)?.parse().ok()
}

/// Run-queue wait summed over a benchmark's 2-thread samples, against their summed spans.
#[derive(Default)]
struct Waits {
    waited_ns: AtomicU64,
    spanned_ns: AtomicU64,
    unknown: AtomicBool,
}

impl Waits {
    fn share(&self) -> Option<f64> {
        let spanned = self.spanned_ns.load(Ordering::Relaxed);
        (!self.unknown.load(Ordering::Relaxed) && spanned > 0)
            .then(|| self.waited_ns.load(Ordering::Relaxed) as f64 / spanned as f64)
    }
}

/// `threads` threads each run `iters` ops on their own handle (made up front, so spawning is
/// not timed); the result is the wall time from the first thread's start to the last one's
/// end, i.e. time per op per thread once criterion divides by `iters`.
fn on_threads<H: Send>(
    threads: usize,
    iters: u64,
    waits: &Waits,
    make: impl Fn() -> H,
    op: impl Fn(&mut H) + Sync,
) -> Duration {
    let ready = AtomicUsize::new(0);
    let (ready, op) = (&ready, &op);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut handle = make();
                scope.spawn(move || {
                    // A spin barrier: a parking one would skew the start by a wake-up.
                    ready.fetch_add(1, Ordering::AcqRel);
                    while ready.load(Ordering::Acquire) < threads {
                        std::hint::spin_loop();
                    }
                    let waited = run_queue_wait_ns();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op(&mut handle);
                    }
                    let end = Instant::now();
                    match waited.zip(run_queue_wait_ns()) {
                        Some((before, after)) => {
                            waits.waited_ns.fetch_add(after.saturating_sub(before), Ordering::Relaxed);
                        }
                        None => waits.unknown.store(true, Ordering::Relaxed),
                    }
                    waits
                        .spanned_ns
                        .fetch_add(u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    (start, end)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    end - start
}

fn closed_1t(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_1t");
    configure(&mut group);
    let breaker = fusebox();
    group.bench_function("fusebox", |b| b.iter(|| fusebox_call(&breaker)));
    let recloser = recloser();
    group.bench_function("recloser", |b| b.iter(|| recloser_call(&recloser)));
    let consecutive = failsafe_consecutive();
    group.bench_function("failsafe_consecutive", |b| b.iter(|| failsafe_call(&consecutive)));
    let rate = failsafe_success_rate();
    group.bench_function("failsafe_success_rate", |b| b.iter(|| failsafe_call(&rate)));
    let mut tower = tower_resilience();
    group.bench_function("tower_resilience", |b| b.iter(|| tower_resilience_call(&mut tower)));
    let seatbelt = seatbelt();
    group.bench_function("seatbelt", |b| b.iter(|| seatbelt_call(&seatbelt)));
    group.finish();
}

/// Returns each contender's run-queue wait share (see [`run_queue_wait_ns`]).
fn closed_2t(c: &mut Criterion) -> Vec<Option<f64>> {
    let mut group = c.benchmark_group("closed_2t");
    configure(&mut group);
    let waits: [Waits; CONTENDERS.len()] = Default::default();
    let breaker = fusebox();
    group.bench_function("fusebox", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[0], || breaker.clone(), |b| fusebox_call(b)));
    });
    let recloser = recloser();
    group.bench_function("recloser", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[1], || &recloser, |r| recloser_call(r)));
    });
    let consecutive = failsafe_consecutive();
    group.bench_function("failsafe_consecutive", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[2], || consecutive.clone(), |f| failsafe_call(f)));
    });
    let rate = failsafe_success_rate();
    group.bench_function("failsafe_success_rate", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[3], || rate.clone(), |f| failsafe_call(f)));
    });
    // Tower services are `&mut`: each thread gets a clone sharing the one circuit.
    let tower = tower_resilience();
    group.bench_function("tower_resilience", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[4], || tower.clone(), tower_resilience_call));
    });
    let seatbelt = seatbelt();
    group.bench_function("seatbelt", |b| {
        b.iter_custom(|n| on_threads(2, n, &waits[5], || &seatbelt, |s| seatbelt_call(s)));
    });
    group.finish();
    waits.iter().map(Waits::share).collect()
}

fn open_1t(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_1t");
    configure(&mut group);
    let breaker = fusebox();
    fusebox_trip(&breaker);
    group.bench_function("fusebox", |b| b.iter(|| fusebox_call(&breaker)));
    let recloser = recloser();
    recloser_trip(&recloser);
    group.bench_function("recloser", |b| b.iter(|| recloser_call(&recloser)));
    let consecutive = failsafe_consecutive();
    failsafe_trip(&consecutive);
    group.bench_function("failsafe_consecutive", |b| b.iter(|| failsafe_call(&consecutive)));
    let rate = failsafe_success_rate_tripped();
    assert!(!rate.is_call_permitted(), "failsafe (success rate) did not stay open");
    group.bench_function("failsafe_success_rate", |b| b.iter(|| failsafe_call(&rate)));
    let mut tower = tower_resilience();
    tower_resilience_trip(&mut tower);
    group.bench_function("tower_resilience", |b| b.iter(|| tower_resilience_call(&mut tower)));
    let seatbelt = seatbelt();
    seatbelt_trip(&seatbelt);
    group.bench_function("seatbelt", |b| b.iter(|| seatbelt_call(&seatbelt)));
    group.finish();
}

// ---------------------------------------------------------------------------------------
// The summary table, from this run's criterion estimates.

/// CPU ticks: (busy on the whole machine, all, this process's own). Linux only.
fn cpu_ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let all: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    // utime and stime are fields 14 and 15; the command name before them may hold spaces.
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let own = after_name.get(11)?.parse::<u64>().ok()? + after_name.get(12)?.parse::<u64>().ok()?;
    Some((all - idle, all, own))
}

/// The share of the machine's CPU that other processes (and the hypervisor) took while the
/// benchmarks ran: what tells a quiet run from a disturbed one.
fn others_share(before: Option<(u64, u64, u64)>, after: Option<(u64, u64, u64)>) -> Option<f64> {
    let ((busy0, all0, own0), (busy1, all1, own1)) = (before?, after?);
    let all = all1.checked_sub(all0).filter(|&all| all > 0)?;
    let others = (busy1 - busy0).saturating_sub(own1 - own0);
    Some(others as f64 / all as f64)
}

/// Where criterion writes (its own order of preference: `CRITERION_HOME`,
/// `CARGO_TARGET_DIR`, the cargo target dir, which holds this executable).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(Path::new(&target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().map(|dir| dir.join("criterion")).find(|dir| dir.is_dir())
}

/// The median estimate (ns) of `group/id`, if this process wrote it: a stale file from an
/// earlier or filtered run must not pass for this run's figure.
fn median_ns(home: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = home.join(group).join(id).join("new").join("estimates.json");
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if written < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn table(since: SystemTime, waits: &[Option<f64>], others: Option<f64>) -> Option<String> {
    let home = criterion_home()?;
    let medians: Vec<Vec<Option<f64>>> = SCENARIOS
        .iter()
        .map(|(group, _)| CONTENDERS.iter().map(|(id, _)| median_ns(&home, group, id, since)).collect())
        .collect();
    if medians.iter().flatten().all(Option::is_none) {
        return None;
    }
    let mut out = String::new();
    let header: Vec<&str> = CONTENDERS.iter().map(|(_, name)| *name).collect();
    writeln!(out, "| scenario | {} |", header.join(" | ")).unwrap();
    writeln!(out, "|---|{}", "---:|".repeat(CONTENDERS.len())).unwrap();
    for ((_, scenario), row) in SCENARIOS.iter().zip(&medians) {
        let fusebox = row[0];
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, ns)| match (ns, fusebox) {
                (None, _) => "-".to_owned(),
                (Some(ns), _) if i == 0 => format!("{ns:.1} ns"),
                (Some(ns), Some(f)) => format!("{ns:.1} ns ({:.2}x)", f / ns),
                (Some(ns), None) => format!("{ns:.1} ns"),
            })
            .collect();
        writeln!(out, "| {scenario} | {} |", cells.join(" | ")).unwrap();
    }
    writeln!(out, "\nMedian estimates; `(r x)` is Fusebox's time divided by that peer's (below 1 is faster).").unwrap();
    let percent = |share: Option<f64>| share.map_or_else(|| "n/a".to_owned(), |s| format!("{:.1}%", s * 100.0));
    writeln!(out, "\nNoise:").unwrap();
    writeln!(out, "- other processes and the hypervisor took {} of the machine's CPU during the run", percent(others))
        .unwrap();
    let waited: Vec<String> =
        CONTENDERS.iter().zip(waits).map(|((_, name), share)| format!("{name} {}", percent(*share))).collect();
    writeln!(
        out,
        "- 2-thread rows, share of each worker's time spent waiting for a CPU (near 0 means the two \
         threads really ran in parallel): {}",
        waited.join(", ")
    )
    .unwrap();
    let goal = |label: &str, value: Option<f64>, limit: f64, unit: &str| match value {
        Some(v) => {
            format!("- {label}: {v:.2}{unit} (goal <= {limit}{unit}): {}", if v <= limit { "met" } else { "NOT met" })
        }
        None => format!("- {label}: not measured in this run"),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    writeln!(out, "\nGoals:").unwrap();
    writeln!(out, "{}", goal("permit+record, 1 thread", medians[0][0], 10.0, " ns")).unwrap();
    writeln!(out, "{}", goal("Fusebox / recloser, 1 thread", ratio(medians[0][0], medians[0][1]), 0.8, "x")).unwrap();
    writeln!(out, "{}", goal("permit+record, 2 threads, per op per thread", medians[1][0], 12.0, " ns")).unwrap();
    writeln!(out, "{}", goal("rejection, open, 1 thread", medians[2][0], 10.0, " ns")).unwrap();
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Trip lag: calls let through after the call that crossed a consecutive-failure threshold,
// counted (not timed), before anything else runs (Fusebox: no drain, no actor).

/// Failures in a row that trip every breaker in the lag table.
const LAG_STREAK: u32 = 5;

/// Calls admitted after the `LAG_STREAK`th failure in a row, out of 100 more attempts, each
/// failing: `attempt` admits-and-fails a call (true) or is rejected (false).
fn let_through_after_crossing(mut attempt: impl FnMut() -> bool) -> usize {
    for _ in 0..LAG_STREAK {
        assert!(attempt(), "a closed breaker rejected a call before the threshold");
    }
    (0..100).take_while(|_| attempt()).count()
}

fn trip_lag() -> String {
    use breaker_actors::machine::{LocalOverlayPolicy, TripPolicy};
    let config = BreakerConfig {
        local: Some(LocalOverlayPolicy {
            trip: TripPolicy { consecutive_failures: Some(LAG_STREAK), ..LocalOverlayPolicy::default().trip },
            ..LocalOverlayPolicy::default()
        }),
        ..BreakerConfig::default()
    }
    .validate()
    .expect("a valid config");
    let hot = HotPath::new(BreakerName::new("lag").unwrap(), HotSettings::from_config(&config), CoarseClock::new());
    // What the machine installs while its overlay, closed, has the rule.
    hot.install(&Snapshot { trip_on_streak: true, ..Snapshot::standalone(2, Admission::Allow) });
    let fusebox = let_through_after_crossing(|| hot.try_acquire().map(breaker_actors::hot::PermitOn::failure).is_ok());
    let failsafe = failsafe_consecutive();
    let failsafe = let_through_after_crossing(|| {
        let admitted = failsafe.is_call_permitted();
        if admitted {
            failsafe.on_error();
        }
        admitted
    });
    let recloser =
        recloser::Recloser::custom().error_rate(0.99).closed_len(LAG_STREAK as usize).open_wait(OPEN_FOR).build();
    let recloser =
        let_through_after_crossing(|| !matches!(recloser.call(|| Err::<u64, ()>(())), Err(recloser::Error::Rejected)));
    let mut out = String::new();
    writeln!(out, "| breaker | calls let through after the crossing call (trip on {LAG_STREAK} failures in a row) |")
        .unwrap();
    writeln!(out, "|---|---:|").unwrap();
    writeln!(out, "| Fusebox, node-local overlay (`local.trip.consecutive_failures`), no drain | {fusebox} |").unwrap();
    writeln!(out, "| failsafe 1.3 (consecutive) | {failsafe} |").unwrap();
    writeln!(out, "| recloser 1.4 (`closed_len({LAG_STREAK})`, `error_rate(0.99)`) | {recloser} |").unwrap();
    out
}

fn main() {
    let since = SystemTime::now();
    let ticks = cpu_ticks();
    let mut c = Criterion::default().configure_from_args();
    closed_1t(&mut c);
    let waits = closed_2t(&mut c);
    open_1t(&mut c);
    c.final_summary();
    let others = others_share(ticks, cpu_ticks());
    match table(since, &waits, others) {
        Some(table) => println!("\n## hot_path summary (this run)\n\n{table}"),
        None => println!("\nhot_path: no estimates written by this run (test mode or filtered out): no table"),
    }
    println!("\n## trip lag (counted, this run)\n\n{}", trip_lag());
}
