-- The model catalog's run-time additions, and offline evaluation: eval sets (a
-- workload's calls split into train, validation and test), the runs that replay a set's
-- test calls against candidates, and each candidate's scored answer. Times are unix
-- microseconds (0 for a run not finished); durations are microseconds. spec, params,
-- leaderboard and score are JSON text kept as given ('' when empty); answer is the
-- candidate's message, sealed when key_id is set.
--
-- seq orders sets and runs saved in the same microsecond: the one saved last is newer.
-- Members name calls by id without a foreign key, so that an eval set outlives calls
-- removed by retention.

-- +goose Up
CREATE TABLE catalog_models (
    name     TEXT    NOT NULL PRIMARY KEY CHECK (name != ''),
    spec     TEXT    NOT NULL,
    added_at INTEGER NOT NULL,
    added_by TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE eval_sets (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE CHECK (id != ''),
    workload_id TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    params      TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX eval_sets_workload ON eval_sets (workload_id, created_at, seq);

CREATE TABLE eval_members (
    set_id  TEXT NOT NULL REFERENCES eval_sets (id),
    call_id TEXT NOT NULL CHECK (call_id != ''),
    split   TEXT NOT NULL CHECK (split IN ('train', 'validation', 'test')),
    stratum TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (set_id, call_id)
);

CREATE TABLE eval_runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE CHECK (id != ''),
    set_id      TEXT    NOT NULL REFERENCES eval_sets (id),
    workload_id TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'finished')),
    params      TEXT    NOT NULL DEFAULT '',
    leaderboard TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX eval_runs_started  ON eval_runs (started_at, seq);
CREATE INDEX eval_runs_workload ON eval_runs (workload_id, started_at, seq);
CREATE INDEX eval_runs_set      ON eval_runs (set_id);

CREATE TABLE eval_results (
    run_id            TEXT    NOT NULL REFERENCES eval_runs (id),
    candidate         TEXT    NOT NULL CHECK (candidate != ''),
    variant           TEXT    NOT NULL,
    call_id           TEXT    NOT NULL CHECK (call_id != ''),
    at                INTEGER NOT NULL,
    status            INTEGER NOT NULL DEFAULT 0,
    error             TEXT    NOT NULL DEFAULT '',
    attempts          INTEGER NOT NULL DEFAULT 0,
    latency_us        INTEGER NOT NULL DEFAULT 0,
    ttft_us           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL    NOT NULL DEFAULT 0,
    agreement         REAL    NOT NULL DEFAULT 0,
    pass              INTEGER NOT NULL DEFAULT 0,
    score             TEXT    NOT NULL DEFAULT '',
    key_id            TEXT    NOT NULL DEFAULT '',
    answer            BLOB    NOT NULL DEFAULT x'',
    PRIMARY KEY (run_id, candidate, variant, call_id)
);

-- +goose Down
DROP TABLE eval_results;
DROP TABLE eval_runs;
DROP TABLE eval_members;
DROP TABLE eval_sets;
DROP TABLE catalog_models;
