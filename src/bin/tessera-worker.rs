//! `tessera-worker`: takes tasks, renders them, uploads the outputs.

use clap::Parser;
use tessera::config::CommonArgs;
use tessera::roles::worker::{WorkerArgs, WorkerConfig};

/// Takes tasks one per free slot, renders them and uploads the outputs.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tessera::telemetry::init(args.common.log_format);
    let config = match WorkerConfig::try_from(&args.worker) {
        Ok(config) => config,
        Err(e) => return tessera::telemetry::exit(Err(e)),
    };
    let name = format!("tessera-worker {}", config.id);
    tessera::config::serve(&args.common, &name, |deps, shutdown| {
        tessera::roles::worker::run(deps, config, shutdown)
    })
    .await
}
