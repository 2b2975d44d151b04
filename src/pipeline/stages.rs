//! The blocking work of a case, as two plain functions that the wiring runs on blocking threads:
//! [`prepare`] (decode → preprocess) before inference and [`finish`] (postprocess → evaluate →
//! emit) after it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::GrayImage;
use serde_json::json;

use super::case::{CaseMeta, Evaluation, Failure, InFlight, Outcome, Stage, Succeeded};
use crate::infer::InferError;
use crate::model::ModelCard;
use crate::pipeline::definition::OutputSettings;
use crate::preprocess::Fit;
use crate::{decode, metrics, output, postprocess, preprocess};

/// Everything the CPU stages need, shared by all cases of a run.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub card: ModelCard,
    pub model_sha256: String,
    pub pipeline: String,
    pub fit: Fit,
    pub threshold: f32,
    pub outputs: OutputSettings,
    pub out_dir: PathBuf,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Decode and preprocess. On failure the case is over and the outcome says why.
pub fn prepare(ctx: &StageContext, meta: CaseMeta, bytes: &[u8]) -> Result<(InFlight, Vec<f32>), Box<Outcome>> {
    let started = Instant::now();
    let decoded = match decode::decode(bytes) {
        Ok(decoded) => decoded,
        Err(e) => {
            return Err(Box::new(Outcome::failed(meta, Stage::Decode, e.to_string())));
        }
    };
    let decode_ms = ms(started.elapsed());
    let started = Instant::now();
    let tensor = preprocess::preprocess(&decoded.rgb, &ctx.card, ctx.fit);
    let mut in_flight = InFlight {
        meta,
        image: decoded.rgb,
        kind: decoded.kind,
        geometry: tensor.geometry,
        timings: Default::default(),
    };
    in_flight.timings.decode_ms = decode_ms;
    in_flight.timings.preprocess_ms = ms(started.elapsed());
    Ok((in_flight, tensor.data))
}

/// Postprocess, evaluate against ground truth when there is one, and write the outputs.
pub fn finish(
    ctx: &StageContext,
    case: InFlight,
    output: Result<Vec<f32>, InferError>,
    infer_time: Duration,
) -> Outcome {
    let InFlight { meta, image, kind, geometry, mut timings } = case;
    timings.infer_ms = ms(infer_time);
    let size = Some(image.dimensions());
    let end = |meta: CaseMeta, timings, result| Outcome { meta, kind: Some(kind.clone()), size, timings, result };
    let fail = |stage: Stage, message: String| Err(Failure { stage, message });

    let map = match output {
        Ok(map) => map,
        Err(e) => return end(meta, timings, fail(Stage::Infer, e.to_string())),
    };
    let started = Instant::now();
    let (w, h) = (ctx.card.input.width, ctx.card.input.height);
    let mask = postprocess::postprocess(&map, w, h, ctx.card.output.activation, &geometry, ctx.threshold);
    timings.postprocess_ms = ms(started.elapsed());

    let started = Instant::now();
    let truth = match meta.ground_truth.as_deref().map(load_ground_truth).transpose() {
        Ok(truth) => truth,
        Err(message) => return end(meta, timings, fail(Stage::Evaluate, message)),
    };
    let evaluation = match truth.as_ref().map(|t| metrics::confusion(&mask, t)).transpose() {
        Ok(counts) => counts.map(|counts| Evaluation { counts, scores: counts.scores() }),
        Err(mismatch) => {
            let gt = meta.ground_truth.as_deref().unwrap_or(Path::new("")).display().to_string();
            return end(meta, timings, fail(Stage::Evaluate, format!("{mismatch}: {gt}")));
        }
    };
    timings.evaluate_ms = ms(started.elapsed());

    let started = Instant::now();
    let dir = ctx.out_dir.join(&meta.case_id);
    let mut outputs =
        match output::write_images(&dir, &image, &mask, truth.as_ref(), ctx.outputs.mask, ctx.outputs.overlay) {
            Ok(paths) => paths,
            Err(e) => return end(meta, timings, fail(Stage::Emit, e.to_string())),
        };
    let foreground = mask.as_raw().iter().filter(|v| **v > 0).count() as f64 / mask.as_raw().len().max(1) as f64;
    timings.emit_ms = ms(started.elapsed());
    let summary = json!({
        "case_id": meta.case_id,
        "source_path": meta.original,
        "source_sha256": meta.sha256,
        "size_bytes": meta.size_bytes,
        "pipeline": ctx.pipeline,
        "model": { "name": ctx.card.name, "sha256": ctx.model_sha256 },
        "efen_version": env!("CARGO_PKG_VERSION"),
        "image": { "kind": kind, "width": image.width(), "height": image.height() },
        "status": "succeeded",
        "threshold": ctx.threshold,
        "foreground_fraction": foreground,
        "ground_truth": meta.ground_truth,
        "metrics": evaluation.map(|e| e.scores),
        "counts": evaluation.map(|e| json!({"tp": e.counts.tp, "fp": e.counts.fp, "fn": e.counts.fn_, "tn": e.counts.tn})),
        "timings_ms": timings,
        "outputs": { "mask": outputs.mask, "overlay": outputs.overlay },
    });
    match output::write_json(&dir, &summary) {
        Ok(path) => outputs.result = Some(path),
        Err(e) => return end(meta, timings, fail(Stage::Emit, e.to_string())),
    }
    timings.emit_ms = ms(started.elapsed());
    end(meta, timings, Ok(Succeeded { evaluation, outputs, foreground_fraction: foreground }))
}

/// Reads a ground-truth mask: foreground is any value above half the mask's maximum, so 0/1,
/// 0/255 and JPEG-compressed masks all read right.
fn load_ground_truth(path: &Path) -> Result<GrayImage, String> {
    let image = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot read ground truth {}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("cannot decode ground truth {}: {e}", path.display()))?;
    let mut gray = image.to_luma16();
    let max = gray.pixels().map(|p| p.0[0]).max().unwrap_or(0) as u32;
    let mut mask = GrayImage::new(gray.width(), gray.height());
    for (out, p) in mask.pixels_mut().zip(gray.pixels_mut()) {
        out.0[0] = if max > 0 && (p.0[0] as u32) * 2 > max { postprocess::FOREGROUND } else { 0 };
    }
    Ok(mask)
}
