//! The rows efen writes, as plain structs, and their INSERTs.

use sqlx::any::AnyArguments;
use sqlx::query::Query;

/// A run: one `efen run` or one `efen watch` session.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: String,
    pub command: String,
    pub pipeline: String,
    /// JSON snapshot of the pipeline definition as used.
    pub pipeline_settings: String,
    pub model_name: String,
    pub model_sha256: String,
}

/// A case as ingest knows it, before any work on it.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub case_id: String,
    pub run_id: String,
    pub pipeline: String,
    pub model_sha256: String,
    pub source_path: String,
    /// The case's identity hash: the file's SHA-256, or for a frame of a multi-frame file the hash
    /// of the file's hash and the frame number.
    pub source_sha256: String,
    /// SHA-256 of the input file's bytes.
    pub file_sha256: String,
    pub size_bytes: i64,
    pub ground_truth_path: Option<String>,
    /// The watcher holding it (`watch.worker`), or None for `efen run`.
    pub worker: Option<String>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: this run owns the case.
    New,
    /// An earlier claim never finished (a crash): this run owns it now.
    TakenOver,
    /// Claimed by someone else and not finished: this input is a duplicate of that case.
    Held { source_path: String },
    /// Already has a result.
    Recorded { status: String, source_path: String },
}

/// Where a case is in the ledger. Ranks only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    Claimed,
    Decoded,
    Inferred,
    Written,
    Recorded,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Claimed => "claimed",
            LedgerState::Decoded => "decoded",
            LedgerState::Inferred => "inferred",
            LedgerState::Written => "written",
            LedgerState::Recorded => "recorded",
        }
    }

    pub fn rank(self) -> i32 {
        self as i32 + 1
    }
}

/// A case's outcome, one row of `results`.
#[derive(Debug, Clone, Default)]
pub struct CaseRecord {
    pub case_id: String,
    pub run_id: String,
    pub status: String,
    pub error_stage: Option<String>,
    pub error_message: Option<String>,
    /// The message without the case's own paths: what the `failures` view groups by.
    pub error_reason: Option<String>,
    /// The stage error's type (its variant's name), for grouping and metrics.
    pub error_type: Option<String>,
    pub kind: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub decode_ms: Option<f64>,
    pub preprocess_ms: Option<f64>,
    pub infer_ms: Option<f64>,
    pub postprocess_ms: Option<f64>,
    pub evaluate_ms: Option<f64>,
    pub emit_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub mask_path: Option<String>,
    pub overlay_path: Option<String>,
    pub result_path: Option<String>,
    pub seg_path: Option<String>,
    pub has_ground_truth: bool,
    pub dsc: Option<f64>,
    pub iou: Option<f64>,
    pub miou: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub tp: Option<i64>,
    pub fp: Option<i64>,
    pub fn_: Option<i64>,
    pub tn: Option<i64>,
    /// The identity of a DICOM case, one row of `dicom_cases` (for a series case: its first slice).
    pub dicom: Option<DicomRecord>,
    /// Slices segmented in a series case (None for an image or one DICOM frame).
    pub n_frames: Option<i64>,
    /// Predicted volume in mL: foreground voxels × pixel spacing × slice spacing (series cases
    /// whose geometry gives all three).
    pub volume_ml: Option<f64>,
    /// The ground truth's volume in mL, likewise.
    pub truth_volume_ml: Option<f64>,
    /// A series case: one row of `dicom_series`, and its slices rows of `series_slices`.
    pub series: Option<SeriesRecord>,
    /// Sends queued with the result (a case that came in over DICOM goes back to the PACS).
    pub sends: Vec<super::NewSend>,
}

/// What the store keeps about a DICOM case (the patient ID already pseudonymised or withheld).
#[derive(Debug, Clone, Default)]
pub struct DicomRecord {
    pub sop_instance_uid: Option<String>,
    pub frame_number: i64,
    pub number_of_frames: i64,
    pub sop_class_uid: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub accession_number: Option<String>,
    pub patient_id: Option<String>,
    pub patient_id_form: String,
    pub transfer_syntax_uid: String,
    pub transfer_syntax: String,
    pub rows: i64,
    pub columns: i64,
    pub photometric_interpretation: String,
    pub pixel_spacing: Option<[f64; 2]>,
    pub decoder: String,
}

/// What the store keeps about the series (or one stack of it) that a series case is made of.
#[derive(Debug, Clone, Default)]
pub struct SeriesRecord {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: String,
    /// 1-based stack number within the series, and what sets the stack apart (None when the
    /// series is one stack).
    pub stack: i64,
    pub stack_reason: Option<String>,
    pub modality: Option<String>,
    /// Source instances (files) and slices (frames) in the stack.
    pub instances: i64,
    pub frames: i64,
    /// Typical distance between neighbouring slices along the normal, in mm.
    pub slice_spacing_mm: Option<f64>,
    /// Pixel Spacing (row, column) in mm.
    pub pixel_spacing: Option<[f64; 2]>,
    /// Image Orientation (Patient), six numbers.
    pub orientation: Option<[f64; 6]>,
    /// Geometry problems that did not stop the case (gap, irregular spacing, duplicates, tilt).
    pub warnings: Vec<String>,
    /// Every slice in spatial order.
    pub slices: Vec<SliceRecord>,
}

/// One slice of a series case: where it came from and what was found on it.
#[derive(Debug, Clone, Default)]
pub struct SliceRecord {
    /// 0-based place in the stack's spatial order.
    pub index: i64,
    pub sop_instance_uid: Option<String>,
    /// SHA-256 of the instance file: what finds the case of a file that went into a series.
    pub file_sha256: String,
    /// 1-based frame within its instance.
    pub frame_number: i64,
    /// Image Position (Patient) along the slice normal, in mm, when there is geometry.
    pub position_mm: Option<f64>,
    pub foreground_px: Option<i64>,
    /// Against ground truth, when the slice has some.
    pub tp: Option<i64>,
    pub fp: Option<i64>,
    pub fn_: Option<i64>,
    pub tn: Option<i64>,
    /// Why this slice was left out (it failed to decode); the case went on without it.
    pub error: Option<String>,
}

pub(super) fn insert_result(r: &CaseRecord) -> Query<'_, sqlx::Any, AnyArguments> {
    sqlx::query(
        "INSERT INTO results (case_id, run_id, status, error_stage, error_message,
             decode_ms, preprocess_ms, infer_ms, postprocess_ms, evaluate_ms, emit_ms, latency_ms,
             mask_path, overlay_path, result_path, has_ground_truth,
             dsc, iou, miou, \"precision\", recall, tp, fp, fn, tn, seg_path, error_reason,
             n_frames, volume_ml, truth_volume_ml, error_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)
         ON CONFLICT (case_id) DO NOTHING",
    )
    .bind(&r.case_id)
    .bind(&r.run_id)
    .bind(&r.status)
    .bind(&r.error_stage)
    .bind(&r.error_message)
    .bind(r.decode_ms)
    .bind(r.preprocess_ms)
    .bind(r.infer_ms)
    .bind(r.postprocess_ms)
    .bind(r.evaluate_ms)
    .bind(r.emit_ms)
    .bind(r.latency_ms)
    .bind(&r.mask_path)
    .bind(&r.overlay_path)
    .bind(&r.result_path)
    .bind(r.has_ground_truth)
    .bind(r.dsc)
    .bind(r.iou)
    .bind(r.miou)
    .bind(r.precision)
    .bind(r.recall)
    .bind(r.tp)
    .bind(r.fp)
    .bind(r.fn_)
    .bind(r.tn)
    .bind(&r.seg_path)
    .bind(&r.error_reason)
    .bind(r.n_frames)
    .bind(r.volume_ml)
    .bind(r.truth_volume_ml)
    .bind(&r.error_type)
}

pub(super) fn insert_dicom<'a>(case_id: &'a str, d: &'a DicomRecord) -> Query<'a, sqlx::Any, AnyArguments> {
    sqlx::query(
        "INSERT INTO dicom_cases (case_id, sop_instance_uid, frame_number, number_of_frames, sop_class_uid,
             study_instance_uid, series_instance_uid, modality, accession_number, patient_id, patient_id_form,
             transfer_syntax_uid, transfer_syntax, image_rows, image_columns, photometric_interpretation,
             pixel_spacing_row_mm, pixel_spacing_column_mm, decoder)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (case_id) DO NOTHING",
    )
    .bind(case_id)
    .bind(&d.sop_instance_uid)
    .bind(d.frame_number)
    .bind(d.number_of_frames)
    .bind(&d.sop_class_uid)
    .bind(&d.study_instance_uid)
    .bind(&d.series_instance_uid)
    .bind(&d.modality)
    .bind(&d.accession_number)
    .bind(&d.patient_id)
    .bind(&d.patient_id_form)
    .bind(&d.transfer_syntax_uid)
    .bind(&d.transfer_syntax)
    .bind(d.rows)
    .bind(d.columns)
    .bind(&d.photometric_interpretation)
    .bind(d.pixel_spacing.map(|s| s[0]))
    .bind(d.pixel_spacing.map(|s| s[1]))
    .bind(&d.decoder)
}

pub(super) fn insert_series<'a>(case_id: &'a str, s: &'a SeriesRecord) -> Query<'a, sqlx::Any, AnyArguments> {
    sqlx::query(
        "INSERT INTO dicom_series (case_id, study_instance_uid, series_instance_uid, stack, stack_reason, modality,
             instances, frames, slice_spacing_mm, pixel_spacing_row_mm, pixel_spacing_column_mm, orientation,
             geometry_warnings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (case_id) DO NOTHING",
    )
    .bind(case_id)
    .bind(&s.study_instance_uid)
    .bind(&s.series_instance_uid)
    .bind(s.stack)
    .bind(&s.stack_reason)
    .bind(&s.modality)
    .bind(s.instances)
    .bind(s.frames)
    .bind(s.slice_spacing_mm)
    .bind(s.pixel_spacing.map(|p| p[0]))
    .bind(s.pixel_spacing.map(|p| p[1]))
    .bind(s.orientation.map(|o| orientation_text(&o)))
    .bind(geometry_warnings_text(&s.warnings))
}

/// Slices per INSERT: 12 values a row keeps a chunk at 1,200 bound values, far below SQLite's
/// 32,766 and PostgreSQL's 65,535, and a 600-slice series takes 6 round trips instead of 600.
pub(super) const SLICES_PER_INSERT: usize = 100;

/// One multi-row INSERT for a chunk of a series' slices (at most [`SLICES_PER_INSERT`]).
pub(super) fn insert_slices<'a>(case_id: &'a str, slices: &'a [SliceRecord]) -> Query<'a, sqlx::Any, AnyArguments> {
    const COLUMNS: usize = 12;
    let rows: Vec<String> = (0..slices.len())
        .map(|row| {
            let values: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", row * COLUMNS + c)).collect();
            format!("({})", values.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO series_slices (case_id, slice_index, sop_instance_uid, file_sha256, frame_number, position_mm,
             foreground_px, tp, fp, fn, tn, error)
         VALUES {}
         ON CONFLICT (case_id, slice_index) DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for slice in slices {
        query = query
            .bind(case_id)
            .bind(slice.index)
            .bind(&slice.sop_instance_uid)
            .bind(&slice.file_sha256)
            .bind(slice.frame_number)
            .bind(slice.position_mm)
            .bind(slice.foreground_px)
            .bind(slice.tp)
            .bind(slice.fp)
            .bind(slice.fn_)
            .bind(slice.tn)
            .bind(&slice.error);
    }
    query
}

/// Image Orientation (Patient) as DICOM writes a multi-valued decimal string: `\`-separated.
fn orientation_text(orientation: &[f64; 6]) -> String {
    orientation.iter().map(f64::to_string).collect::<Vec<_>>().join("\\")
}

/// One warning per line, or NULL when there are none.
fn geometry_warnings_text(warnings: &[String]) -> Option<String> {
    (!warnings.is_empty()).then(|| warnings.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_is_six_numbers_joined_by_backslashes() {
        assert_eq!(orientation_text(&[1.0, 0.0, 0.0, 0.0, 1.0, -0.5]), "1\\0\\0\\0\\1\\-0.5");
    }

    #[test]
    fn geometry_warnings_are_one_per_line_and_null_when_none() {
        assert_eq!(geometry_warnings_text(&[]), None);
        let warnings = ["gap of 2 slices".to_string(), "tilted 3°".to_string()];
        assert_eq!(geometry_warnings_text(&warnings).as_deref(), Some("gap of 2 slices\ntilted 3°"));
    }
}
