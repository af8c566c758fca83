-- Fine-tuning jobs and their logs. Times are unix microseconds (0 for a job not
-- finished). dataset, params and metrics are JSON text kept as given ('' when empty).
--
-- seq orders jobs created in the same microsecond: the one created last is newer. A
-- job's log lines are numbered from 1 within the job; tune_jobs.log_seq is the last
-- number given, so appending never needs a scan of the log.

-- +goose Up
CREATE TABLE tune_jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE CHECK (id != ''),
    workload    TEXT    NOT NULL CHECK (workload != ''),
    base        TEXT    NOT NULL CHECK (base != ''),
    trainer     TEXT    NOT NULL CHECK (trainer != ''),
    status      TEXT    NOT NULL CHECK (status IN ('submitted', 'running', 'succeeded', 'failed', 'canceled')),
    external_id TEXT    NOT NULL DEFAULT '',
    dataset     TEXT    NOT NULL DEFAULT '',
    params      TEXT    NOT NULL DEFAULT '',
    metrics     TEXT    NOT NULL DEFAULT '',
    adapter     TEXT    NOT NULL DEFAULT '',
    error       TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER NOT NULL DEFAULT 0,
    log_seq     INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX tune_jobs_created  ON tune_jobs (created_at, seq);
CREATE INDEX tune_jobs_workload ON tune_jobs (workload, created_at, seq);

CREATE TABLE tune_logs (
    job_id TEXT    NOT NULL REFERENCES tune_jobs (id),
    seq    INTEGER NOT NULL CHECK (seq > 0),
    at     INTEGER NOT NULL,
    text   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- +goose Down
DROP TABLE tune_logs;
DROP TABLE tune_jobs;
