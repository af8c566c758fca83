package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.ModelStore = (*DB)(nil)

// PutModel adds m, or replaces the model of the same name.
func (db *DB) PutModel(ctx context.Context, m store.CatalogModel) error {
	if m.Name == "" {
		return errors.New("sqlite: put model: empty name")
	}
	if !json.Valid(m.Spec) {
		return fmt.Errorf("sqlite: put model %s: spec is not valid JSON", m.Name)
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO catalog_models (name, spec, added_at, added_by)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, added_at = excluded.added_at,
			added_by = excluded.added_by`,
		m.Name, string(m.Spec), micros(m.AddedAt), m.AddedBy)
	if err != nil {
		return fmt.Errorf("sqlite: put model %s: %w", m.Name, err)
	}
	return nil
}

// ListModels returns every added model, ordered by name.
func (db *DB) ListModels(ctx context.Context) ([]store.CatalogModel, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT name, spec, added_at, added_by
		FROM catalog_models ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list models: %w", err)
	}
	defer rows.Close()
	var out []store.CatalogModel
	for rows.Next() {
		var (
			m     store.CatalogModel
			spec  string
			added int64
		)
		if err := rows.Scan(&m.Name, &spec, &added, &m.AddedBy); err != nil {
			return nil, fmt.Errorf("sqlite: list models: %w", err)
		}
		m.Spec = json.RawMessage(spec)
		m.AddedAt = fromMicros(added)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list models: %w", err)
	}
	return out, nil
}

// DeleteModel removes the model called name, or returns store.ErrNotFound.
func (db *DB) DeleteModel(ctx context.Context, name string) error {
	res, err := db.write.ExecContext(ctx, `DELETE FROM catalog_models WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("sqlite: delete model %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: delete model %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: model %s: %w", name, store.ErrNotFound)
	}
	return nil
}
