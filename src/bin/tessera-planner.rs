//! `tessera-planner`: validates job submissions and queues their tasks.

use clap::Parser;
use tessera::config::CommonArgs;

/// Validates job submissions and queues their tasks.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    planner: tessera::roles::planner::PlannerConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tessera::telemetry::init(args.common.log_format);
    tessera::config::serve(&args.common, "tessera-planner", |deps, shutdown| {
        tessera::roles::planner::run(deps, args.planner, shutdown)
    })
    .await
}
