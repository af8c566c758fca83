-- Workload policies: every version of every workload's routing policy, append-only, so
-- the table is the policy history. A workload's current policy is its highest version.
-- Times are unix microseconds; guards is a JSON array of guard names. seq grows with
-- every save and is what LastPolicySeq reads. window_calls is Policy.Window (WINDOW is
-- an SQL keyword).

-- +goose Up
CREATE TABLE policies (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    workload       TEXT    NOT NULL CHECK (workload != ''),
    version        INTEGER NOT NULL CHECK (version > 0),
    mode           TEXT    NOT NULL CHECK (mode IN ('observe', 'shadow', 'canary', 'serve')),
    candidate      TEXT    NOT NULL DEFAULT '',
    canary_share   REAL    NOT NULL DEFAULT 0,
    shadow_share   REAL    NOT NULL DEFAULT 1,
    verify_share   REAL    NOT NULL DEFAULT 0.05,
    guards         TEXT    NOT NULL DEFAULT '[]',
    min_agreement  REAL    NOT NULL DEFAULT 0,
    min_guard_pass REAL    NOT NULL DEFAULT 0,
    window_calls   INTEGER NOT NULL CHECK (window_calls > 0),
    min_samples    INTEGER NOT NULL CHECK (min_samples > 0),
    promote_after  INTEGER NOT NULL DEFAULT 0,
    at             INTEGER NOT NULL,
    actor          TEXT    NOT NULL CHECK (actor != ''),
    actor_name     TEXT    NOT NULL DEFAULT '',
    remote         TEXT    NOT NULL DEFAULT '',
    reason         TEXT    NOT NULL DEFAULT '',
    automatic      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workload, version)
);

-- Versions are history: like the audit trail, they are never rewritten.
-- +goose StatementBegin
CREATE TRIGGER policies_no_update BEFORE UPDATE ON policies
BEGIN
    SELECT RAISE(ABORT, 'policies are append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER policies_no_delete BEFORE DELETE ON policies
BEGIN
    SELECT RAISE(ABORT, 'policies are append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE policies;
