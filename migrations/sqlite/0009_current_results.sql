-- A series that grows after its SEG went out gets a newer case; the earlier stays for audit.
-- case_results says which result stands: `is_current` is 1 for every case that is not a DICOM series
-- case, and for the latest succeeded case of each series stack (series, stack, pipeline, model);
-- 0 for the ones a newer case superseded and for failed series cases.
-- Keep in step with the other backend's 0009_current_results.sql.

DROP VIEW case_results;

CREATE VIEW case_results AS
SELECT c.case_id, r.run_id, c.pipeline, c.model_sha256, c.source_path, c.source_sha256,
       r.status, r.error_stage, r.error_message, r.dsc, r.iou, r.miou, r."precision", r.recall,
       r.has_ground_truth, r.latency_ms, r.created_at, r.n_frames, r.volume_ml, r.truth_volume_ml,
       r.error_type,
       CASE
           WHEN s.case_id IS NULL THEN 1
           WHEN r.status = 'succeeded' AND ROW_NUMBER() OVER (
               PARTITION BY s.series_instance_uid, s.stack, c.pipeline, c.model_sha256, r.status
               ORDER BY r.created_at DESC, c.case_id DESC) = 1 THEN 1
           ELSE 0
       END AS is_current
FROM cases c
JOIN results r ON r.case_id = c.case_id
LEFT JOIN dicom_series s ON s.case_id = c.case_id;
