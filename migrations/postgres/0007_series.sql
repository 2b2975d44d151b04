-- DICOM series: a series (or one stack of it) is one case, with one result. results gains the
-- frame count and the volumes, NULL for images and single DICOM frames; dicom_series keeps the
-- series' identity and geometry, series_slices what came from and was found on each slice.
-- case_results and provenance gain the new result columns; series_summary lists the series cases.
-- Keep in step with migrations/sqlite/0007_series.sql.

-- Slices segmented; predicted and ground-truth volume in mL (foreground voxels × pixel spacing ×
-- slice spacing), NULL when the geometry lacks one of the three.
ALTER TABLE results ADD COLUMN n_frames INTEGER;
ALTER TABLE results ADD COLUMN volume_ml DOUBLE PRECISION;
ALTER TABLE results ADD COLUMN truth_volume_ml DOUBLE PRECISION;

CREATE TABLE dicom_series (
    case_id                 TEXT PRIMARY KEY REFERENCES cases (case_id),
    study_instance_uid      TEXT,
    series_instance_uid     TEXT NOT NULL,
    stack                   INTEGER NOT NULL,     -- 1-based stack within the series
    stack_reason            TEXT,                 -- what sets the stack apart; NULL for a single stack
    modality                TEXT,
    instances               INTEGER NOT NULL,     -- source files
    frames                  INTEGER NOT NULL,     -- slices in the stack
    slice_spacing_mm        DOUBLE PRECISION,
    pixel_spacing_row_mm    DOUBLE PRECISION,
    pixel_spacing_column_mm DOUBLE PRECISION,
    orientation             TEXT,                 -- Image Orientation (Patient): six numbers joined by '\'
    geometry_warnings       TEXT,                 -- one warning per line; NULL when none
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dicom_series_series ON dicom_series (series_instance_uid);

-- One row per slice, in the stack's spatial order (slice_index from 0).
CREATE TABLE series_slices (
    case_id          TEXT NOT NULL REFERENCES dicom_series (case_id),
    slice_index      INTEGER NOT NULL,
    sop_instance_uid TEXT,
    file_sha256      TEXT,                        -- SHA-256 of the instance file: finds a file's case
    frame_number     INTEGER NOT NULL,            -- 1-based frame within its instance
    position_mm      DOUBLE PRECISION,            -- along the slice normal
    foreground_px    BIGINT,
    tp               BIGINT,
    fp               BIGINT,
    fn               BIGINT,
    tn               BIGINT,
    error            TEXT,                        -- why the slice was left out; NULL when it was used
    PRIMARY KEY (case_id, slice_index)
);
-- Which series case an instance went into.
CREATE INDEX series_slices_instance ON series_slices (sop_instance_uid);
CREATE INDEX series_slices_file ON series_slices (file_sha256);

DROP VIEW provenance;
DROP VIEW case_results;

CREATE VIEW case_results AS
SELECT c.case_id, r.run_id, c.pipeline, c.model_sha256, c.source_path, c.source_sha256,
       r.status, r.error_stage, r.error_message, r.dsc, r.iou, r.miou, r."precision", r.recall,
       r.has_ground_truth, r.latency_ms, r.created_at, r.n_frames, r.volume_ml, r.truth_volume_ml
FROM cases c
JOIN results r ON r.case_id = c.case_id;

CREATE VIEW provenance AS
SELECT r.case_id, r.run_id, r.status, c.source_path, c.source_sha256, c.file_sha256, c.size_bytes,
       c.ground_truth_path, c.pipeline, ru.pipeline_settings, ru.model_name, c.model_sha256, ru.efen_version,
       ru.host, d.sop_instance_uid, d.frame_number, r.mask_path, r.overlay_path, r.seg_path, r.result_path,
       r.dsc, r.created_at AS recorded_at, r.n_frames, r.volume_ml, r.truth_volume_ml
FROM results r
JOIN cases c ON c.case_id = r.case_id
JOIN runs ru ON ru.run_id = r.run_id
LEFT JOIN dicom_cases d ON d.case_id = r.case_id;

CREATE VIEW series_summary AS
SELECT s.case_id, r.run_id, s.study_instance_uid, s.series_instance_uid, s.stack, s.modality, s.frames,
       r.status, r.volume_ml, r.truth_volume_ml, r.dsc, s.geometry_warnings AS warnings,
       r.created_at AS recorded_at
FROM dicom_series s
JOIN results r ON r.case_id = s.case_id;
