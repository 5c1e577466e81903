//! `tessera-collector`: tracks jobs, assembles outputs, ends jobs.

use clap::Parser;
use tessera::config::CommonArgs;

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
    tessera::config::serve(
        &args.common,
        "tessera-collector",
        tessera::roles::collector::run,
    )
    .await
}
