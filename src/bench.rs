//! `efen bench`: end-to-end throughput, latency and peak memory of the real pipeline (decode to
//! store) against bare ONNX Runtime running the same model with the same threads and batch size
//! on already-preprocessed tensors, in one process, and the ratio of the two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};

use crate::config::Config;
use crate::infer::Inference;
use crate::pipeline::run_report::Quiet;
use crate::pipeline::stage_cpu::{self, CpuStage};
use crate::pipeline::{Engine, Status};
use crate::preprocess::{Canvas, Plan};

pub struct BenchSettings {
    /// The user's images instead of synthetic ones (read where they are; `cases` and the size are
    /// then what the folder holds).
    pub from: Option<PathBuf>,
    pub cases: usize,
    pub width: u32,
    pub height: u32,
    /// Keep the generated drop, outputs and store (printed at the end).
    pub keep: bool,
}

/// CPU time (user + system) the whole process has used so far: every thread, ONNX Runtime's too.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The process's peak resident memory so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A smooth synthetic image (compresses like a real one), distinct for every `i`.
fn synthetic(i: usize, width: u32, height: u32) -> RgbImage {
    let (cx, cy) = ((i as u32 * 37) % width, (i as u32 * 53) % height);
    let r2 = ((width.min(height) / 6).max(4) as i64).pow(2);
    RgbImage::from_fn(width, height, |x, y| {
        let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
        let shade = ((x + y + i as u32) % 64) as u8;
        if d2 < r2 { Rgb([200, 80 + shade / 2, 60]) } else { Rgb([120 + shade, 90, 80 + shade / 2]) }
    })
}

fn generate(dir: &Path, cases: usize, width: u32, height: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..cases {
        synthetic(i, width, height).save(dir.join(format!("bench-{i:05}.png")))?;
    }
    Ok(())
}

/// Up to 16 decoded images of `dir` (for the bare runs) and how many inputs it holds (ground-truth
/// masks are not inputs).
fn real_sample(dir: &Path, patterns: &[crate::ingest::GroundTruthPattern]) -> anyhow::Result<(Vec<RgbImage>, usize)> {
    let files =
        crate::ingest::discover(&[dir.to_path_buf()], patterns).map_err(|e| anyhow::anyhow!("cannot read {e}"))?;
    anyhow::ensure!(!files.is_empty(), "{} holds no files", dir.display());
    let mut sample = Vec::new();
    for candidate in files.iter().take(16) {
        let bytes = std::fs::read(&candidate.path)?;
        let image = crate::decode::decode(&bytes).map_err(|e| {
            anyhow::anyhow!("{}: {e} (bench --from takes PNG, JPEG, TIFF or BMP)", candidate.path.display())
        })?;
        sample.push(image.rgb);
    }
    Ok((sample, files.len()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Bare ONNX Runtime: `tiles` runs of preprocessed tensors in batches, timing only `run`.
/// Returns the time and the process's CPU time for `tiles` tiles (after one warm-up batch).
fn bare(
    mut inference: Inference,
    tensors: &[Vec<f32>],
    tiles: usize,
    batch: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let batches: Vec<Vec<&[f32]>> = tensors.chunks(batch).map(|c| c.iter().map(Vec::as_slice).collect()).collect();
    inference.run(&batches[0])?; // warm-up, as the pipeline's first batch also pays it
    let cpu_before = process_cpu();
    let (mut done, mut spent) = (0, Duration::ZERO);
    for batch in batches.iter().cycle() {
        if done >= tiles {
            break;
        }
        let started = Instant::now();
        inference.run(batch)?;
        spent += started.elapsed();
        done += batch.len();
    }
    // Scaled to `tiles`: the loop may run a batch past them.
    let scale = tiles as f64 / done as f64;
    Ok((spent.mul_f64(scale), (process_cpu() - cpu_before).mul_f64(scale)))
}

/// "decode 1.2, preprocess 0.3, …, rest 4.0 ms": the CPU stages' share of the CPU outside
/// inference, and the rest (ingest, the store, channels, the kernel's work on other threads).
fn by_stage(stages: &[Duration], outside_ms: f64, per_case: impl Fn(Duration) -> f64) -> String {
    let mut parts: Vec<String> = CpuStage::ALL
        .iter()
        .zip(stages)
        .map(|(stage, cpu)| format!("{} {:.2}", stage.name(), per_case(*cpu)))
        .collect();
    let staged: f64 = stages.iter().map(|cpu| per_case(*cpu)).sum();
    parts.push(format!("rest {:.2} ms", outside_ms - staged));
    parts.join(", ")
}

/// Runs the benchmark and returns its figures as (measure, value) rows.
pub async fn bench(
    mut config: Config,
    pipeline: Option<&Path>,
    settings: BenchSettings,
) -> anyhow::Result<Vec<(String, String)>> {
    let dir: PathBuf = std::env::temp_dir().join(format!("efen-bench-{}", std::process::id()));
    let drop = match &settings.from {
        Some(from) => from.clone(),
        None => {
            let drop = dir.join("drop");
            let (gen_dir, cases, width, height) = (drop.clone(), settings.cases, settings.width, settings.height);
            tokio::task::spawn_blocking(move || generate(&gen_dir, cases, width, height)).await??;
            drop
        }
    };
    config.paths.state_dir = dir.join("state");
    config.paths.out_dir = dir.join("out");
    if config.database.url.is_empty() || config.database.url.starts_with("sqlite:") {
        config.database.url = format!("sqlite://{}", dir.join("state/bench.db").display());
    }

    let mut engine = Engine::open(config.clone(), pipeline).await?;
    let card = engine.card().clone();
    let context = engine.context();
    let batch = config.engine.batch_size;

    // The same preprocessing as the pipeline, done up front for the bare runs.
    let (sample, cases) = match &settings.from {
        Some(from) => real_sample(from, engine.ground_truth_patterns())?,
        None => {
            let sample = (0..settings.cases.min(16)).map(|i| synthetic(i, settings.width, settings.height)).collect();
            (sample, settings.cases)
        }
    };
    let mut tensors = Vec::new();
    let mut tiles_per_case = 0;
    for image in sample {
        let plan = Plan::new(image.width(), image.height(), &card, context.fit, &context.tiling);
        tiles_per_case = plan.tiles.len();
        let (canvas, _) = Canvas::new(image, plan);
        for t in 0..canvas.plan.tiles.len().min(64) {
            tensors.push(canvas.tile(t, &card));
        }
    }
    let total_tiles = tiles_per_case * cases;
    let (session, provider, _) = crate::runtime::session(&config.runtime_settings(), engine.model())?;
    let inference = Inference::new(session, &card);
    let (bare_time, bare_cpu) =
        tokio::task::spawn_blocking(move || bare(inference, &tensors, total_tiles, batch)).await??;
    let bare_rate = cases as f64 / bare_time.as_secs_f64();

    let cpu_before = process_cpu();
    let stages_before = stage_cpu::totals();
    let (report, elapsed) = crate::pipeline::run_once(&mut engine, &[drop], std::sync::Arc::new(Quiet)).await?;
    let run_cpu = process_cpu() - cpu_before;
    let stages: Vec<Duration> =
        stage_cpu::totals().iter().zip(stages_before).map(|(after, before)| *after - before).collect();
    engine.close().await;
    let succeeded = report.count(Status::Succeeded);
    anyhow::ensure!(succeeded == cases, "only {succeeded} of {cases} cases succeeded: {}", report.counts());
    let rate = cases as f64 / elapsed;
    let per_case = |cpu: Duration| cpu.as_secs_f64() * 1e3 / cases.max(1) as f64;
    let outside = per_case(run_cpu) - per_case(bare_cpu);
    let mut latencies: Vec<f64> = report.rows.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);

    let settings_used = crate::runtime::thread_settings(&config.runtime_settings());
    let size = match &settings.from {
        Some(from) => format!("{cases} images from {}", from.display()),
        None => format!("{cases} × {}×{}", settings.width, settings.height),
    };
    let mut rows = vec![
        ("model", format!("{} ({})", card.name, &engine.model().sha256[..12])),
        ("provider, batch", format!("{provider}, batch {batch}")),
        ("threads", settings_used),
        ("cases", format!("{size} ({tiles_per_case} tile(s) each)")),
        ("bare ONNX Runtime", format!("{bare_rate:.2} cases/s ({:.1} tiles/s)", bare_rate * tiles_per_case as f64)),
        ("efen end to end (store on)", format!("{rate:.2} cases/s")),
        ("ratio end-to-end / bare", format!("{:.3}", rate / bare_rate)),
        (
            "CPU per case: end to end / bare inference",
            format!("{:.1} / {:.1} ms", per_case(run_cpu), per_case(bare_cpu)),
        ),
        (
            "CPU outside inference per case",
            format!("{outside:.1} ms ({:.0}% of the CPU)", 100.0 * outside / per_case(run_cpu).max(1e-9)),
        ),
        ("CPU outside inference by stage, per case", by_stage(&stages, outside, per_case)),
        (
            "latency p50 / p95 (all dropped at once)",
            format!("{:.0} / {:.0} ms", percentile(&latencies, 0.5), percentile(&latencies, 0.95)),
        ),
        ("peak resident memory", peak_rss_mib().map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "-".into())),
    ];
    if settings.keep {
        rows.push(("kept", dir.display().to_string()));
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
