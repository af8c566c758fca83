package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

var (
	_ store.KeyStore = (*DB)(nil)
	_ store.KeyUsage = (*DB)(nil)
	_ store.AuditLog = (*DB)(nil)
)

// micros turns t into unix microseconds, and the zero time into 0 ("never").
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

const keyColumns = `id, name, kind, role, client_id, allowed_models, rate_limit, burst, hash,
	created_at, revoked_at, last_used_at`

// CreateKey stores k; a duplicate id or hash fails with store.ErrConflict.
func (db *DB) CreateKey(ctx context.Context, k store.Key) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("sqlite: create %w", err)
	}
	models := k.AllowedModels
	if models == nil {
		models = []string{}
	}
	mj, err := json.Marshal(models)
	if err != nil {
		return fmt.Errorf("sqlite: create key %s: %w", k.ID, err)
	}
	_, err = db.write.ExecContext(ctx, `INSERT INTO keys (`+keyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, string(k.Kind), string(k.Role), k.ClientID, string(mj), k.RateLimit, k.Burst,
		k.Hash, micros(k.CreatedAt), micros(k.RevokedAt), micros(k.LastUsedAt))
	if isConstraint(err) {
		return fmt.Errorf("sqlite: create key %s: %w", k.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create key %s: %w", k.ID, err)
	}
	return nil
}

// ListKeys returns every key, revoked ones included, oldest first.
func (db *DB) ListKeys(ctx context.Context) ([]store.Key, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	defer rows.Close()
	var keys []store.Key
	for rows.Next() {
		var (
			k                          store.Key
			kind, role, models         string
			created, revoked, lastUsed int64
		)
		err := rows.Scan(&k.ID, &k.Name, &kind, &role, &k.ClientID, &models, &k.RateLimit, &k.Burst,
			&k.Hash, &created, &revoked, &lastUsed)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list keys: %w", err)
		}
		if err := json.Unmarshal([]byte(models), &k.AllowedModels); err != nil {
			return nil, fmt.Errorf("sqlite: key %s: allowed models: %w", k.ID, err)
		}
		if len(k.AllowedModels) == 0 {
			k.AllowedModels = nil
		}
		k.Kind, k.Role = store.KeyKind(kind), store.Role(role)
		k.CreatedAt, k.RevokedAt, k.LastUsedAt = fromMicros(created), fromMicros(revoked), fromMicros(lastUsed)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	return keys, nil
}

// RevokeKey marks a key revoked at at, keeping an earlier revocation.
func (db *DB) RevokeKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite: revoke key %s: zero time", id)
	}
	// One statement both revokes and tells an unknown id from a revoked one, so that
	// no second query races a concurrent CreateKey.
	var revoked int64
	err := db.write.QueryRowContext(ctx, `UPDATE keys
		SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END
		WHERE id = ? RETURNING revoked_at`, micros(at), id).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke key %s: %w", id, err)
	}
	return nil
}

// TouchKeys records when keys were last used, keeping later times already stored.
func (db *DB) TouchKeys(ctx context.Context, used map[string]time.Time) (err error) {
	if len(used) == 0 {
		return nil
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: touch keys: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, `UPDATE keys SET last_used_at = max(last_used_at, ?) WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("sqlite: touch keys: %w", err)
	}
	defer stmt.Close()
	for id, at := range used {
		if _, err = stmt.ExecContext(ctx, micros(at), id); err != nil {
			return fmt.Errorf("sqlite: touch keys: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: touch keys: commit: %w", err)
	}
	return nil
}

// AppendAudit adds e to the audit trail; the store assigns its ID.
func (db *DB) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return errors.New("sqlite: append audit: actor and action are required")
	}
	if e.At.IsZero() {
		return errors.New("sqlite: append audit: zero time")
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO audit
		(at, actor, actor_name, action, target, detail, remote) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		micros(e.At), e.Actor, e.ActorName, string(e.Action), e.Target, e.Detail, e.Remote)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	return nil
}

// ListAudit returns the audit entries matching f, newest first.
func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	var conds []string
	var args []any
	add := func(cond string, a any) {
		conds = append(conds, cond)
		args = append(args, a)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		add("action = ?", string(f.Action))
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until.UnixMicro())
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	rows, err := db.read.QueryContext(ctx, `SELECT id, at, actor, actor_name, action, target, detail, remote
		FROM audit`+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var (
			e      store.AuditEntry
			at     int64
			action string
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.ActorName, &action, &e.Target, &e.Detail, &e.Remote); err != nil {
			return nil, fmt.Errorf("sqlite: list audit: %w", err)
		}
		e.At, e.Action = time.UnixMicro(at).UTC(), store.AuditAction(action)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	return out, nil
}
