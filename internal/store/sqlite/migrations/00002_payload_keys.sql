-- Privacy at ingestion. key_id names the encryption key that sealed a call's request
-- and response ('' = plaintext); redactions is a JSON object counting what redaction
-- replaced, by placeholder type (NULL = nothing). Payload columns are BLOBs already and
-- hold sealed bytes as given.

-- +goose Up
ALTER TABLE calls ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN redactions TEXT;
CREATE INDEX calls_key_id ON calls (key_id, id);

-- +goose Down
DROP INDEX calls_key_id;
ALTER TABLE calls DROP COLUMN redactions;
ALTER TABLE calls DROP COLUMN key_id;
