package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.WorkloadStore = (*DB)(nil)

// assignBatch is how many call ids one UPDATE of AssignWorkloads names: well under
// SQLite's limit on bound parameters, and large enough that 100k assignments take a
// few hundred statements rather than 100k.
const assignBatch = 500

// SaveWorkloads records run and makes ws the current set, in one transaction.
func (db *DB) SaveWorkloads(ctx context.Context, run store.WorkloadRun, ws []store.Workload) (err error) {
	if err := validateRun(run, ws); err != nil {
		return fmt.Errorf("sqlite: save workloads: %w", err)
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save workloads: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	_, err = tx.ExecContext(ctx, `INSERT INTO workload_runs (id, at, params, model, workloads)
		VALUES (?, ?, ?, ?, ?)`, run.ID, run.At.UnixMicro(), string(run.Params), blob(run.Model), len(ws))
	if isConstraint(err) {
		return fmt.Errorf("sqlite: save workloads: run %s: %w", run.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: save workloads: run %s: %w", run.ID, err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO workloads (run_id, id, label, terms, tools,
		output_types, representative, calls, stats, readiness, model, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: save workloads: %w", err)
	}
	defer stmt.Close()
	for i := range ws {
		w := &ws[i]
		terms, tools, types, err := workloadJSON(w)
		if err != nil {
			return fmt.Errorf("sqlite: save workload %s: %w", w.ID, err)
		}
		_, err = stmt.ExecContext(ctx, run.ID, w.ID, w.Label, terms, tools, types, w.Representative,
			w.Calls, string(w.Stats), w.Readiness, blob(w.Model), run.At.UnixMicro())
		if err != nil {
			return fmt.Errorf("sqlite: save workload %s: %w", w.ID, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save workloads: commit: %w", err)
	}
	return nil
}

// validateRun reports the first thing that keeps run and ws from being saved.
func validateRun(run store.WorkloadRun, ws []store.Workload) error {
	if run.ID == "" {
		return errors.New("run has no id")
	}
	if run.At.IsZero() {
		return fmt.Errorf("run %s: zero time", run.ID)
	}
	if len(run.Params) > 0 && !json.Valid(run.Params) {
		return fmt.Errorf("run %s: params are not valid JSON", run.ID)
	}
	seen := make(map[string]bool, len(ws))
	for i := range ws {
		w := &ws[i]
		switch {
		case w.ID == "":
			return fmt.Errorf("workload %d has no id", i)
		case seen[w.ID]:
			return fmt.Errorf("workload %s appears twice", w.ID)
		case len(w.Stats) > 0 && !json.Valid(w.Stats):
			return fmt.Errorf("workload %s: stats are not valid JSON", w.ID)
		}
		seen[w.ID] = true
	}
	return nil
}

// workloadJSON encodes the list and map columns of w.
func workloadJSON(w *store.Workload) (terms, tools, types string, err error) {
	enc := func(v any, empty string) (string, error) {
		b, err := json.Marshal(v)
		if err != nil || string(b) == "null" {
			return empty, err
		}
		return string(b), nil
	}
	if terms, err = enc(w.Terms, "[]"); err != nil {
		return
	}
	if tools, err = enc(w.Tools, "[]"); err != nil {
		return
	}
	types, err = enc(w.OutputTypes, "{}") // NaN or Inf shares fail here
	return
}

const workloadColumns = `id, label, terms, tools, output_types, representative, calls, stats,
	readiness, model, updated_at`

// ListWorkloads returns the workloads of the last saved run, ordered by id. One
// statement reads the latest run and its workloads, so a concurrent SaveWorkloads
// cannot mix two sets.
func (db *DB) ListWorkloads(ctx context.Context) ([]store.Workload, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+workloadColumns+` FROM workloads
		WHERE run_id = (SELECT id FROM workload_runs ORDER BY seq DESC LIMIT 1) ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list workloads: %w", err)
	}
	defer rows.Close()
	var out []store.Workload
	for rows.Next() {
		var (
			w                   store.Workload
			terms, tools, types string
			stats               string
			updated             int64
		)
		err := rows.Scan(&w.ID, &w.Label, &terms, &tools, &types, &w.Representative, &w.Calls,
			&stats, &w.Readiness, &w.Model, &updated)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list workloads: %w", err)
		}
		for _, c := range []struct {
			name string
			raw  string
			dst  any
		}{{"terms", terms, &w.Terms}, {"tools", tools, &w.Tools}, {"output types", types, &w.OutputTypes}} {
			if err := json.Unmarshal([]byte(c.raw), c.dst); err != nil {
				return nil, fmt.Errorf("sqlite: workload %s: %s: %w", w.ID, c.name, err)
			}
		}
		if len(w.Terms) == 0 {
			w.Terms = nil
		}
		if len(w.Tools) == 0 {
			w.Tools = nil
		}
		if len(w.OutputTypes) == 0 {
			w.OutputTypes = nil
		}
		if stats != "" {
			w.Stats = json.RawMessage(stats)
		}
		if len(w.Model) == 0 {
			w.Model = nil
		}
		w.UpdatedAt = fromMicros(updated)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list workloads: %w", err)
	}
	return out, nil
}

// LatestRun returns the last saved run, or store.ErrNotFound.
func (db *DB) LatestRun(ctx context.Context) (store.WorkloadRun, error) {
	var (
		r      store.WorkloadRun
		at     int64
		params string
	)
	err := db.read.QueryRowContext(ctx, `SELECT id, at, params, model FROM workload_runs
		ORDER BY seq DESC LIMIT 1`).Scan(&r.ID, &at, &params, &r.Model)
	if errors.Is(err, sql.ErrNoRows) {
		return store.WorkloadRun{}, fmt.Errorf("sqlite: latest workload run: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.WorkloadRun{}, fmt.Errorf("sqlite: latest workload run: %w", err)
	}
	r.At = fromMicros(at)
	if params != "" {
		r.Params = json.RawMessage(params)
	}
	if len(r.Model) == 0 {
		r.Model = nil
	}
	return r, nil
}

// AssignWorkloads sets calls.workload_id for the given calls in one transaction, one
// existence check and one UPDATE per workload and batch of up to assignBatch call ids.
func (db *DB) AssignWorkloads(ctx context.Context, assign map[string]string) (err error) {
	if len(assign) == 0 {
		return nil
	}
	byWorkload := make(map[string][]string)
	for call, w := range assign {
		if call == "" {
			return errors.New("sqlite: assign workloads: empty call id")
		}
		byWorkload[w] = append(byWorkload[w], call)
	}
	workloads := make([]string, 0, len(byWorkload))
	for w, ids := range byWorkload {
		slices.Sort(ids) // ids in index order touch neighbouring pages together
		workloads = append(workloads, w)
	}
	slices.Sort(workloads)

	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: assign workloads: %w", err)
	}
	var moved int64 // calls whose workload changed
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	for _, w := range workloads {
		for ids := range slices.Chunk(byWorkload[w], assignBatch) {
			args := make([]any, 0, len(ids)+1)
			args = append(args, w)
			for _, id := range ids {
				args = append(args, id)
			}
			in := strings.Repeat("?, ", len(ids)-1) + "?"
			var found int
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM calls WHERE id IN (`+in+`)`, args[1:]...).Scan(&found)
			if err != nil {
				return fmt.Errorf("sqlite: assign workloads: %w", err)
			}
			if found != len(ids) {
				return fmt.Errorf("sqlite: assign workloads: call %s: %w", firstMissing(ctx, tx, ids, in, args[1:]), store.ErrNotFound)
			}
			// Rows that already hold the workload are left alone: an UPDATE rewrites the
			// whole row, payloads included, so a re-run that moves few calls writes little.
			args = append(args, w)
			res, err := tx.ExecContext(ctx, `UPDATE calls SET workload_id = ? WHERE id IN (`+in+`) AND workload_id != ?`, args...)
			if err != nil {
				return fmt.Errorf("sqlite: assign workloads: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("sqlite: assign workloads: %w", err)
			}
			moved += n
		}
	}
	if moved > 0 {
		// The moved calls' sums belong under their new workload keys now. The rows of
		// every workload are summed again from the calls (the rows over all workloads
		// do not change): a pass over the table, which an analysis can afford.
		if _, err = tx.ExecContext(ctx, `DELETE FROM call_rollups WHERE workload != ?`, allWorkloads); err != nil {
			return fmt.Errorf("sqlite: assign workloads: rollups: %w", err)
		}
		if _, err = sumStoredCalls(ctx, tx, backfillFlush); err != nil {
			return fmt.Errorf("sqlite: assign workloads: rollups: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: assign workloads: commit: %w", err)
	}
	return nil
}

// firstMissing names one of ids that is not a stored call, for the error message.
func firstMissing(ctx context.Context, tx *sql.Tx, ids []string, in string, args []any) string {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM calls WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return fmt.Sprintf("(one of %d)", len(ids))
	}
	defer rows.Close()
	found := make(map[string]bool, len(ids))
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			found[id] = true
		}
	}
	for _, id := range ids {
		if !found[id] {
			return id
		}
	}
	return fmt.Sprintf("(one of %d)", len(ids))
}
