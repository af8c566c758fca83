-- Workloads found by discovery. Every run is kept (workload_runs) with the workloads it
-- found (workloads, keyed by run and workload id); the current set is the one of the
-- run saved last, the highest seq. Times are unix microseconds. params and stats are
-- JSON text kept as given; model columns are opaque bytes of the online assigner.
-- Which workload a call belongs to is calls.workload_id (migration 00004), not here.

-- +goose Up
CREATE TABLE workload_runs (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL UNIQUE CHECK (id != ''),
    at        INTEGER NOT NULL,
    params    TEXT    NOT NULL DEFAULT '',
    model     BLOB    NOT NULL DEFAULT x'',
    workloads INTEGER NOT NULL DEFAULT 0 -- how many workloads the run saved
);

CREATE TABLE workloads (
    run_id         TEXT    NOT NULL REFERENCES workload_runs (id),
    id             TEXT    NOT NULL CHECK (id != ''),
    label          TEXT    NOT NULL DEFAULT '',
    terms          TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    tools          TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    output_types   TEXT    NOT NULL DEFAULT '{}', -- JSON object, kind -> share
    representative TEXT    NOT NULL DEFAULT '',   -- a call id
    calls          INTEGER NOT NULL DEFAULT 0,
    stats          TEXT    NOT NULL DEFAULT '',
    readiness      INTEGER NOT NULL DEFAULT 0,
    model          BLOB    NOT NULL DEFAULT x'',
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, id)
);

-- +goose Down
DROP TABLE workloads;
DROP TABLE workload_runs;
