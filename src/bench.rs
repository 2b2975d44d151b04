//! `efen bench`: end-to-end throughput, latency and peak memory of the real pipeline (decode to
//! store) against bare ONNX Runtime running the same model with the same threads and batch size
//! on already-preprocessed tensors, in one process, and the ratio of the two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};

use crate::config::Config;
use crate::infer::Inference;
use crate::pipeline::run_report::Quiet;
use crate::pipeline::{Engine, Status};
use crate::preprocess::{Canvas, Plan};

pub struct BenchSettings {
    pub cases: usize,
    pub width: u32,
    pub height: u32,
    /// Keep the generated drop, outputs and store (printed at the end).
    pub keep: bool,
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Bare ONNX Runtime: `tiles` runs of preprocessed tensors in batches, timing only `run`.
fn bare(mut inference: Inference, tensors: &[Vec<f32>], tiles: usize, batch: usize) -> anyhow::Result<Duration> {
    let batches: Vec<Vec<&[f32]>> = tensors.chunks(batch).map(|c| c.iter().map(Vec::as_slice).collect()).collect();
    inference.run(&batches[0])?; // warm-up, as the pipeline's first batch also pays it
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
    Ok(spent.mul_f64(tiles as f64 / done as f64))
}

/// Runs the benchmark and returns its figures as (measure, value) rows.
pub async fn bench(
    mut config: Config,
    pipeline: Option<&Path>,
    settings: BenchSettings,
) -> anyhow::Result<Vec<(String, String)>> {
    let dir: PathBuf = std::env::temp_dir().join(format!("efen-bench-{}", std::process::id()));
    let drop = dir.join("drop");
    let (gen_dir, cases, width, height) = (drop.clone(), settings.cases, settings.width, settings.height);
    tokio::task::spawn_blocking(move || generate(&gen_dir, cases, width, height)).await??;
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
    let sample: Vec<RgbImage> =
        (0..settings.cases.min(16)).map(|i| synthetic(i, settings.width, settings.height)).collect();
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
    let total_tiles = tiles_per_case * settings.cases;
    let (session, provider, _) = crate::runtime::session(&config, engine.model())?;
    let inference = Inference::new(session, &card);
    let bare_time = tokio::task::spawn_blocking(move || bare(inference, &tensors, total_tiles, batch)).await??;
    let bare_rate = settings.cases as f64 / bare_time.as_secs_f64();

    let (report, elapsed) = crate::pipeline::run_once(&mut engine, &[drop], std::sync::Arc::new(Quiet)).await?;
    engine.close().await;
    let succeeded = report.count(Status::Succeeded);
    anyhow::ensure!(
        succeeded == settings.cases,
        "only {succeeded} of {} cases succeeded: {}",
        settings.cases,
        report.counts()
    );
    let rate = settings.cases as f64 / elapsed;
    let mut latencies: Vec<f64> = report.rows.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);

    let threads = match config.runtime.intra_threads {
        0 => "one per core".to_string(),
        n => n.to_string(),
    };
    let mut rows = vec![
        ("model", format!("{} ({})", card.name, &engine.model().sha256[..12])),
        ("provider, threads, batch", format!("{provider}, intra {threads}, batch {batch}")),
        (
            "cases × size",
            format!("{} × {}×{} ({tiles_per_case} tile(s) each)", settings.cases, settings.width, settings.height),
        ),
        ("bare ONNX Runtime", format!("{bare_rate:.2} cases/s ({:.1} tiles/s)", bare_rate * tiles_per_case as f64)),
        ("efen end to end (store on)", format!("{rate:.2} cases/s")),
        ("ratio end-to-end / bare", format!("{:.3}", rate / bare_rate)),
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
