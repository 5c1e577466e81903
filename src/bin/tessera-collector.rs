//! `tessera-collector`: tracks jobs, assembles outputs, ends jobs.

use clap::Parser;
use tessera::config::CommonArgs;
use tessera::roles::collector::CollectorConfig;

/// Tracks jobs, assembles their outputs and ends them.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    collector: CollectorConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tessera::telemetry::init(args.common.log_format);
    tessera::config::serve(&args.common, "tessera-collector", |deps, shutdown| {
        tessera::roles::collector::run(deps, args.collector, shutdown)
    })
    .await
}
