//! `tessera-planner`: validates job submissions and queues their tasks.

use clap::Parser;
use tessera::config::{CommonArgs, Deps, Patience};

/// Validates job submissions and queues their tasks.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera::telemetry::init();
    let args = Args::parse();
    let shutdown = tessera::shutdown::on_signal();
    let result = async {
        let deps = Deps::connect(&args.common, "tessera-planner", Patience::Wait).await?;
        tessera::roles::planner::run(deps, shutdown).await
    };
    tessera::telemetry::exit(result.await)
}
