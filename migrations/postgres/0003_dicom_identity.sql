-- DICOM identity in the store: one dicom_cases row per DICOM case (each frame of a multi-frame
-- file is a case), the input file's own SHA-256 on every case (a frame's source_sha256 is the
-- hash of the file's hash and the frame number), and where the DICOM SEG was written.
-- Keep in step with migrations/sqlite/0003_dicom_identity.sql.

-- SHA-256 of the input file's bytes. For an image it equals source_sha256; rows from before
-- this migration have NULL.
ALTER TABLE cases ADD COLUMN file_sha256 TEXT;
CREATE INDEX cases_file_sha256 ON cases (file_sha256);

-- seg.dcm for a DICOM case with findings (or an empty SEG when the pipeline asks for one).
ALTER TABLE results ADD COLUMN seg_path TEXT;

CREATE TABLE dicom_cases (
    case_id                    TEXT PRIMARY KEY REFERENCES cases (case_id),
    sop_instance_uid           TEXT,
    frame_number               INTEGER NOT NULL,     -- 1-based, as DICOM counts frames
    number_of_frames           INTEGER NOT NULL,
    sop_class_uid              TEXT,
    study_instance_uid         TEXT,
    series_instance_uid        TEXT,
    modality                   TEXT,
    accession_number           TEXT,
    -- HMAC-SHA256 of the Patient ID under dicom.pseudonym_key (patient_id_form 'hmac-sha256'),
    -- the raw value only with dicom.raw_patient_id = true ('raw'), else NULL ('withheld').
    patient_id                 TEXT,
    patient_id_form            TEXT NOT NULL,
    transfer_syntax_uid        TEXT NOT NULL,
    transfer_syntax            TEXT NOT NULL,
    image_rows                 INTEGER NOT NULL,
    image_columns              INTEGER NOT NULL,
    photometric_interpretation TEXT NOT NULL,
    pixel_spacing_row_mm       DOUBLE PRECISION,
    pixel_spacing_column_mm    DOUBLE PRECISION,
    decoder                    TEXT NOT NULL,
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A case is found by its instance and frame, as PACS and viewers name it.
CREATE INDEX dicom_cases_instance ON dicom_cases (sop_instance_uid, frame_number);
CREATE INDEX dicom_cases_series ON dicom_cases (series_instance_uid);
CREATE INDEX dicom_cases_study ON dicom_cases (study_instance_uid);
