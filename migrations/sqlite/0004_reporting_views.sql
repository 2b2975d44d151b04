-- Reporting views: provenance, run_summary, daily_summary, model_versions and failures.
-- Keep in step with migrations/postgres/0004_reporting_views.sql: same views, same columns, same
-- definitions. Only the time arithmetic differs (ISO-8601 UTC text here, TIMESTAMPTZ in PostgreSQL).
--
-- Definitions shared by both backends:
-- - Metrics (DSC, IoU, precision, recall) are over succeeded cases with ground truth.
-- - Median and percentiles are nearest-rank: the p-th percentile of n values is the k-th smallest,
--   k = ceil(p·n/100), computed in integers as (p·n + 99) / 100. The median is the 50th.
-- - Latency percentiles are over succeeded cases.
-- - elapsed_s = seconds from the run's start to its last result, to the millisecond;
--   throughput_per_s = succeeded cases / elapsed_s.
-- - Days are UTC calendar days of the result's time, as text YYYY-MM-DD.

-- Every result traced to its input bytes (source_sha256; for a DICOM frame, file_sha256 is the
-- file's), model, pipeline settings and efen version; DICOM cases also to their instance and frame.
CREATE VIEW provenance AS
SELECT r.case_id, r.run_id, r.status, c.source_path, c.source_sha256, c.file_sha256, c.size_bytes,
       c.ground_truth_path, c.pipeline, ru.pipeline_settings, ru.model_name, c.model_sha256, ru.efen_version,
       ru.host, d.sop_instance_uid, d.frame_number, r.mask_path, r.overlay_path, r.seg_path, r.result_path,
       r.dsc, r.created_at AS recorded_at
FROM results r
JOIN cases c ON c.case_id = r.case_id
JOIN runs ru ON ru.run_id = r.run_id
LEFT JOIN dicom_cases d ON d.case_id = r.case_id;

CREATE VIEW run_summary AS
WITH scored AS (
    SELECT run_id, dsc, iou,
           ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY dsc) AS dsc_rank,
           ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY iou) AS iou_rank,
           COUNT(*) OVER (PARTITION BY run_id) AS n
    FROM results
    WHERE status = 'succeeded' AND has_ground_truth AND dsc IS NOT NULL AND iou IS NOT NULL
), medians AS (
    SELECT run_id,
           MIN(CASE WHEN dsc_rank = (50 * n + 99) / 100 THEN dsc END) AS median_dsc,
           MIN(CASE WHEN iou_rank = (50 * n + 99) / 100 THEN iou END) AS median_iou
    FROM scored GROUP BY run_id
), timed AS (
    SELECT run_id, latency_ms,
           ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY latency_ms) AS rank,
           COUNT(*) OVER (PARTITION BY run_id) AS n
    FROM results
    WHERE status = 'succeeded' AND latency_ms IS NOT NULL
), latency AS (
    SELECT run_id,
           MIN(CASE WHEN rank = (50 * n + 99) / 100 THEN latency_ms END) AS p50_latency_ms,
           MIN(CASE WHEN rank = (95 * n + 99) / 100 THEN latency_ms END) AS p95_latency_ms
    FROM timed GROUP BY run_id
), counts AS (
    SELECT run_id,
           COUNT(*) AS cases,
           SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
           SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
           SUM(CASE WHEN status = 'succeeded' AND has_ground_truth THEN 1 ELSE 0 END) AS with_ground_truth,
           AVG(CASE WHEN status = 'succeeded' AND has_ground_truth THEN dsc END) AS mean_dsc,
           MIN(CASE WHEN status = 'succeeded' AND has_ground_truth THEN dsc END) AS min_dsc,
           AVG(CASE WHEN status = 'succeeded' AND has_ground_truth THEN iou END) AS mean_iou,
           MIN(CASE WHEN status = 'succeeded' AND has_ground_truth THEN iou END) AS min_iou,
           AVG(CASE WHEN status = 'succeeded' AND has_ground_truth THEN "precision" END) AS mean_precision,
           AVG(CASE WHEN status = 'succeeded' AND has_ground_truth THEN recall END) AS mean_recall,
           MIN(created_at) AS first_result_at,
           MAX(created_at) AS last_result_at
    FROM results GROUP BY run_id
), dups AS (
    SELECT run_id, COUNT(*) AS duplicates FROM duplicates GROUP BY run_id
), timing AS (
    SELECT ru.run_id, ROUND((julianday(k.last_result_at) - julianday(ru.started_at)) * 86400.0, 3) AS elapsed_s
    FROM runs ru JOIN counts k ON k.run_id = ru.run_id
)
SELECT ru.run_id, ru.command, ru.pipeline, ru.model_name, ru.model_sha256, ru.efen_version, ru.host,
       ru.started_at, strftime('%Y-%m-%dT%H:%M:%fZ', ru.ended_at) AS ended_at,
       COALESCE(k.cases, 0) AS cases, COALESCE(k.succeeded, 0) AS succeeded, COALESCE(k.failed, 0) AS failed,
       COALESCE(d.duplicates, 0) AS duplicates, COALESCE(k.with_ground_truth, 0) AS with_ground_truth,
       k.mean_dsc, m.median_dsc, k.min_dsc, k.mean_iou, m.median_iou, k.min_iou, k.mean_precision, k.mean_recall,
       l.p50_latency_ms, l.p95_latency_ms, k.first_result_at, k.last_result_at, t.elapsed_s,
       CASE WHEN t.elapsed_s > 0 THEN k.succeeded / t.elapsed_s END AS throughput_per_s
FROM runs ru
LEFT JOIN counts k ON k.run_id = ru.run_id
LEFT JOIN medians m ON m.run_id = ru.run_id
LEFT JOIN latency l ON l.run_id = ru.run_id
LEFT JOIN dups d ON d.run_id = ru.run_id
LEFT JOIN timing t ON t.run_id = ru.run_id;

CREATE VIEW daily_summary AS
SELECT substr(r.created_at, 1, 10) AS day, c.pipeline, c.model_sha256,
       MAX(ru.model_name) AS model_name,
       COUNT(*) AS cases,
       SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
       SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END) AS failed,
       AVG(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r.dsc END) AS mean_dsc,
       MIN(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r.dsc END) AS min_dsc,
       AVG(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r.iou END) AS mean_iou,
       AVG(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r."precision" END) AS mean_precision,
       AVG(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r.recall END) AS mean_recall,
       AVG(CASE WHEN r.status = 'succeeded' THEN r.latency_ms END) AS mean_latency_ms
FROM results r
JOIN cases c ON c.case_id = r.case_id
JOIN runs ru ON ru.run_id = r.run_id
GROUP BY substr(r.created_at, 1, 10), c.pipeline, c.model_sha256;

-- First and last use are the times of the model's first and last recorded result.
CREATE VIEW model_versions AS
SELECT c.model_sha256, MAX(ru.model_name) AS model_name,
       MIN(r.created_at) AS first_used, MAX(r.created_at) AS last_used,
       COUNT(*) AS cases, COUNT(DISTINCT r.run_id) AS runs,
       SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
       AVG(CASE WHEN r.status = 'succeeded' AND r.has_ground_truth THEN r.dsc END) AS mean_dsc
FROM results r
JOIN cases c ON c.case_id = r.case_id
JOIN runs ru ON ru.run_id = r.run_id
GROUP BY c.model_sha256;

-- Per stage and reason: how often, first and last seen, and the latest case as an example.
CREATE VIEW failures AS
WITH failed AS (
    SELECT r.error_stage, r.error_message, r.case_id, r.run_id, c.source_path, r.created_at,
           ROW_NUMBER() OVER (PARTITION BY r.error_stage, r.error_message
                              ORDER BY r.created_at DESC, r.case_id DESC) AS recency,
           COUNT(*) OVER (PARTITION BY r.error_stage, r.error_message) AS cases,
           MIN(r.created_at) OVER (PARTITION BY r.error_stage, r.error_message) AS first_seen
    FROM results r
    JOIN cases c ON c.case_id = r.case_id
    WHERE r.status = 'failed'
)
SELECT error_stage AS stage, error_message AS reason, cases, first_seen, created_at AS last_seen,
       case_id AS latest_case_id, source_path AS latest_source_path, run_id AS latest_run_id
FROM failed
WHERE recency = 1;
