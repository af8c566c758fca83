-- Gateway and admin keys, and the audit trail of who read or exported payloads or
-- changed keys. A key's secret is never stored: hash is its SHA-256. Times are unix
-- microseconds; 0 stands for "never" (not revoked, not used).

-- +goose Up
CREATE TABLE keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL CHECK (kind IN ('gateway', 'admin')),
    role           TEXT    NOT NULL DEFAULT '',
    client_id      TEXT    NOT NULL DEFAULT '',
    allowed_models TEXT    NOT NULL DEFAULT '[]', -- JSON array of model names
    rate_limit     REAL    NOT NULL DEFAULT 0,
    burst          INTEGER NOT NULL DEFAULT 0,
    hash           BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER NOT NULL DEFAULT 0,
    last_used_at   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    actor_name TEXT    NOT NULL DEFAULT '',
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL DEFAULT '',
    detail     TEXT    NOT NULL DEFAULT '',
    remote     TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX audit_at     ON audit (at);
CREATE INDEX audit_actor  ON audit (actor, id);
CREATE INDEX audit_target ON audit (target, id);

-- The trail is append-only: this stops a bug or a careless statement from rewriting
-- it (not someone who owns the file).
-- +goose StatementBegin
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit;
DROP TABLE keys;
