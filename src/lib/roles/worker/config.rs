//! A worker's flags ([`WorkerArgs`], also taken by `tessera up` for its workers) and their
//! validated form ([`WorkerConfig`]), converted once at start.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::hostname;
use crate::core::job::{Class, RendererKind};
use crate::render::program::{self, Programs};

/// A worker's validated configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique worker id (shown in events and `tessera workers`).
    pub id: String,
    /// Classes served, in preference order.
    pub classes: Vec<Class>,
    /// Tasks run at once.
    pub slots: usize,
    /// Threads each slot's renderer may use.
    pub threads: usize,
    /// Local blob cache and work folders.
    pub cache_dir: PathBuf,
    /// Most bytes the blob cache holds (least recently used blobs go first).
    pub cache_size: Option<u64>,
    /// Renderers this worker runs.
    pub renderers: Vec<RendererKind>,
    /// The programs of its external renderers, with their versions.
    pub programs: Programs,
    /// The task consumers' ack deadline.
    pub ack_wait: Duration,
    /// How long renders may finish after SIGTERM before they are stopped.
    pub grace: Duration,
    /// The longest any attempt may run, whatever its job says (`None`: no limit).
    pub max_attempt_time: Option<Duration>,
    /// How often an idle slot polls when no doorbell rings.
    pub idle_poll: Duration,
    /// Deliveries after which JetStream gives up on a task, if not the definition's.
    pub max_deliver: Option<i64>,
    /// A burst worker takes a task only while at least this many wait in its queue.
    pub burst: Option<usize>,
    /// How long a burst worker leaves new work to the farm's own idle workers.
    pub burst_defer: Duration,
    /// How fast the machine renders, relative to the farm's usual one (1): key tasks go to
    /// the fastest idle workers first.
    pub speed: f64,
}

/// A worker's flags (also taken by `tessera up` for its workers).
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Worker id (default: host name plus a random suffix).
    #[arg(long, env = "TESSERA_WORKER_ID")]
    pub id: Option<String>,
    /// Hardware classes served, in preference order, comma-separated.
    #[arg(
        long,
        env = "TESSERA_CLASS",
        default_value = "cpu",
        value_delimiter = ','
    )]
    pub class: Vec<String>,
    /// Tasks run at once.
    #[arg(long, env = "TESSERA_SLOTS", default_value_t = 1)]
    pub slots: usize,
    /// Threads per slot (0: the machine's cores divided among the slots).
    #[arg(long, env = "TESSERA_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Local cache of scene files, this worker's own: one worker process per folder
    /// (default: `tessera-cache/<--id or "default">` in the system's temp dir).
    #[arg(long, env = "TESSERA_CACHE")]
    pub cache: Option<PathBuf>,
    /// Most the scene cache holds, e.g. "20GiB", "500MB" or "0" for no limit; the least
    /// recently used scene files are removed first.
    #[arg(long, env = "TESSERA_CACHE_SIZE", default_value = "20GiB")]
    pub cache_size: String,
    /// Renderers to run, comma-separated (default: every one this build has).
    #[arg(long, env = "TESSERA_RENDERERS", value_delimiter = ',')]
    pub renderers: Vec<String>,
    /// Ack deadline of the task consumers, e.g. "5s" (default: streams/consumer-tasks.json).
    #[arg(long, env = "TESSERA_ACK_WAIT")]
    pub ack_wait: Option<String>,
    /// The longest an attempt may run on this worker, also for jobs that set no timeout
    /// (a hung renderer that still prints is stopped); "0" for no limit.
    #[arg(long, env = "TESSERA_MAX_ATTEMPT_TIME", default_value = "24h")]
    pub max_attempt_time: String,
    /// Time renders get to finish after SIGTERM before their tasks are handed back.
    #[arg(long, env = "TESSERA_GRACE", default_value = "30s")]
    pub grace: String,
    /// How often an idle slot polls when no doorbell rings.
    #[arg(long, default_value = "500ms")]
    pub idle_poll: String,
    /// Allow the `command` renderer (runs programs named by jobs: only on trusted farms).
    #[arg(long, env = "TESSERA_ALLOW_COMMAND")]
    pub allow_command: bool,
    /// Deliveries after which JetStream gives up on a task (default: streams/consumer-tasks.json).
    #[arg(long, env = "TESSERA_MAX_DELIVER")]
    pub max_deliver: Option<i64>,
    /// The POV-Ray program (default: `povray` on PATH).
    #[arg(long, env = "TESSERA_POVRAY", value_name = "PATH")]
    pub povray: Option<PathBuf>,
    /// The Blender program (default: `blender` on PATH).
    #[arg(long, env = "TESSERA_BLENDER", value_name = "PATH")]
    pub blender: Option<PathBuf>,
    /// Burst worker: take work only while at least N tasks wait in a queue it serves (cloud
    /// or spot machines, workstations at night: they help only when the farm is behind).
    #[arg(long, env = "TESSERA_BURST", value_name = "N")]
    pub burst: Option<usize>,
    /// How long a burst worker leaves new work to the farm's own idle workers before it
    /// takes a task itself (a busy or slow farm takes longer to pull).
    #[arg(
        long,
        env = "TESSERA_BURST_DEFER",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub burst_defer: String,
    /// How fast this machine renders relative to the farm's usual one, e.g. "2" for twice
    /// as fast: the frames a job asks for first go to the fastest idle workers.
    #[arg(long, env = "TESSERA_SPEED", default_value_t = 1.0)]
    pub speed: f64,
}

fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("--{flag} {text:?} is not a duration such as \"5s\""))
}

impl TryFrom<&WorkerArgs> for WorkerConfig {
    type Error = anyhow::Error;

    fn try_from(args: &WorkerArgs) -> anyhow::Result<Self> {
        let classes = args
            .class
            .iter()
            .map(|c| Class::parse(c.trim()).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--class")?;
        if classes.is_empty() {
            anyhow::bail!("--class needs at least one class");
        }
        if args.slots == 0 || args.slots > 256 {
            anyhow::bail!("--slots must be from 1 to 256");
        }
        let program_path = |kind: RendererKind| match kind {
            RendererKind::Povray => args.povray.as_deref(),
            RendererKind::Blender => args.blender.as_deref(),
            _ => None,
        };
        let mut programs = Programs::new();
        let renderers = if args.renderers.is_empty() {
            // Every renderer this worker can run: the built-in ones, and each external one
            // whose program answers.
            let mut renderers = Vec::new();
            for kind in RendererKind::ALL {
                if kind == RendererKind::Command && !args.allow_command {
                    continue;
                }
                if program::default_name(kind).is_some() {
                    match program::find(kind, program_path(kind)) {
                        Ok(found) => {
                            programs.insert(kind, found);
                        }
                        Err(why) => {
                            tracing::info!("not offering {kind}: {why}");
                            continue;
                        }
                    }
                }
                renderers.push(kind);
            }
            renderers
        } else {
            args.renderers
                .iter()
                .map(|name| {
                    let kind = RendererKind::parse(name.trim())
                        .with_context(|| format!("--renderers: {name:?} is not a renderer"))?;
                    if kind == RendererKind::Command && !args.allow_command {
                        anyhow::bail!("--renderers: command runs programs named by jobs; start the worker with --allow-command to allow it");
                    }
                    if program::default_name(kind).is_some() {
                        let found = program::find(kind, program_path(kind))
                            .map_err(|why| anyhow::anyhow!("--renderers: {why}"))?;
                        programs.insert(kind, found);
                    }
                    Ok(kind)
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if args.threads == 0 {
            (cores / args.slots).max(1)
        } else {
            args.threads
        };
        let ack_wait = match &args.ack_wait {
            Some(text) => duration("ack-wait", text)?,
            None => crate::bus::streams::default_task_ack_wait(),
        };
        if ack_wait < Duration::from_secs(1) {
            anyhow::bail!("--ack-wait must be at least 1s");
        }
        // A worker named by --id keeps its cache across restarts under that name.
        let default_cache = std::env::temp_dir()
            .join("tessera-cache")
            .join(args.id.as_deref().unwrap_or("default"));
        let id = args
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{:04x}", hostname(), std::process::id() & 0xffff));
        if !crate::core::job::is_token(&id, 64, true) {
            anyhow::bail!("--id {id:?}: use 1 to 64 of letters, digits, '_' and '-'");
        }
        Ok(WorkerConfig {
            id,
            classes,
            slots: args.slots,
            threads,
            cache_dir: args.cache.clone().unwrap_or(default_cache),
            cache_size: match crate::store::cache::parse_size(&args.cache_size)
                .map_err(|e| anyhow::anyhow!("--cache-size {e}"))?
            {
                0 => None,
                n => Some(n),
            },
            renderers,
            programs,
            ack_wait,
            grace: duration("grace", &args.grace)?,
            max_attempt_time: match args.max_attempt_time.trim() {
                "0" => None,
                text => Some(duration("max-attempt-time", text)?),
            },
            idle_poll: duration("idle-poll", &args.idle_poll)?,
            max_deliver: match args.max_deliver {
                Some(n) if n < 2 => anyhow::bail!("--max-deliver must be at least 2"),
                other => other,
            },
            burst: match args.burst {
                Some(0) => anyhow::bail!("--burst must be at least 1 (or absent)"),
                other => other,
            },
            burst_defer: duration("burst-defer", &args.burst_defer)?,
            speed: match args.speed {
                s if s.is_finite() && (1e-3..=1e3).contains(&s) => s,
                s => anyhow::bail!("--speed {s}: give a factor from 0.001 to 1000 (1: usual)"),
            },
        })
    }
}
