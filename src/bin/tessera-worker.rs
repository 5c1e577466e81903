//! `tessera-worker`: takes tasks, renders them, uploads the outputs.

use clap::Parser;
use tessera::config::{CommonArgs, Deps, Patience};
use tessera::roles::worker::WorkerArgs;
use tessera::roles::worker::WorkerConfig;

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
    tessera::telemetry::init();
    let args = Args::parse();
    let shutdown = tessera::shutdown::on_signal();
    let result = async {
        let config = WorkerConfig::try_from(&args.worker)?;
        let deps = Deps::connect(
            &args.common,
            &format!("tessera-worker {}", config.id),
            Patience::Wait,
        )
        .await?;
        tessera::roles::worker::run(deps, config, shutdown).await
    };
    tessera::telemetry::exit(result.await)
}
