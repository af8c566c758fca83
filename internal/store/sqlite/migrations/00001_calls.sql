-- Calls as the gateway recorded them. Times are unix microseconds and durations are
-- microseconds, so that ordering and range filters are plain integer index scans.

-- +goose Up
CREATE TABLE calls (
    id                TEXT    NOT NULL PRIMARY KEY,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER NOT NULL,
    client_id         TEXT    NOT NULL DEFAULT '',
    workload          TEXT    NOT NULL DEFAULT '',
    fingerprint       TEXT    NOT NULL DEFAULT '',
    requested_model   TEXT    NOT NULL DEFAULT '',
    served_model      TEXT    NOT NULL DEFAULT '',
    backend           TEXT    NOT NULL DEFAULT '',
    route             TEXT    NOT NULL DEFAULT '',
    stream            INTEGER NOT NULL DEFAULT 0,
    status            INTEGER NOT NULL DEFAULT 0,
    error_type        TEXT    NOT NULL DEFAULT '',
    error_message     TEXT    NOT NULL DEFAULT '',
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    tokens_estimated  INTEGER NOT NULL DEFAULT 0,
    latency_us        INTEGER NOT NULL DEFAULT 0,
    ttft_us           INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL    NOT NULL DEFAULT 0,
    simulated         INTEGER NOT NULL DEFAULT 0,
    request           BLOB    NOT NULL DEFAULT x'',
    response          BLOB    NOT NULL DEFAULT x''
);

CREATE INDEX calls_started_at      ON calls (started_at);
CREATE INDEX calls_workload        ON calls (workload, id);
CREATE INDEX calls_fingerprint     ON calls (fingerprint, id);
CREATE INDEX calls_status          ON calls (status, id);
CREATE INDEX calls_requested_model ON calls (requested_model, id);
CREATE INDEX calls_served_model    ON calls (served_model, id);

-- +goose Down
DROP TABLE calls;
