//! `service-instance`: one demo service instance (see `fusebox_examples::demo::instance`),
//! started by `cluster-demo`.

use fusebox_examples::demo::instance::{InstanceArgs, run};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = match InstanceArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("service-instance: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let node = args.node.clone();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service-instance {node}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
