-- The second answer's body (store.SecondAnswer.Response): the candidate's answer to a
-- shadowed call, or the reference's to a verified one, as received; redacted with the
-- call's request and response, and sealed under the call's key_id with its own field
-- name. NULL when there is none (no second answer, an error, a skip, and every call
-- recorded before this migration). It is the last column of the row, so reading the
-- columns before it never reads it.

-- +goose Up
ALTER TABLE calls ADD COLUMN second_response BLOB;

-- +goose Down
ALTER TABLE calls DROP COLUMN second_response;
