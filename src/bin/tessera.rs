//! `tessera`: the command line — a local farm in one command, and submit, status, fetch,
//! cancel, logs for jobs on any farm; approve, list and resubmit published versions.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tessera::config::{CommonArgs, Deps, Patience, default_data_dir};
use tessera::core::job::{Class, JobId, Priority};
use tessera::roles::client;
use tessera::roles::worker::WorkerArgs;
use tessera::roles::worker::WorkerConfig;

/// Tessera render farm.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Which task queues `pause` and `resume` act on.
#[derive(clap::Args)]
struct QueueArgs {
    /// Only this hardware class (default: every class).
    #[arg(long)]
    class: Option<String>,
    /// Only this priority: high, normal or low (default: every priority).
    #[arg(long)]
    priority: Option<String>,
}

impl QueueArgs {
    fn parse(&self) -> anyhow::Result<(Option<Class>, Option<Priority>)> {
        let class = self
            .class
            .as_deref()
            .map(|c| Class::parse(c).map_err(|e| anyhow::anyhow!("--class: {e}")))
            .transpose()?;
        let priority = self
            .priority
            .as_deref()
            .map(|p| {
                Priority::parse(p)
                    .with_context(|| format!("--priority: {p:?} is not high, normal or low"))
            })
            .transpose()?;
        Ok((class, priority))
    }
}

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would only obscure the flags"
)]
enum Command {
    /// Create or update the streams, consumers and buckets.
    Init,
    /// Run a whole local farm in the foreground (nats-server, planner, collector, workers).
    Up {
        /// Data folder (NATS data, the file store, the workers' cache).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Workers to run.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// NATS port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 4222)]
        port: u16,
        /// Run a cluster of this many nats-servers (3 to 5) with every stream and bucket
        /// in 3 replicas, to try failover on one machine: the first server takes --port,
        /// the others free ports, and NATS_URL names them all.
        #[arg(long, value_name = "SERVERS", default_value_t = 1)]
        cluster: usize,
        /// How often JetStream fsyncs: "always" (before every acknowledgement: a power cut
        /// loses nothing acknowledged) or an interval such as "10s" (faster writes; up to
        /// that much acknowledged work is lost on a power cut).
        #[arg(long, default_value = "always")]
        sync_interval: tessera::farm::Fsync,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        collector: tessera::roles::collector::CollectorConfig,
        #[command(flatten)]
        web: tessera::web::WebArgs,
    },
    /// Serve the web dashboard: the farm, the jobs, a job live (its task grid, the mosaic
    /// of a tiled still filling in, a flip-book of the frames done), cancel, retry,
    /// suspend, resume and priority. Prints its URL.
    Web {
        #[command(flatten)]
        web: tessera::web::WebArgs,
    },
    /// Submit a job file; prints the job id as the last line.
    Submit {
        /// The job file (TOML).
        job: PathBuf,
        /// Wait for the job to end; exit 0 only if it is done.
        #[arg(long)]
        wait: bool,
    },
    /// Wait for a job to end; exit 0 only if it is done.
    Wait {
        /// Job id.
        job: String,
    },
    /// Follow a job live until it ends: where it stands, then each change (progress,
    /// rate and ETA, failures and retries with their reasons), then its outputs; bars on
    /// a terminal, a plain line per change elsewhere. Exit 0 only if it is done.
    Watch {
        /// Job id.
        job: String,
        /// One JSON object per line: `status` first, an `event` (with `progress`) per
        /// change, `end` last.
        #[arg(long)]
        json: bool,
    },
    /// Approve a published version: `tessera approve JOB`, or `tessera approve NAME vNNN`.
    Approve(versions::ApproveArgs),
    /// List the published versions of an output name (`shot010/lighting`); with
    /// `--approved`, print where the latest approved one is.
    Versions(versions::VersionsArgs),
    /// Render a published version again from its stored spec and scene bytes, as the
    /// output's next version.
    Resubmit(versions::ResubmitArgs),
    /// Show a job's state.
    Status {
        /// Job id.
        job: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List recent and active jobs, newest first: state, progress, priority, age.
    Jobs {
        /// Only jobs in these states (comma-separated: queued, running, done, failed,
        /// canceled).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs accepted within this long (`2h`, `30m`, `7d`), and the active ones.
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a job's outputs.
    Fetch {
        /// Job id.
        job: String,
        /// Folder to write into.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Cancel a job: queued tasks removed, running renders stopped.
    Cancel {
        /// Job id.
        job: String,
    },
    /// Delete an ended job: its outputs, logs and records (published versions stay).
    Delete {
        /// Job id.
        job: String,
        /// Cancel the job first if it is still queued or running.
        #[arg(long)]
        force: bool,
    },
    /// Queue a failed or canceled job's failed tasks again, with fresh attempts.
    Retry {
        /// Job id.
        job: String,
    },
    /// Pause task queues: queued tasks stay queued, running ones finish, no worker takes
    /// another until `tessera resume`; the pause survives restarts.
    Pause(QueueArgs),
    /// Resume a suspended job (with JOB), or paused task queues.
    Resume {
        /// Job id: resume this suspended job (its held tasks are queued again).
        job: Option<String>,
        #[command(flatten)]
        queues: QueueArgs,
    },
    /// Suspend a job: its queued tasks are taken out of the queue and kept, running ones
    /// finish, nothing more starts until `tessera resume JOB`; survives restarts.
    Suspend {
        /// Job id.
        job: String,
    },
    /// Give a job another priority (high, normal or low): its remaining tasks are queued
    /// at it; running ones finish.
    Priority {
        /// Job id.
        job: String,
        /// high, normal or low.
        priority: String,
    },
    /// Limits: named farm-wide counts of tokens (renderer licences) that jobs' tasks hold
    /// while queued or running (`limits = ["NAME"]` in a job).
    #[command(subcommand)]
    Limit(LimitCommand),
    /// List the live workers.
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Health check: exit 0 if NATS and the object store answer (and, with --worker-host,
    /// a live worker on that host is registered). For container health checks.
    Ping {
        /// Also require a live worker registered from this host name.
        #[arg(long)]
        worker_host: Option<String>,
    },
    /// Print the renderer logs of a job's tasks.
    Logs {
        /// Job id.
        job: String,
        /// Only this task.
        task: Option<String>,
        /// Only this attempt (1 for the first).
        #[arg(long)]
        attempt: Option<u32>,
        /// Follow the logs as renders write them (streamed through NATS), from the first
        /// line kept, until the attempt, the task or the job ends.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum LimitCommand {
    /// Set a limit's tokens, making it if it is new.
    Set {
        /// Its name, as jobs name it.
        name: String,
        /// How many tasks may hold a token at once.
        tokens: u32,
    },
    /// List the limits: tokens, in use, jobs waiting.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn job_id(text: &str) -> anyhow::Result<JobId> {
    JobId::parse(text).map_err(anyhow::Error::msg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Up { .. } | Command::Web { .. } => "info",
        _ => "warn",
    };
    tessera::telemetry::init_with(level, cli.common.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[path = "tessera/follow.rs"]
mod follow;
#[path = "tessera/report.rs"]
mod report;
#[path = "tessera/versions.rs"]
mod versions;
use follow::{Mode, Out};

async fn connect(common: &CommonArgs) -> anyhow::Result<Deps> {
    Deps::connect(common, "tessera", Patience::FailFast).await
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init => {
            let deps = connect(&cli.common).await?;
            for change in deps.applied.iter() {
                println!("{change}");
            }
            let counts = tessera::bus::streams::replica_counts(&deps.js).await?;
            let mut replicas: Vec<usize> = counts.iter().map(|(_, n)| *n).collect();
            replicas.dedup();
            match replicas[..] {
                [n] => println!(
                    "streams, consumers and buckets are in place, each in {n} replica{}",
                    if n == 1 { "" } else { "s" }
                ),
                _ => {
                    println!("streams, consumers and buckets are in place:");
                    for (name, n) in counts {
                        println!("  {name}: {n} replicas");
                    }
                }
            }
            // Roles read a bucket the way it was when they opened it.
            if deps.applied.iter().any(|c| c.starts_with("updated bucket")) {
                println!(
                    "roles already running read the buckets as they were: restart them (in turn, any order) so that they read replicated buckets from their leaders"
                );
            }
        }
        Command::Up {
            data,
            workers,
            port,
            cluster,
            sync_interval,
            worker,
            collector,
            web,
        } => {
            let config = tessera::farm::FarmConfig {
                data: data.unwrap_or_else(default_data_dir),
                workers,
                port,
                servers: cluster,
                worker: WorkerConfig::try_from(&worker)?,
                sync: sync_interval,
                collector,
                metrics: cli.common.metrics_addr,
                web,
            };
            let shutdown = tessera::shutdown::on_signal();
            tessera::farm::up(config, shutdown, |ready| {
                println!("NATS_URL={}", ready.nats);
                println!("TESSERA_STORE={}", ready.store);
                println!("TESSERA_METRICS={}", ready.metrics);
                println!("TESSERA_WEB={}", ready.web);
                let _ = std::io::stdout().flush();
            })
            .await?;
        }
        Command::Web { web } => {
            let config = web.config()?;
            let deps = Deps::connect(&cli.common, "tessera-web", Patience::Wait).await?;
            let shutdown = tessera::shutdown::on_signal();
            tessera::web::run(deps, config, shutdown, |url| {
                println!("TESSERA_WEB={url}");
                let _ = std::io::stdout().flush();
            })
            .await?;
        }
        Command::Submit { job, wait } => {
            let prepared = match client::prepare(&job) {
                Ok(prepared) => prepared,
                Err(invalid) => {
                    eprintln!("error: {} is not a valid job:", job.display());
                    for e in &invalid.0 {
                        eprintln!("  {e}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            let deps = connect(&cli.common).await?;
            let client::Submitted { id, scene } = client::submit(&deps, prepared).await?;
            if let Some(scene) = scene {
                eprintln!(
                    "scene: {} files, {} uploaded ({} bytes), {} already stored",
                    scene.files,
                    scene.uploaded_files,
                    scene.uploaded_bytes,
                    scene.files - scene.uploaded_files
                );
            }
            if wait {
                eprintln!("submitted {id}; waiting");
                let code = follow::watch(&deps, &id, Out::Stderr, None).await?;
                println!("{id}");
                return Ok(code);
            }
            println!("{id}");
        }
        Command::Wait { job } => {
            let deps = connect(&cli.common).await?;
            return follow::watch(&deps, &job_id(&job)?, Out::Stderr, None).await;
        }
        Command::Watch { job, json } => {
            let deps = connect(&cli.common).await?;
            let mode = json.then_some(Mode::Json);
            return follow::watch(&deps, &job_id(&job)?, Out::Stdout, mode).await;
        }
        Command::Status { job, json } => {
            let deps = connect(&cli.common).await?;
            let status = client::status(&deps, &job_id(&job)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                report::print_status(&status);
            }
        }
        Command::Jobs { state, since, json } => {
            let deps = connect(&cli.common).await?;
            let mut filter = client::JobFilter::default();
            for name in state.iter().flat_map(|s| s.split(',')) {
                filter.states.push(
                    name.trim()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--state: {e}"))?,
                );
            }
            if let Some(since) = since {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                filter.since_ms = Some(now.saturating_sub(since.into()).as_millis() as u64);
            }
            let jobs = client::jobs(&deps, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                report::print_jobs(&jobs);
            }
        }
        Command::Fetch { job, output } => {
            let deps = connect(&cli.common).await?;
            let files = client::fetch(&deps, &job_id(&job)?, &output).await?;
            eprintln!("{} files written to {}", files.len(), output.display());
        }
        Command::Cancel { job } => {
            let deps = connect(&cli.common).await?;
            client::cancel(&deps, &job_id(&job)?).await?;
            println!("{job} canceled");
        }
        Command::Delete { job, force } => {
            let deps = connect(&cli.common).await?;
            let deleted = client::delete(&deps, &job_id(&job)?, force).await?;
            println!("{job} deleted ({} objects removed)", deleted.objects);
        }
        Command::Retry { job } => {
            let deps = connect(&cli.common).await?;
            let n = client::retry(&deps, &job_id(&job)?).await?;
            println!("{job}: {n} tasks queued again");
        }
        Command::Pause(queues) => pause_queues(&cli.common, &queues, true).await?,
        Command::Resume { job: None, queues } => {
            pause_queues(&cli.common, &queues, false).await?;
        }
        Command::Resume {
            job: Some(job),
            queues,
        } => {
            if queues.class.is_some() || queues.priority.is_some() {
                anyhow::bail!(
                    "resume takes a job or --class/--priority for queues, not both: {job} is a job"
                );
            }
            let deps = connect(&cli.common).await?;
            let changed = client::resume(&deps, &job_id(&job)?).await?;
            println!("{job} resumed: {} tasks queued", changed.queued);
        }
        Command::Limit(LimitCommand::Set { name, tokens }) => {
            let deps = connect(&cli.common).await?;
            let limit = client::set_limit(&deps, &name, tokens).await?;
            println!(
                "limit {name}: {} tokens, {} in use",
                limit.max, limit.in_use
            );
        }
        Command::Limit(LimitCommand::List { json }) => {
            let deps = connect(&cli.common).await?;
            let limits = client::list_limits(&deps).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&limits)?);
            }
            for limit in limits.iter().filter(|_| !json) {
                println!(
                    "{}: {} of {} in use, {} jobs waiting",
                    limit.name,
                    limit.in_use,
                    limit.max,
                    limit.waiting.len()
                );
            }
        }
        Command::Suspend { job } => {
            let deps = connect(&cli.common).await?;
            let changed = client::suspend(&deps, &job_id(&job)?).await?;
            println!(
                "{job} suspended: {} queued tasks held; running ones finish",
                changed.withdrawn
            );
        }
        Command::Priority { job, priority } => {
            let priority = Priority::parse(&priority)
                .with_context(|| format!("{priority:?} is not high, normal or low"))?;
            let deps = connect(&cli.common).await?;
            let changed = client::set_priority(&deps, &job_id(&job)?, priority).await?;
            println!(
                "{job} is now {priority}: {} tasks moved, {} queued",
                changed.withdrawn, changed.queued
            );
        }
        Command::Ping { worker_host } => {
            let deps = connect(&cli.common).await?;
            deps.store
                .exists("ping")
                .await
                .context("the object store does not answer")?;
            if let Some(host) = worker_host {
                let workers = client::workers(&deps).await?;
                if !workers.iter().any(|w| w.host == host) {
                    anyhow::bail!("no live worker from host {host:?} is registered");
                }
            }
            println!("ok");
        }
        Command::Workers { json } => {
            let deps = connect(&cli.common).await?;
            let workers = client::workers(&deps).await?;
            let queues = tessera::bus::streams::task_queues(&deps.js).await?;
            // The paused queues among those each worker serves, as class/priority.
            let paused_for = |w: &tessera::bus::protocol::WorkerInfo| -> Vec<String> {
                let mut paused: Vec<String> = queues
                    .iter()
                    .filter(|q| {
                        q.paused
                            && w.classes.contains(&q.class)
                            && w.renderers.contains(&q.renderer)
                    })
                    .map(|q| format!("{}/{}", q.class, q.priority))
                    .collect();
                paused.dedup();
                paused
            };
            if json {
                let mut list = Vec::new();
                for w in &workers {
                    let mut value = serde_json::to_value(w)?;
                    value["paused"] = serde_json::json!(paused_for(w));
                    list.push(value);
                }
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                report::print_workers(&workers, paused_for);
            }
        }
        Command::Approve(args) => return versions::approve(&cli.common, args).await,
        Command::Versions(args) => return versions::list(&cli.common, args).await,
        Command::Resubmit(args) => return versions::resubmit(&cli.common, args).await,
        Command::Logs {
            job,
            task,
            attempt,
            follow,
        } => {
            let deps = connect(&cli.common).await?;
            let id = job_id(&job)?;
            if follow {
                let prefixed = task.is_none();
                let mut out = std::io::stdout();
                client::logs::follow(&deps, &id, task.as_deref(), attempt, |chunk| {
                    for line in chunk.text.lines() {
                        let _ = if prefixed {
                            writeln!(out, "[{} attempt {}] {line}", chunk.task, chunk.attempt)
                        } else {
                            writeln!(out, "{line}")
                        };
                    }
                    let _ = out.flush();
                })
                .await?;
            } else {
                for (name, text) in
                    client::logs::stored(&deps, &id, task.as_deref(), attempt).await?
                {
                    println!("== {name}");
                    print!("{text}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera pause` and `tessera resume`.
async fn pause_queues(common: &CommonArgs, queues: &QueueArgs, pause: bool) -> anyhow::Result<()> {
    let (class, priority) = queues.parse()?;
    let deps = connect(common).await?;
    let changed = client::pause(&deps, class.as_ref(), priority, pause).await?;
    let verb = if pause { "paused" } else { "resumed" };
    if changed.is_empty() {
        println!("no task queue matches");
    }
    for q in changed {
        println!("{verb} {}/{}/{}", q.class, q.priority, q.renderer);
    }
    Ok(())
}
