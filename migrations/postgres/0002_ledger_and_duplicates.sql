-- The ledger: where each case is (claimed → decoded → inferred → written → recorded), and which
-- worker holds it; and the inputs that repeated the bytes of an earlier case under another name.
-- Keep in step with migrations/sqlite/0002_ledger_and_duplicates.sql.

ALTER TABLE cases ADD COLUMN state TEXT NOT NULL DEFAULT 'claimed';
ALTER TABLE cases ADD COLUMN state_rank INTEGER NOT NULL DEFAULT 1;
ALTER TABLE cases ADD COLUMN worker TEXT;
CREATE INDEX cases_state ON cases (state);

CREATE TABLE duplicates (
    id          BIGSERIAL PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases (case_id),   -- the earlier case with the same bytes
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    source_path TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX duplicates_case ON duplicates (case_id);
