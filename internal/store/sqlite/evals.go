package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.EvalStore = (*DB)(nil)

// SaveEvalSet saves set and its members in one transaction; an id already saved fails
// with store.ErrConflict.
func (db *DB) SaveEvalSet(ctx context.Context, set store.EvalSet) (err error) {
	if err := validateEvalSet(set); err != nil {
		return fmt.Errorf("sqlite: save eval set: %w", err)
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save eval set %s: %w", set.ID, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	_, err = tx.ExecContext(ctx, `INSERT INTO eval_sets (id, workload_id, created_at, params)
		VALUES (?, ?, ?, ?)`, set.ID, set.WorkloadID, micros(set.CreatedAt), string(set.Params))
	if isConstraint(err) {
		return fmt.Errorf("sqlite: save eval set %s: %w", set.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: save eval set %s: %w", set.ID, err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO eval_members (set_id, call_id, split, stratum)
		VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: save eval set %s: %w", set.ID, err)
	}
	defer stmt.Close()
	for _, m := range set.Members {
		if _, err = stmt.ExecContext(ctx, set.ID, m.CallID, m.Split, m.Stratum); err != nil {
			return fmt.Errorf("sqlite: save eval set %s: member %s: %w", set.ID, m.CallID, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save eval set %s: commit: %w", set.ID, err)
	}
	return nil
}

// validateEvalSet reports the first thing that keeps set from being saved.
func validateEvalSet(set store.EvalSet) error {
	if set.ID == "" {
		return errors.New("set has no id")
	}
	if len(set.Params) > 0 && !json.Valid(set.Params) {
		return fmt.Errorf("set %s: params are not valid JSON", set.ID)
	}
	seen := make(map[string]bool, len(set.Members))
	for i, m := range set.Members {
		switch {
		case m.CallID == "":
			return fmt.Errorf("set %s: member %d has no call id", set.ID, i)
		case seen[m.CallID]:
			return fmt.Errorf("set %s: call %s appears twice", set.ID, m.CallID)
		case m.Split != store.SplitTrain && m.Split != store.SplitValidation && m.Split != store.SplitTest:
			return fmt.Errorf("set %s: call %s: split %q: want %q, %q or %q", set.ID, m.CallID, m.Split,
				store.SplitTrain, store.SplitValidation, store.SplitTest)
		}
		seen[m.CallID] = true
	}
	return nil
}

// GetEvalSet returns the set with its members, or store.ErrNotFound.
func (db *DB) GetEvalSet(ctx context.Context, id string) (store.EvalSet, error) {
	set, err := db.evalSet(ctx, `SELECT id, workload_id, created_at, params FROM eval_sets
		WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return store.EvalSet{}, fmt.Errorf("sqlite: eval set %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.EvalSet{}, fmt.Errorf("sqlite: get eval set %s: %w", id, err)
	}
	return set, nil
}

// LatestEvalSet returns the workload's set with the latest CreatedAt (of two created in
// the same microsecond, the one saved last), or store.ErrNotFound.
func (db *DB) LatestEvalSet(ctx context.Context, workloadID string) (store.EvalSet, error) {
	set, err := db.evalSet(ctx, `SELECT id, workload_id, created_at, params FROM eval_sets
		WHERE workload_id = ? ORDER BY created_at DESC, seq DESC LIMIT 1`, workloadID)
	if errors.Is(err, sql.ErrNoRows) {
		return store.EvalSet{}, fmt.Errorf("sqlite: latest eval set of workload %q: %w", workloadID, store.ErrNotFound)
	}
	if err != nil {
		return store.EvalSet{}, fmt.Errorf("sqlite: latest eval set of workload %q: %w", workloadID, err)
	}
	return set, nil
}

// evalSet reads the set query selects, and its members, in one read transaction.
func (db *DB) evalSet(ctx context.Context, query string, args ...any) (store.EvalSet, error) {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.EvalSet{}, err
	}
	defer tx.Rollback()
	var (
		set     store.EvalSet
		created int64
		params  string
	)
	err = tx.QueryRowContext(ctx, query, args...).Scan(&set.ID, &set.WorkloadID, &created, &params)
	if err != nil {
		return store.EvalSet{}, err
	}
	set.CreatedAt = fromMicros(created)
	set.Params = nilIfEmpty(params)
	rows, err := tx.QueryContext(ctx, `SELECT call_id, split, stratum FROM eval_members
		WHERE set_id = ? ORDER BY split, call_id`, set.ID)
	if err != nil {
		return store.EvalSet{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var m store.EvalMember
		if err := rows.Scan(&m.CallID, &m.Split, &m.Stratum); err != nil {
			return store.EvalSet{}, err
		}
		set.Members = append(set.Members, m)
	}
	return set, rows.Err()
}

// SaveEvalRun inserts run, or updates the status, finish time and leaderboard of the
// run of the same id; its start time and params stay as first saved. A SetID that is
// not a saved set fails with store.ErrNotFound.
func (db *DB) SaveEvalRun(ctx context.Context, run store.EvalRun) (err error) {
	if err := validateEvalRun(run); err != nil {
		return fmt.Errorf("sqlite: save eval run: %w", err)
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save eval run %s: %w", run.ID, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM eval_sets WHERE id = ?`, run.SetID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: save eval run %s: eval set %s: %w", run.ID, run.SetID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: save eval run %s: %w", run.ID, err)
	}
	var setID, workloadID string
	err = tx.QueryRowContext(ctx, `SELECT set_id, workload_id FROM eval_runs WHERE id = ?`, run.ID).Scan(&setID, &workloadID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO eval_runs (id, set_id, workload_id, started_at,
			finished_at, status, params, leaderboard) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			run.ID, run.SetID, run.WorkloadID, micros(run.StartedAt), micros(run.FinishedAt),
			run.Status, string(run.Params), string(run.Leaderboard))
	case err != nil:
	case setID != run.SetID || workloadID != run.WorkloadID:
		err = fmt.Errorf("set %s and workload %q may not change (stored: set %s, workload %q)",
			run.SetID, run.WorkloadID, setID, workloadID)
	default:
		_, err = tx.ExecContext(ctx, `UPDATE eval_runs SET status = ?, finished_at = ?, leaderboard = ?
			WHERE id = ?`, run.Status, micros(run.FinishedAt), string(run.Leaderboard), run.ID)
	}
	if err != nil {
		return fmt.Errorf("sqlite: save eval run %s: %w", run.ID, err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save eval run %s: commit: %w", run.ID, err)
	}
	return nil
}

// validateEvalRun reports the first thing that keeps run from being saved.
func validateEvalRun(run store.EvalRun) error {
	switch {
	case run.ID == "":
		return errors.New("run has no id")
	case run.SetID == "":
		return fmt.Errorf("run %s has no set id", run.ID)
	case run.Status != store.EvalRunning && run.Status != store.EvalFinished:
		return fmt.Errorf("run %s: status %q: want %q or %q", run.ID, run.Status, store.EvalRunning, store.EvalFinished)
	case len(run.Params) > 0 && !json.Valid(run.Params):
		return fmt.Errorf("run %s: params are not valid JSON", run.ID)
	case len(run.Leaderboard) > 0 && !json.Valid(run.Leaderboard):
		return fmt.Errorf("run %s: leaderboard is not valid JSON", run.ID)
	}
	return nil
}

const evalRunColumns = `id, set_id, workload_id, started_at, finished_at, status, params, leaderboard`

// GetEvalRun returns a run, or store.ErrNotFound.
func (db *DB) GetEvalRun(ctx context.Context, id string) (store.EvalRun, error) {
	row := db.read.QueryRowContext(ctx, `SELECT `+evalRunColumns+` FROM eval_runs WHERE id = ?`, id)
	run, err := scanEvalRun(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return store.EvalRun{}, fmt.Errorf("sqlite: eval run %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.EvalRun{}, fmt.Errorf("sqlite: get eval run %s: %w", id, err)
	}
	return run, nil
}

// ListEvalRuns returns the runs of a workload ("" for all), newest first: latest
// StartedAt, and of two started in the same microsecond the one saved last.
func (db *DB) ListEvalRuns(ctx context.Context, workloadID string) ([]store.EvalRun, error) {
	q := `SELECT ` + evalRunColumns + ` FROM eval_runs`
	var args []any
	if workloadID != "" {
		q += ` WHERE workload_id = ?`
		args = append(args, workloadID)
	}
	rows, err := db.read.QueryContext(ctx, q+` ORDER BY started_at DESC, seq DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list eval runs: %w", err)
	}
	defer rows.Close()
	var out []store.EvalRun
	for rows.Next() {
		run, err := scanEvalRun(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list eval runs: %w", err)
		}
		out = append(out, run)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list eval runs: %w", err)
	}
	return out, nil
}

func scanEvalRun(scan func(dest ...any) error) (store.EvalRun, error) {
	var (
		r                   store.EvalRun
		started, finished   int64
		params, leaderboard string
	)
	err := scan(&r.ID, &r.SetID, &r.WorkloadID, &started, &finished, &r.Status, &params, &leaderboard)
	if err != nil {
		return store.EvalRun{}, err
	}
	r.StartedAt, r.FinishedAt = fromMicros(started), fromMicros(finished)
	r.Params, r.Leaderboard = nilIfEmpty(params), nilIfEmpty(leaderboard)
	return r, nil
}

const evalResultColumns = `run_id, candidate, variant, call_id, at, status, error, attempts,
	latency_us, ttft_us, prompt_tokens, completion_tokens, cost_usd, agreement, pass, score,
	key_id, answer`

// SaveEvalResults writes rs in one transaction, replacing results stored under the same
// (run, candidate, variant, call); a run that is not saved fails the batch with
// store.ErrNotFound.
func (db *DB) SaveEvalResults(ctx context.Context, rs []store.EvalResult) (err error) {
	if len(rs) == 0 {
		return nil
	}
	var runs []string
	for i := range rs {
		r := &rs[i]
		switch {
		case r.RunID == "":
			return fmt.Errorf("sqlite: save eval results: result %d has no run id", i)
		case r.Candidate == "":
			return fmt.Errorf("sqlite: save eval results: result %d has no candidate", i)
		case r.CallID == "":
			return fmt.Errorf("sqlite: save eval results: result %d has no call id", i)
		case len(r.Score) > 0 && !json.Valid(r.Score):
			return fmt.Errorf("sqlite: save eval results: result %d (call %s): score is not valid JSON", i, r.CallID)
		}
		runs = append(runs, r.RunID)
	}
	slices.Sort(runs)
	runs = slices.Compact(runs)

	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save eval results: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	for _, id := range runs {
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM eval_runs WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: save eval results: eval run %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: save eval results: %w", err)
		}
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO eval_results (`+evalResultColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, candidate, variant, call_id) DO UPDATE SET
			at = excluded.at, status = excluded.status, error = excluded.error,
			attempts = excluded.attempts, latency_us = excluded.latency_us,
			ttft_us = excluded.ttft_us, prompt_tokens = excluded.prompt_tokens,
			completion_tokens = excluded.completion_tokens, cost_usd = excluded.cost_usd,
			agreement = excluded.agreement, pass = excluded.pass, score = excluded.score,
			key_id = excluded.key_id, answer = excluded.answer`)
	if err != nil {
		return fmt.Errorf("sqlite: save eval results: %w", err)
	}
	defer stmt.Close()
	for i := range rs {
		r := &rs[i]
		_, err = stmt.ExecContext(ctx, r.RunID, r.Candidate, r.Variant, r.CallID, micros(r.At),
			r.Status, r.Error, r.Attempts, r.Latency.Microseconds(), r.TTFT.Microseconds(),
			r.PromptTokens, r.CompletionTokens, r.CostUSD, r.Agreement, r.Pass, string(r.Score),
			r.KeyID, blob(r.Answer))
		if err != nil {
			return fmt.Errorf("sqlite: save eval result %s/%s/%s/%s: %w", r.RunID, r.Candidate, r.Variant, r.CallID, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save eval results: commit: %w", err)
	}
	return nil
}

// ListEvalResults returns a run's results ordered by (candidate, variant, call id).
func (db *DB) ListEvalResults(ctx context.Context, runID string) ([]store.EvalResult, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+evalResultColumns+` FROM eval_results
		WHERE run_id = ? ORDER BY candidate, variant, call_id`, runID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list eval results of %s: %w", runID, err)
	}
	defer rows.Close()
	var out []store.EvalResult
	for rows.Next() {
		var (
			r                 store.EvalResult
			at, latency, ttft int64
			score             string
		)
		err := rows.Scan(&r.RunID, &r.Candidate, &r.Variant, &r.CallID, &at, &r.Status, &r.Error,
			&r.Attempts, &latency, &ttft, &r.PromptTokens, &r.CompletionTokens, &r.CostUSD,
			&r.Agreement, &r.Pass, &score, &r.KeyID, &r.Answer)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list eval results of %s: %w", runID, err)
		}
		r.At = fromMicros(at)
		r.Latency = time.Duration(latency) * time.Microsecond
		r.TTFT = time.Duration(ttft) * time.Microsecond
		r.Score = nilIfEmpty(score)
		if len(r.Answer) == 0 {
			r.Answer = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list eval results of %s: %w", runID, err)
	}
	return out, nil
}

// nilIfEmpty turns a JSON text column into a RawMessage, and "" into nil.
func nilIfEmpty(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}
