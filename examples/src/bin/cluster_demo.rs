//! `cluster-demo` (`make demo`): a 3-node nats-server cluster, service instances sharing one
//! breaker, a scripted dependency outage, a killed decider and a killed server, then the
//! measured figures (see `fusebox_examples::demo::orchestrator`).

use fusebox_examples::demo::orchestrator::{DemoArgs, run};
use fusebox_examples::demo::view;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = match DemoArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let summary = run(args).await;
    println!();
    println!("{}", view::summary("Fusebox cluster demo: measured", &summary.rows));
    match summary.failed {
        None => {
            println!("every step of the script happened; all processes stopped.");
            std::process::ExitCode::SUCCESS
        }
        Some(step) => {
            eprintln!("FAILED: {step}");
            std::process::ExitCode::FAILURE
        }
    }
}
