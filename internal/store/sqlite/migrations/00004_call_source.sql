-- Where a call came from and what discovery made of it. source is '' for a call the
-- gateway recorded, or 'import:FORMAT' for one `downshift import` read from a file;
-- ground_truth is 1 when the response is a dataset's ground truth rather than a model's
-- answer; workload_id is the workload discovery or online assignment gave the call
-- ('' until then), apart from workload, the client's own tag.

-- +goose Up
ALTER TABLE calls ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN ground_truth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN workload_id TEXT NOT NULL DEFAULT '';
CREATE INDEX calls_source      ON calls (source, id);
CREATE INDEX calls_workload_id ON calls (workload_id, id);

-- +goose Down
DROP INDEX calls_workload_id;
DROP INDEX calls_source;
ALTER TABLE calls DROP COLUMN workload_id;
ALTER TABLE calls DROP COLUMN ground_truth;
ALTER TABLE calls DROP COLUMN source;
