//! The command line, efen's face on the terminal: parses flags, runs the command (the drivers are
//! in `pipeline`), shows what came of it, and maps the result to an exit code (0 all good, 1 some
//! inputs failed, 2 usage or configuration error).

mod progress;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::pipeline::Status;
use progress::Progress;

/// efen: segmentation of medical images from a drop folder, with an SQL audit trail.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: config/default.toml in the current folder or a parent).
    #[arg(long, global = true, env = "EFEN_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines on stderr as text, or as one JSON object per line (with the case id, run id and
    /// failing stage as fields) for log shippers.
    #[arg(long, global = true, env = "EFEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// Also serve HTTP on this host:port (overrides http.listen): /healthz, /readyz, /metrics,
        /// cases under /v1 (POST /v1/cases takes a file into DIR/http/; see /v1/openapi.json) and
        /// DICOMweb STOW-RS at /dicomweb/studies.
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
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
    /// Measure end-to-end throughput, latency, CPU per case and peak memory against bare ONNX
    /// Runtime on the same model, threads and batch size (synthetic images, or --from your own, with
    /// a temporary output folder and store).
    Bench {
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Number of cases.
        #[arg(long, default_value_t = 200)]
        cases: usize,
        /// Your own images (PNG, JPEG, TIFF, BMP) instead of synthetic ones, read where they are.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Image size, WIDTHxHEIGHT.
        #[arg(long, default_value = "384x288", value_parser = parse_size)]
        size: (u32, u32),
        /// Keep the generated drop, outputs and store.
        #[arg(long)]
        keep: bool,
    },
    /// Report from the store: run summaries, the paper table, failures; as a terminal table, CSV,
    /// Parquet, JSON or one self-contained HTML file.
    Report(report::ReportArgs),
    /// Check the ONNX Runtime library, execution providers, the store and the folders, and what
    /// `efen watch` opens: the HTTP and DICOM ports, TLS files, the token, the destinations.
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
    let log_format = cli.log_format;
    init_tracing(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain, each cause once (many efen messages already name theirs).
            let message = crate::error::chain(e.as_ref());
            match log_format {
                LogFormat::Text => eprintln!("error: {message}"),
                LogFormat::Json => tracing::error!("{message}"),
            }
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("EFEN_LOG").unwrap_or_else(|_| "info,ort=warn,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        // One object per line; the event's fields at the top level, the run's in "span".
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Fatal> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run { pipeline, out, paths } => {
            if let Some(out) = out {
                config.paths.out_dir = std::path::absolute(out)?;
            }
            let (report, elapsed) =
                crate::pipeline::run(config, pipeline.as_deref(), &paths, Arc::new(Progress::new(false))).await?;
            print!("{}", progress::render(&report, elapsed));
            Ok(if report.count(Status::Failed) > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Watch { pipeline, out, listen, http, dir } => {
            if let Some(out) = out {
                config.paths.out_dir = std::path::absolute(out)?;
            }
            if let Some(listen) = listen {
                config.node.listen = listen;
            }
            if let Some(http) = http {
                config.http.listen = http;
                if let Some(problem) = config.http.problems().into_iter().next() {
                    anyhow::bail!("--http: {problem}");
                }
            }
            let report =
                crate::pipeline::watch(config, pipeline.as_deref(), dir, Arc::new(Progress::new(true))).await?;
            tracing::info!("stopped: {}", report.counts());
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command: DbCommand::Migrate } => {
            let url = config.database_url();
            crate::store::Store::open(&url, 1).await?;
            println!("store {} is up to date", crate::store::redact_url(&url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { command: ModelCommand::Inspect { model } } => crate::doctor::inspect_model(&config, &model),
        Command::Bench { pipeline, cases, from, size: (width, height), keep } => {
            let from = from.map(std::path::absolute).transpose()?;
            let settings = crate::bench::BenchSettings { from, cases, width, height, keep };
            let rows = crate::bench::bench(config, pipeline.as_deref(), settings).await?;
            println!("{}", progress::two_columns(["measure", "value"], rows));
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            crate::report::run(&config.database_url(), &args.request()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { pipeline } => crate::doctor::doctor(&config, pipeline.as_deref()).await,
    }
}
