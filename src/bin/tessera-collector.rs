//! `tessera-collector`: tracks jobs, assembles outputs, ends jobs.

use clap::Parser;
use tessera::config::{CommonArgs, Deps, Patience};

/// Tracks jobs, assembles their outputs and ends them.
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
        let deps = Deps::connect(&args.common, "tessera-collector", Patience::Wait).await?;
        tessera::roles::collector::run(deps, shutdown).await
    };
    tessera::telemetry::exit(result.await)
}
