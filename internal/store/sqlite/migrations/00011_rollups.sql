-- Rollups (store.RollupStore): the gateway's calls summed per bucket, workload key,
-- route and served model, kept by InsertCalls and ImportCalls in the transaction that
-- writes the calls, so that dashboards read rollups rather than calls.
--
-- Each sum is kept at three spans: minute (span 1), hour (60) and UTC day (1440);
-- minute is the bucket's start in unix minutes, a multiple of span. A month of calls
-- at a few a minute is nearly one minute row per call, so a query over weeks reads
-- the hour or day rows instead (see sqlite/rollups.go). Each sum is also kept under
-- workload '' (no workload key is empty), summed over every workload, for questions
-- not split by workload. The key starts with span and workload because every question
-- reads one workload's rows (or the '' rows) over a range of minutes: one range of
-- the key, no other index. latency is the histogram of latencies,
-- store.LatencyBuckets little-endian uint32 counts.
--
-- The rollups of the calls stored before this migration are computed in Go, which
-- merges the histograms, when the store is next opened: call_rollups_backfill holds
-- a row until then, and the backfill deletes it in the transaction that writes them.

-- +goose Up
CREATE TABLE call_rollups (
    span               INTEGER NOT NULL,
    minute             INTEGER NOT NULL,
    workload           TEXT    NOT NULL,
    route              TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    calls              INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cost_usd           REAL    NOT NULL,
    second_cost_usd    REAL    NOT NULL,
    reference_cost_usd REAL    NOT NULL,
    compared           INTEGER NOT NULL,
    passed             INTEGER NOT NULL,
    agreement_sum      REAL    NOT NULL,
    guard_checked      INTEGER NOT NULL,
    guard_failed       INTEGER NOT NULL,
    latency            BLOB    NOT NULL,
    PRIMARY KEY (span, workload, minute, route, model)
) WITHOUT ROWID;

CREATE TABLE call_rollups_backfill (pending INTEGER NOT NULL);
INSERT INTO call_rollups_backfill VALUES (1);

-- +goose Down
DROP TABLE call_rollups_backfill;
DROP TABLE call_rollups;
