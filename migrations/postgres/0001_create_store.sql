-- efen store: runs, cases, results, an append-only audit log and the case_results view.
-- Keep in step with migrations/sqlite/0001_create_store.sql (same tables, same columns).

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    command           TEXT NOT NULL,              -- run | watch
    pipeline          TEXT NOT NULL,
    pipeline_settings TEXT NOT NULL,              -- JSON snapshot of the pipeline file as used
    model_name        TEXT NOT NULL,
    model_sha256      TEXT NOT NULL,
    efen_version      TEXT NOT NULL,
    host              TEXT NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at          TIMESTAMPTZ
);

-- One row per input per (pipeline, model): the identity that makes re-runs no-ops.
CREATE TABLE cases (
    case_id           TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (run_id),
    pipeline          TEXT NOT NULL,
    model_sha256      TEXT NOT NULL,
    source_path       TEXT NOT NULL,
    source_sha256     TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    kind              TEXT,
    width             BIGINT,
    height            BIGINT,
    ground_truth_path TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source_sha256, pipeline, model_sha256)
);

CREATE TABLE results (
    case_id          TEXT PRIMARY KEY REFERENCES cases (case_id),
    run_id           TEXT NOT NULL REFERENCES runs (run_id),
    status           TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error_stage      TEXT,
    error_message    TEXT,
    decode_ms        DOUBLE PRECISION,
    preprocess_ms    DOUBLE PRECISION,
    infer_ms         DOUBLE PRECISION,
    postprocess_ms   DOUBLE PRECISION,
    evaluate_ms      DOUBLE PRECISION,
    emit_ms          DOUBLE PRECISION,
    latency_ms       DOUBLE PRECISION,
    mask_path        TEXT,
    overlay_path     TEXT,
    result_path      TEXT,
    has_ground_truth BOOLEAN NOT NULL DEFAULT FALSE,
    dsc              DOUBLE PRECISION,
    iou              DOUBLE PRECISION,
    miou             DOUBLE PRECISION,
    "precision"      DOUBLE PRECISION,
    recall           DOUBLE PRECISION,
    tp               BIGINT,
    fp               BIGINT,
    fn               BIGINT,
    tn               BIGINT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor   TEXT NOT NULL,                        -- efen <version> on <host>, pid <pid>
    run_id  TEXT,
    case_id TEXT,
    action  TEXT NOT NULL,                        -- run_started, case_claimed, case_succeeded, …
    detail  TEXT
);
CREATE INDEX audit_log_case ON audit_log (case_id);

-- The audit log is append-only: the database itself refuses to change or remove a row.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

CREATE VIEW case_results AS
SELECT c.case_id, r.run_id, c.pipeline, c.model_sha256, c.source_path, c.source_sha256,
       r.status, r.error_stage, r.error_message, r.dsc, r.iou, r.miou, r."precision", r.recall,
       r.has_ground_truth, r.latency_ms, r.created_at
FROM cases c
JOIN results r ON r.case_id = c.case_id;
