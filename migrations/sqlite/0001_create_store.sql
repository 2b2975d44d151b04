-- efen store: runs, cases, results, an append-only audit log and the case_results view.
-- Keep in step with migrations/postgres/0001_create_store.sql (same tables, same columns).

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    command           TEXT NOT NULL,              -- run | watch
    pipeline          TEXT NOT NULL,
    pipeline_settings TEXT NOT NULL,              -- JSON snapshot of the pipeline file as used
    model_name        TEXT NOT NULL,
    model_sha256      TEXT NOT NULL,
    efen_version      TEXT NOT NULL,
    host              TEXT NOT NULL,
    started_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ended_at          TEXT
);

-- One row per input per (pipeline, model): the identity that makes re-runs no-ops.
CREATE TABLE cases (
    case_id           TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (run_id),
    pipeline          TEXT NOT NULL,
    model_sha256      TEXT NOT NULL,
    source_path       TEXT NOT NULL,
    source_sha256     TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    kind              TEXT,
    width             INTEGER,
    height            INTEGER,
    ground_truth_path TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (source_sha256, pipeline, model_sha256)
);

CREATE TABLE results (
    case_id          TEXT PRIMARY KEY REFERENCES cases (case_id),
    run_id           TEXT NOT NULL REFERENCES runs (run_id),
    status           TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error_stage      TEXT,
    error_message    TEXT,
    decode_ms        REAL,
    preprocess_ms    REAL,
    infer_ms         REAL,
    postprocess_ms   REAL,
    evaluate_ms      REAL,
    emit_ms          REAL,
    latency_ms       REAL,
    mask_path        TEXT,
    overlay_path     TEXT,
    result_path      TEXT,
    has_ground_truth INTEGER NOT NULL DEFAULT 0,
    dsc              REAL,
    iou              REAL,
    miou             REAL,
    "precision"      REAL,
    recall           REAL,
    tp               INTEGER,
    fp               INTEGER,
    fn               INTEGER,
    tn               INTEGER,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor   TEXT NOT NULL,                        -- efen <version> on <host>, pid <pid>
    run_id  TEXT,
    case_id TEXT,
    action  TEXT NOT NULL,                        -- run_started, case_claimed, case_succeeded, …
    detail  TEXT
);
CREATE INDEX audit_log_case ON audit_log (case_id);

-- The audit log is append-only: the database itself refuses to change or remove a row.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;

CREATE VIEW case_results AS
SELECT c.case_id, r.run_id, c.pipeline, c.model_sha256, c.source_path, c.source_sha256,
       r.status, r.error_stage, r.error_message, r.dsc, r.iou, r.miou, r."precision", r.recall,
       r.has_ground_truth, r.latency_ms, r.created_at
FROM cases c
JOIN results r ON r.case_id = c.case_id;
