-- A failed case keeps its stage error's type (the variant's name, e.g. unsupported_transfer_syntax,
-- read_ground_truth, store_unavailable) beside its stage, message and reason: grouping and metrics
-- use the type, never the text. Rows recorded before this migration have no error_type.
-- case_results and failures show it. Keep in step with the other backend's 0008_error_types.sql.

ALTER TABLE results ADD COLUMN error_type TEXT;

DROP VIEW case_results;

CREATE VIEW case_results AS
SELECT c.case_id, r.run_id, c.pipeline, c.model_sha256, c.source_path, c.source_sha256,
       r.status, r.error_stage, r.error_message, r.dsc, r.iou, r.miou, r."precision", r.recall,
       r.has_ground_truth, r.latency_ms, r.created_at, r.n_frames, r.volume_ml, r.truth_volume_ml,
       r.error_type
FROM cases c
JOIN results r ON r.case_id = c.case_id;

DROP VIEW failures;

CREATE VIEW failures AS
WITH failed AS (
    SELECT r.error_stage, r.error_type, COALESCE(r.error_reason, r.error_message) AS reason, r.case_id, r.run_id,
           c.source_path, r.created_at
    FROM results r
    JOIN cases c ON c.case_id = r.case_id
    WHERE r.status = 'failed'
), ranked AS (
    SELECT error_stage, error_type, reason, case_id, run_id, source_path, created_at,
           ROW_NUMBER() OVER (PARTITION BY error_stage, reason ORDER BY created_at DESC, case_id DESC) AS recency,
           COUNT(*) OVER (PARTITION BY error_stage, reason) AS cases,
           MIN(created_at) OVER (PARTITION BY error_stage, reason) AS first_seen
    FROM failed
)
SELECT error_stage AS stage, reason, cases, first_seen, created_at AS last_seen,
       case_id AS latest_case_id, source_path AS latest_source_path, run_id AS latest_run_id,
       error_type
FROM ranked
WHERE recency = 1;
