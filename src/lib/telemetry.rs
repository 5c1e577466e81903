//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default: `info` for services,
//! `warn` for CLI commands; the NATS client's connection chatter only from `warn`), as
//! readable text for people or one JSON object a line for machines (`--log-format json`).

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines: time, level, message, fields.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (with `message`), `span`s.
    Json,
}

/// Installs the stderr subscriber once with `default` as the filter when `RUST_LOG` is
/// unset, writing `format`; later calls do nothing.
pub fn init_with(default: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},async_nats=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// [`init_with`] for services: `info`.
pub fn init(format: LogFormat) {
    init_with("info", format);
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
