-- The DICOM node's outbox: one row per result object per destination, from pending through
-- accepted or failed (with the peer's status code). Pending and failed rows are retried after a
-- restart. Keep in step with migrations/sqlite/0005_dicom_node.sql.

CREATE TABLE sends (
    id               BIGSERIAL PRIMARY KEY,
    case_id          TEXT NOT NULL REFERENCES cases (case_id),
    destination      TEXT NOT NULL,               -- AE@host:port
    object           TEXT NOT NULL,               -- seg
    sop_instance_uid TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'failed', 'skipped')),
    peer_status      BIGINT,                      -- the C-STORE response status, e.g. 0 or 42752 (A700)
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (case_id, destination, object)
);
CREATE INDEX sends_status ON sends (status);
