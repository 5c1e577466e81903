//! `tessera approve`, `tessera versions` and `tessera resubmit`: published versions from
//! the command line.

use std::process::ExitCode;

use tessera::config::CommonArgs;
use tessera::core::version::{self, Listed};
use tessera::lifecycle::versions::{self, Approved};
use tessera::roles::client;

/// `tessera approve`.
#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    /// A job id, or an output name (`shot010/lighting`) followed by a version.
    target: String,
    /// The version (`v003`), after an output name.
    version: Option<String>,
    /// Who approves (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Why.
    #[arg(long)]
    note: Option<String>,
}

/// `tessera versions`.
#[derive(clap::Args)]
pub(crate) struct VersionsArgs {
    /// The output name (`shot010/lighting`).
    name: String,
    /// Print only the latest approved version's location (exit 1 if none is approved).
    #[arg(long)]
    approved: bool,
    /// Leave out unapproved versions (the default when TESSERA_HIDE_UNAPPROVED=1).
    #[arg(long)]
    hide_unapproved: bool,
    /// List every version, whatever TESSERA_HIDE_UNAPPROVED says.
    #[arg(long, conflicts_with = "hide_unapproved")]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `tessera resubmit`.
#[derive(clap::Args)]
pub(crate) struct ResubmitArgs {
    /// The output name (`shot010/lighting`).
    name: String,
    /// The version to render again (`v003`).
    version: String,
    /// The new job's id (default: a fresh one).
    #[arg(long)]
    id: Option<String>,
    /// Wait for the new job to end; exit 0 only if it is done.
    #[arg(long)]
    wait: bool,
}

pub(crate) async fn approve(common: &CommonArgs, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let deps = crate::connect(common).await?;
    let (name, number) =
        client::versions::resolve(&deps, &args.target, args.version.as_deref()).await?;
    let by = args
        .by
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let label = version::label(number);
    match versions::approve(&deps, &name, number, &by, args.note).await? {
        Approved::Now(a) => println!("{name} {label} approved by {}", a.by),
        Approved::Already(a) => println!(
            "{name} {label} was approved already, by {} at {}",
            a.by,
            date(a.at_ms)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(common: &CommonArgs, args: VersionsArgs) -> anyhow::Result<ExitCode> {
    let deps = crate::connect(common).await?;
    let mut listed = versions::list(&deps, &args.name).await?;
    if args.approved {
        let Some(latest) = version::latest_approved(&listed) else {
            eprintln!("{} has no approved version", args.name);
            return Ok(ExitCode::from(1));
        };
        match args.json {
            true => println!("{}", serde_json::to_string(latest)?),
            false => println!("{}", latest.location),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hide = args.hide_unapproved
        || (!args.all && std::env::var("TESSERA_HIDE_UNAPPROVED").is_ok_and(|v| v == "1"));
    if hide {
        listed.retain(|l| l.approval.is_some());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        println!(
            "{} has no versions{}",
            args.name,
            if hide { " approved" } else { "" }
        );
    }
    for l in &listed {
        println!("{}", line(l));
    }
    Ok(ExitCode::SUCCESS)
}

/// One version as `tessera versions` prints it.
fn line(l: &Listed) -> String {
    let approval = match &l.approval {
        Some(a) => format!("approved by {} at {}", a.by, date(a.at_ms)),
        None => "not approved".into(),
    };
    format!(
        "{}  {}  {:<10}  {}  job {}  {}",
        l.label,
        date(l.published_ms),
        l.standing.as_str(),
        approval,
        l.job,
        l.location
    )
}

/// Milliseconds since the epoch as a UTC time, `2026-12-03T05:31:00Z`.
fn date(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

pub(crate) async fn resubmit(common: &CommonArgs, args: ResubmitArgs) -> anyhow::Result<ExitCode> {
    let deps = crate::connect(common).await?;
    let number = version::parse_label(&args.version).map_err(anyhow::Error::msg)?;
    let id = client::versions::resubmit(&deps, &args.name, number, args.id).await?;
    if args.wait {
        eprintln!("submitted {id}; waiting");
        let code = crate::follow::watch(&deps, &id, crate::Out::Stderr, None).await?;
        println!("{id}");
        return Ok(code);
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
