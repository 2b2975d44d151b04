//! The command line: parses flags, runs the command, maps the result to an exit code
//! (0 all good, 1 some inputs failed, 2 usage or configuration error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::ingest::disposition::Transfer;
use crate::ingest::watch::DropFolder;
use crate::pipeline::summary::{Progress, Status};
use crate::pipeline::{Admission, Engine, Policy, SpawnOptions};
use tokio_util::sync::CancellationToken;

/// efen: segmentation of medical images from a drop folder, with an SQL audit trail.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: config/default.toml in the current folder or a parent).
    #[arg(long, global = true, env = "EFEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process files and folders once, then exit (0: all succeeded, 1: some failed, 2: setup error).
    /// Inputs are read where they are and never moved; a copy of each failed input goes to
    /// <state>/failed/ beside its .reason.txt.
    Run {
        /// Pipeline file (default: paths.default_pipeline).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Output folder (default: paths.out_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Image files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Watch a drop folder until SIGINT or SIGTERM, then finish the cases in flight and exit 0.
    /// Each settled file is moved into <state>/claimed/, then to done/ or failed/.
    Watch {
        #[arg(long)]
        pipeline: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also be a DICOM node: a Storage SCP on this host:port (overrides node.listen).
        #[arg(long)]
        listen: Option<String>,
        /// The drop folder.
        dir: PathBuf,
    },
    /// Database commands.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Model commands.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Measure end-to-end throughput, latency and peak memory against bare ONNX Runtime on the same
    /// model, threads and batch size (synthetic images in a temporary folder and store).
    Bench {
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Number of cases.
        #[arg(long, default_value_t = 200)]
        cases: usize,
        /// Image size, WIDTHxHEIGHT.
        #[arg(long, default_value = "384x288", value_parser = parse_size)]
        size: (u32, u32),
        /// Keep the generated drop, outputs and store.
        #[arg(long)]
        keep: bool,
    },
    /// Report from the store: run summaries, the paper table, failures; as a terminal table, CSV,
    /// Parquet, JSON or one self-contained HTML file.
    Report(crate::report::ReportArgs),
    /// Check the ONNX Runtime library, execution providers, the store and the folders.
    Doctor {
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or update the store's tables and views.
    Migrate,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Print a model's card, its checksum and its inputs and outputs as ONNX Runtime sees them.
    Inspect {
        /// The .onnx file (its .card.json must be beside it).
        model: PathBuf,
    },
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once('x').ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let parse =
        |v: &str| v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{v:?} is not a positive size"));
    Ok((parse(w)?, parse(h)?))
}

/// A failure before any input was looked at: exit code 2.
type Fatal = anyhow::Error;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Every efen error message already names its cause; print the outermost one.
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("EFEN_LOG").unwrap_or_else(|_| "info,ort=warn,sqlx=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Fatal> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run { pipeline, out, paths } => {
            if let Some(out) = out {
                config.paths.out_dir = std::path::absolute(out)?;
            }
            run(config, pipeline, paths).await
        }
        Command::Watch { pipeline, out, listen, dir } => {
            if let Some(out) = out {
                config.paths.out_dir = std::path::absolute(out)?;
            }
            if let Some(listen) = listen {
                config.node.listen = listen;
            }
            watch(config, pipeline, dir).await
        }
        Command::Db { command: DbCommand::Migrate } => {
            let url = config.database_url();
            crate::store::Store::open(&url, 1).await?;
            println!("store {} is up to date", crate::store::redact_url(&url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { command: ModelCommand::Inspect { model } } => crate::doctor::inspect_model(&config, &model),
        Command::Bench { pipeline, cases, size: (width, height), keep } => {
            let settings = crate::bench::BenchSettings { cases, width, height, keep };
            crate::bench::bench(config, pipeline.as_deref(), settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => crate::report::run(config, args).await,
        Command::Doctor { pipeline } => crate::doctor::doctor(&config, pipeline.as_deref()).await,
    }
}

async fn run(config: Config, pipeline: Option<PathBuf>, paths: Vec<PathBuf>) -> Result<ExitCode, Fatal> {
    let mut engine = Engine::open(config, pipeline.as_deref()).await?;
    let (report, elapsed) = crate::pipeline::run_once(&mut engine, &paths, true).await?;
    engine.store.close().await;
    print!("{}", report.render(elapsed));
    Ok(if report.count(Status::Failed) > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// How long after SIGTERM the drain keeps waiting for an unavailable database. What is not
/// recorded by then stays claimed and is redone on the next start.
const STORE_GRACE: Duration = Duration::from_secs(30);
/// Attempts at admitting one claimed file when the store fails for other reasons than an outage.
const ADMIT_ATTEMPTS: u32 = 5;

async fn watch(config: Config, pipeline: Option<PathBuf>, dir: PathBuf) -> Result<ExitCode, Fatal> {
    if !dir.is_dir() {
        anyhow::bail!("drop folder {} does not exist or is not a folder", dir.display());
    }
    let dir = std::fs::canonicalize(&dir)?;
    // Signals first: a SIGTERM while the model loads still ends in an orderly exit 0.
    let shutdown = crate::shutdown::on_signal();
    let mut engine = Engine::open(config, pipeline.as_deref()).await?;
    let worker = engine.config.worker();
    let claimed_root = engine.config.state_dir().join("claimed");
    let folder = DropFolder {
        dir: dir.clone(),
        claimed_dir: claimed_root.join(&worker),
        worker: worker.clone(),
        patterns: engine.patterns.clone(),
        settings: engine.config.watch.clone(),
    };
    let _lock = folder.lock()?;
    let run_id = engine.start_run("watch").await?;
    let give_up = CancellationToken::new();
    tokio::spawn({
        let (shutdown, give_up) = (shutdown.clone(), give_up.clone());
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(STORE_GRACE).await;
            give_up.cancel();
        }
    });
    let options = SpawnOptions {
        transfer: Transfer::Move,
        progress: Progress::new(None),
        give_up: give_up.clone(),
        claimed_root: Some(folder.claimed_dir.clone()),
    };
    let (inlet, report) = engine.spawn(&run_id, options);
    let mut admission = Admission::new(&engine, &inlet, &run_id, Some(worker.clone()), give_up);

    // First what an earlier stop of this worker left half done.
    let orphans = folder.orphans();
    if !orphans.is_empty() {
        tracing::info!(worker = %worker, "redoing {} files claimed before the last stop", orphans.len());
    }
    let recovery = Policy { takeover: true, record_same_path: false };
    for orphan in orphans {
        if let Err(e) = admission.admit(orphan.candidate, orphan.claimed, recovery).await {
            tracing::error!("cannot admit a claimed file; it stays claimed for the next start: {e}");
        }
    }

    // The DICOM node feeds the same drop folder, so everything below applies to what it receives.
    let node = if engine.config.node.enabled() {
        let rules = engine.definition.select.clone();
        Some(crate::node::start(&engine.config, &engine.store, &dir, rules, shutdown.clone()).await?)
    } else {
        None
    };

    let (claimed_tx, mut claimed_rx) = tokio::sync::mpsc::channel(1);
    let watcher = tokio::spawn(folder.run(claimed_tx, shutdown.clone()));
    tracing::info!(dir = %dir.display(), worker = %worker, "watching; SIGINT or SIGTERM to stop");
    let policy = Policy { takeover: false, record_same_path: true };
    while let Some(claimed) = claimed_rx.recv().await {
        // A store error that is not a connection problem is retried a few times, then the file
        // stays claimed and is redone on the next start.
        for attempt in 1..=ADMIT_ATTEMPTS {
            match admission.admit(claimed.candidate.clone(), claimed.claimed.clone(), policy).await {
                Ok(()) => break,
                Err(e) if attempt < ADMIT_ATTEMPTS && !shutdown.is_cancelled() => {
                    tracing::warn!(file = %claimed.candidate.path.display(), attempt, "cannot admit, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(file = %claimed.candidate.path.display(), "cannot admit; it stays claimed for the next start: {e}");
                    break;
                }
            }
        }
    }
    watcher.await??;
    if let Some(node) = node {
        node.join_all().await;
    }
    tracing::info!("stopping: finishing the cases in flight");
    drop(admission);
    drop(inlet);
    let report = report.await?;
    let summary = report.counts();
    if let Err(e) = engine.store.finish_run(&run_id, &summary).await {
        tracing::warn!("cannot record the end of the run: {e}");
    }
    engine.store.close().await;
    tracing::info!("stopped: {summary}");
    Ok(ExitCode::SUCCESS)
}
