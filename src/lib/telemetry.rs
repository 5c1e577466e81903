//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default: `info` for services,
//! `warn` for CLI commands; the NATS client's connection chatter only from `warn`).

/// Installs the stderr subscriber once with `default` as the filter when `RUST_LOG` is
/// unset; later calls do nothing.
pub fn init_with(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},async_nats=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// [`init_with`] for services: `info`.
pub fn init() {
    init_with("info");
}

/// Prints a failed run's error chain (`{:#}`) and turns the result into an exit code.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
