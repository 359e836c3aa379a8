//! The `fleet-bench` command (`make fleet-bench`): the grid of points (nodes x breakers in
//! one process, call rate or idle, single server or the 3-node cluster), each run in fresh
//! runtimes against servers it starts and stops itself, then absorption and the lease-loss
//! run; every point's figures as a Markdown table (one column per run, min and median when
//! repeated) and a summary table of the whole grid. See BENCHMARKS.md, "Fleet scale".

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;
use fleet_bench::absorption::{self, Absorption};
use fleet_bench::fleet::{Fleet, FleetSpec};
use fleet_bench::lease_loss::{self, LeaseLoss};
use fleet_bench::point::{self, NODE_THREADS, PointResult, PointSpec, Settings};
use fleet_bench::{BenchError, Context};
use fusebox_testkit::servers::NatsServer;

/// The default grid: about 5.5 minutes on a 2-core machine with the per-breaker transport.
const DEFAULT_POINTS: &str = "1x1,1x100,4x100,1x1000:idle,4x1000,4x100:cluster,1x1000:cluster:idle";

/// Fusebox fleet-scale benchmark.
#[derive(Debug, Parser)]
#[command(name = "fleet-bench")]
struct Args {
    /// Points, comma-separated: `NODESxBREAKERS[:idle|:busy|:cluster|:single|:r<calls/s>]`.
    #[arg(long, default_value = DEFAULT_POINTS)]
    points: String,
    /// Also run every point on the 3-node cluster.
    #[arg(long)]
    cluster: bool,
    /// Seconds measured per point.
    #[arg(long, default_value_t = 15.0)]
    secs: f64,
    /// Seconds of settling (load running) before the measured window.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Calls per second per breaker on busy points.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The registries' flush interval, ms.
    #[arg(long, default_value_t = 5)]
    flush_ms: u64,
    /// Fleet decisions measured for propagation per point (as many raw KV puts).
    #[arg(long, default_value_t = 100)]
    trips: usize,
    /// Lease TTL, seconds.
    #[arg(long, default_value_t = 10.0)]
    lease_ttl: f64,
    /// Lease shards.
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Seconds creating a point's breakers may take before the rest are given up.
    #[arg(long, default_value_t = 30.0)]
    create_secs: f64,
    /// Runs per point (noise: min and median are printed).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Keep the raw side's scratch bucket in a file, as the state bucket is (default: memory).
    #[arg(long)]
    raw_file: bool,
    /// Seconds each absorption run hammers (0: skip absorption).
    #[arg(long, default_value_t = 2.0)]
    absorb_secs: f64,
    /// Seconds of the lease-loss run's gap (whole seconds; 0: skip it).
    #[arg(long, default_value_t = 5)]
    lease_loss_secs: u64,
}

fn runtime(name: &str, workers: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .doing("building a runtime")
}

/// One point in fresh runtimes, so nothing of an earlier point (a transport's task, a
/// reconnecting client) runs on into it; the runtimes are shut down, bounded, afterwards.
fn run_point(spec: PointSpec, settings: &Settings) -> Result<PointResult, BenchError> {
    let nodes = runtime(NODE_THREADS, 2)?;
    let aux = runtime("fleet-aux", 1)?;
    let handle = aux.handle().clone();
    let result = nodes.block_on(point::run(spec, settings, &handle));
    nodes.shutdown_timeout(Duration::from_secs(5));
    aux.shutdown_timeout(Duration::from_secs(5));
    result
}

fn absorb(secs: Duration) -> Result<Vec<Absorption>, BenchError> {
    let nodes = runtime(NODE_THREADS, 2)?;
    let result = nodes.block_on(async {
        let server =
            tokio::task::spawn_blocking(NatsServer::start).await.doing("starting")?.doing("starting a server")?;
        let spec = FleetSpec {
            urls: vec![server.url()],
            nodes: 1,
            breakers: 0,
            flush: Duration::from_millis(5),
            lease_ttl: Duration::from_secs(10),
            lease_shards: 16,
            replicas: 1,
            create_deadline: Duration::from_secs(30),
        };
        let fleet = Fleet::start(spec, &[]).await?;
        let one = absorption::run(&fleet, &["absorb-one"], 2, secs).await?;
        let hundred: Vec<String> = (0..100).map(|i| format!("absorb-{i:03}")).collect();
        let hundred: Vec<&str> = hundred.iter().map(String::as_str).collect();
        let many = absorption::run(&fleet, &hundred, 2, secs).await?;
        fleet.shutdown(Duration::from_secs(10)).await;
        drop(server);
        Ok(vec![one, many])
    });
    nodes.shutdown_timeout(Duration::from_secs(5));
    result
}

fn lease_loss_run(gap: Duration) -> Result<LeaseLoss, BenchError> {
    let nodes = runtime(NODE_THREADS, 2)?;
    let result = nodes.block_on(async {
        let server =
            tokio::task::spawn_blocking(NatsServer::start).await.doing("starting")?.doing("starting a server")?;
        let spec = FleetSpec {
            urls: vec![server.url()],
            nodes: 1,
            breakers: 0,
            flush: Duration::from_millis(5),
            // Renewals every second: a lost lease is noticed within about one.
            lease_ttl: Duration::from_secs(3),
            lease_shards: 16,
            replicas: 1,
            create_deadline: Duration::from_secs(30),
        };
        let fleet = Fleet::start(spec, &[]).await?;
        let run = lease_loss::run(&fleet, &[server.url()], gap, lease_loss::BENCH_CALLS).await;
        fleet.shutdown(Duration::from_secs(10)).await;
        drop(server);
        run
    });
    nodes.shutdown_timeout(Duration::from_secs(5));
    result
}

fn print_lease_loss(run: &LeaseLoss) {
    println!(
        "\n### The overlay under a lease loss (1 node; a ghost holds half the shards' leases for {} s)\n",
        run.gap.as_secs()
    );
    println!(
        "The node stopped deciding the lost shards' breakers {:.2} s after the ghost took them, and decided \
         them again {} after.\n",
        run.noticed_in.as_secs_f64(),
        run.back_in.map_or_else(|| "not within the bound".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    );
    println!(
        "| lease of the shard | local overlay | breakers | failing calls each | admitted (min / median / max) | first rejected call (median) | decided at the end |"
    );
    println!("|---|---|---|---|---|---|---|");
    for k in &run.kinds {
        let mut admitted: Vec<f64> = k.admitted.iter().map(|&a| f64::from(a)).collect();
        let mut first: Vec<f64> = k.first_rejected.iter().map(|f| f.map_or(f64::NAN, f64::from)).collect();
        let min = admitted.iter().copied().fold(f64::INFINITY, f64::min);
        let max = admitted.iter().copied().fold(0.0, f64::max);
        let first = if first.iter().all(|f| f.is_nan()) {
            "never".to_owned()
        } else if first.iter().any(|f| f.is_nan()) {
            "never, for some".to_owned()
        } else {
            number(median(&mut first))
        };
        println!(
            "| {} | {} | {} | {} | {} / {} / {} | {} | {} of {} |",
            if k.kind.lease_lost { "lost (nobody decides)" } else { "held" },
            if k.kind.overlay { "on (default)" } else { "off" },
            k.breakers,
            k.calls,
            number(min),
            number(median(&mut admitted)),
            number(max),
            first,
            k.decided_at_end,
            k.breakers
        );
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "—".to_owned()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print_point(spec: &PointSpec, runs: &[PointResult]) {
    println!("\n### {spec}\n");
    let repeated = runs.len() > 1;
    let mut header = "| figure |".to_owned();
    for i in 1..=runs.len() {
        let _ = write!(header, " run {i} |");
    }
    if repeated {
        header += " min | median |";
    }
    println!("{header}");
    println!("|{}", "---|".repeat(1 + runs.len() + if repeated { 2 } else { 0 }));
    let Some(first) = runs.first() else { return };
    for (label, _) in &first.figures {
        let mut values: Vec<f64> = runs.iter().map(|r| r.get(label)).collect();
        let mut row = format!("| {label} |");
        for v in &values {
            let _ = write!(row, " {} |", number(*v));
        }
        if repeated {
            let min = values.iter().copied().fold(f64::NAN, f64::min);
            let _ = write!(row, " {} | {} |", number(min), number(median(&mut values)));
        }
        println!("{row}");
    }
    for (i, run) in runs.iter().enumerate() {
        for note in &run.notes {
            println!("\nrun {}: {note}", i + 1);
        }
    }
}

const SUMMARY: [(&str, &str); 14] = [
    ("outcome msgs/s per node (max)", "outcome msgs/s/node"),
    ("outcome msgs per flush per node (max)", "msgs/flush/node"),
    ("JetStream msgs/s per node (max)", "JS msgs/s/node"),
    ("consumers per node (max)", "consumers/node"),
    ("consumers on the busiest stream", "busiest stream"),
    ("subscriptions per node (max)", "subs/node"),
    ("resync gets/s per node (max)", "resync/s/node"),
    ("node CPU % (all nodes, of one core)", "node CPU %"),
    ("memory per breaker KiB", "KiB/breaker"),
    ("server CPU % (of one core)", "server CPU %"),
    ("breakers decided at the end", "decided at end"),
    ("longest lease gap s", "longest gap s"),
    ("propagation p99 ms", "prop p50/p99 ms"),
    ("raw KV watch p99 ms", "raw p50/p99 ms"),
];

fn print_summary(points: &[(PointSpec, Vec<PointResult>)]) {
    println!("\n## Summary (median of runs)\n");
    let mut header = "| point | created |".to_owned();
    for (_, short) in SUMMARY {
        let _ = write!(header, " {short} |");
    }
    header += " losses / depositions |";
    println!("{header}");
    println!("|{}", "---|".repeat(SUMMARY.len() + 3));
    for (spec, runs) in points {
        let med = |label: &str| median(&mut runs.iter().map(|r| r.get(label)).collect::<Vec<_>>());
        let mut row = format!(
            "| {spec} | {} of {} |",
            number(med("breakers created (all nodes)")),
            number(med("breakers wanted (all nodes)"))
        );
        for (label, _) in SUMMARY {
            let cell = match label {
                "propagation p99 ms" => format!("{} / {}", number(med("propagation p50 ms")), number(med(label))),
                "raw KV watch p99 ms" => format!("{} / {}", number(med("raw KV watch p50 ms")), number(med(label))),
                _ => number(med(label)),
            };
            let _ = write!(row, " {cell} |");
        }
        let _ = write!(row, " {} / {} |", number(med("lease losses (window)")), number(med("depositions (window)")));
        println!("{row}");
    }
}

fn main() -> Result<(), BenchError> {
    let args = Args::parse();
    let settings = Settings {
        window: Duration::from_secs_f64(args.secs),
        settle: Duration::from_secs_f64(args.settle),
        flush: Duration::from_millis(args.flush_ms.max(1)),
        trips: args.trips,
        lease_ttl: Duration::from_secs_f64(args.lease_ttl),
        lease_shards: args.shards.max(1),
        create_deadline: Duration::from_secs_f64(args.create_secs),
        raw_file: args.raw_file,
    };
    let mut specs = Vec::new();
    for text in args.points.split(',').filter(|t| !t.trim().is_empty()) {
        let spec = PointSpec::parse(text, args.rate)?;
        specs.push(spec);
        if args.cluster && !spec.cluster {
            specs.push(PointSpec { cluster: true, ..spec });
        }
    }
    println!(
        "# fleet-bench: {} points, {} s measured after {} s settling, flush {} ms, lease TTL {} s, {} shards, {} trips, {} run(s) each",
        specs.len(),
        args.secs,
        args.settle,
        args.flush_ms,
        args.lease_ttl,
        args.shards,
        args.trips,
        args.repeat
    );
    let mut done = Vec::new();
    for spec in specs {
        let mut runs = Vec::new();
        for run in 1..=args.repeat.max(1) {
            eprintln!("fleet-bench: {spec}, run {run}");
            match run_point(spec, &settings) {
                Ok(result) => runs.push(result),
                Err(e) => eprintln!("fleet-bench: {spec}, run {run} failed: {e}"),
            }
        }
        print_point(&spec, &runs);
        done.push((spec, runs));
    }
    if args.absorb_secs > 0.0 {
        eprintln!("fleet-bench: absorption");
        let runs = absorb(Duration::from_secs_f64(args.absorb_secs))?;
        println!("\n### Absorption (1 node, 2 threads, every call a success)\n");
        println!(
            "| breakers | recorded | drained by the node | stale (dropped by design) | counted by the deciders | lost | doubled | M outcomes/s |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for a in runs {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                a.breakers,
                a.recorded,
                a.drained,
                a.stale,
                a.counted,
                a.recorded.saturating_sub(a.counted + a.stale),
                (a.counted + a.stale).saturating_sub(a.recorded),
                a.mega_per_sec()
            );
        }
    }
    if args.lease_loss_secs > 0 {
        eprintln!("fleet-bench: lease loss");
        match lease_loss_run(Duration::from_secs(args.lease_loss_secs)) {
            Ok(run) => print_lease_loss(&run),
            Err(e) => eprintln!("fleet-bench: the lease-loss run failed: {e}"),
        }
    }
    if !done.is_empty() {
        print_summary(&done);
    }
    Ok(())
}
