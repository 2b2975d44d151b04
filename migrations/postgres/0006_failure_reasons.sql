-- The failures view groups by reason: the message with the case's own paths taken out, so that
-- the same failure of many files is one row. `error_message` keeps the full text (with the file);
-- rows recorded before this migration have no error_reason and group by their message.
-- Keep in step with the other backend's 0006_failure_reasons.sql.

ALTER TABLE results ADD COLUMN error_reason TEXT;

DROP VIEW failures;

CREATE VIEW failures AS
WITH failed AS (
    SELECT r.error_stage, COALESCE(r.error_reason, r.error_message) AS reason, r.case_id, r.run_id,
           c.source_path, r.created_at
    FROM results r
    JOIN cases c ON c.case_id = r.case_id
    WHERE r.status = 'failed'
), ranked AS (
    SELECT error_stage, reason, case_id, run_id, source_path, created_at,
           ROW_NUMBER() OVER (PARTITION BY error_stage, reason ORDER BY created_at DESC, case_id DESC) AS recency,
           COUNT(*) OVER (PARTITION BY error_stage, reason) AS cases,
           MIN(created_at) OVER (PARTITION BY error_stage, reason) AS first_seen
    FROM failed
)
SELECT error_stage AS stage, reason, cases, first_seen, created_at AS last_seen,
       case_id AS latest_case_id, source_path AS latest_source_path, run_id AS latest_run_id
FROM ranked
WHERE recency = 1;
