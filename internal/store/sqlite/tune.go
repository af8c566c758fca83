package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.TuneJobStore = (*DB)(nil)

const tuneJobColumns = `id, workload, base, trainer, status, external_id, dataset, params, metrics,
	adapter, error, created_at, updated_at, finished_at`

// CreateTuneJob stores a new job; an id already stored fails with store.ErrConflict.
func (db *DB) CreateTuneJob(ctx context.Context, j store.TuneJob) error {
	if j.Status == "" {
		j.Status = store.TuneSubmitted
	}
	if err := validateTuneJob(j); err != nil {
		return fmt.Errorf("sqlite: create tune job: %w", err)
	}
	if j.Status != store.TuneSubmitted {
		return fmt.Errorf("sqlite: create tune job %s: status %q: a new job is %q", j.ID, j.Status, store.TuneSubmitted)
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO tune_jobs (`+tuneJobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.Workload, j.Base, j.Trainer, j.Status, j.ExternalID, string(j.Dataset),
		string(j.Params), string(j.Metrics), j.Adapter, j.Error, micros(j.CreatedAt),
		micros(j.UpdatedAt), micros(j.FinishedAt))
	if isConstraint(err) {
		return fmt.Errorf("sqlite: create tune job %s: %w", j.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create tune job %s: %w", j.ID, err)
	}
	return nil
}

// validateTuneJob reports the first thing that keeps j from being stored.
func validateTuneJob(j store.TuneJob) error {
	switch {
	case j.ID == "":
		return errors.New("job has no id")
	case j.Workload == "":
		return fmt.Errorf("job %s has no workload", j.ID)
	case j.Base == "":
		return fmt.Errorf("job %s has no base model", j.ID)
	case j.Trainer == "":
		return fmt.Errorf("job %s has no trainer", j.ID)
	}
	return validateTuneJSON(j)
}

func validateTuneJSON(j store.TuneJob) error {
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"dataset", j.Dataset}, {"params", j.Params}, {"metrics", j.Metrics}} {
		if len(f.v) > 0 && !json.Valid(f.v) {
			return fmt.Errorf("job %s: %s is not valid JSON", j.ID, f.name)
		}
	}
	return nil
}

// UpdateTuneJob replaces the mutable fields of a stored job in one transaction, after
// checking the status transition against the stored status.
func (db *DB) UpdateTuneJob(ctx context.Context, j store.TuneJob) (err error) {
	if j.ID == "" {
		return errors.New("sqlite: update tune job: job has no id")
	}
	if err := validateTuneJSON(j); err != nil {
		return fmt.Errorf("sqlite: update tune job: %w", err)
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: update tune job %s: %w", j.ID, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var status string
	err = tx.QueryRowContext(ctx, `SELECT status FROM tune_jobs WHERE id = ?`, j.ID).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: tune job %s: %w", j.ID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update tune job %s: %w", j.ID, err)
	}
	if err = store.ValidTuneTransition(status, j.Status); err != nil {
		return fmt.Errorf("sqlite: update tune job %s: %w", j.ID, err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE tune_jobs SET status = ?, external_id = ?, dataset = ?,
		metrics = ?, adapter = ?, error = ?, updated_at = ?, finished_at = ? WHERE id = ?`,
		j.Status, j.ExternalID, string(j.Dataset), string(j.Metrics), j.Adapter, j.Error,
		micros(j.UpdatedAt), micros(j.FinishedAt), j.ID)
	if err != nil {
		return fmt.Errorf("sqlite: update tune job %s: %w", j.ID, err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: update tune job %s: commit: %w", j.ID, err)
	}
	return nil
}

// GetTuneJob returns one job, or store.ErrNotFound.
func (db *DB) GetTuneJob(ctx context.Context, id string) (store.TuneJob, error) {
	row := db.read.QueryRowContext(ctx, `SELECT `+tuneJobColumns+` FROM tune_jobs WHERE id = ?`, id)
	j, err := scanTuneJob(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return store.TuneJob{}, fmt.Errorf("sqlite: tune job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.TuneJob{}, fmt.Errorf("sqlite: get tune job %s: %w", id, err)
	}
	return j, nil
}

// ListTuneJobs returns the jobs of a workload ("" for all), newest first: latest
// CreatedAt, and of two created in the same microsecond the one created last.
func (db *DB) ListTuneJobs(ctx context.Context, workload string) ([]store.TuneJob, error) {
	q := `SELECT ` + tuneJobColumns + ` FROM tune_jobs`
	var args []any
	if workload != "" {
		q += ` WHERE workload = ?`
		args = append(args, workload)
	}
	rows, err := db.read.QueryContext(ctx, q+` ORDER BY created_at DESC, seq DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tune jobs: %w", err)
	}
	defer rows.Close()
	var out []store.TuneJob
	for rows.Next() {
		j, err := scanTuneJob(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list tune jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list tune jobs: %w", err)
	}
	return out, nil
}

func scanTuneJob(scan func(dest ...any) error) (store.TuneJob, error) {
	var (
		j                          store.TuneJob
		dataset, params, metrics   string
		created, updated, finished int64
	)
	err := scan(&j.ID, &j.Workload, &j.Base, &j.Trainer, &j.Status, &j.ExternalID, &dataset,
		&params, &metrics, &j.Adapter, &j.Error, &created, &updated, &finished)
	if err != nil {
		return store.TuneJob{}, err
	}
	j.Dataset, j.Params, j.Metrics = nilIfEmpty(dataset), nilIfEmpty(params), nilIfEmpty(metrics)
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = fromMicros(created), fromMicros(updated), fromMicros(finished)
	return j, nil
}

// AppendTuneLog numbers lines after the job's last log line and writes them in one
// transaction.
func (db *DB) AppendTuneLog(ctx context.Context, id string, at time.Time, lines []string) (err error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append tune log %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var last int64
	err = tx.QueryRowContext(ctx, `SELECT log_seq FROM tune_jobs WHERE id = ?`, id).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: tune job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: append tune log %s: %w", id, err)
	}
	if len(lines) == 0 {
		return tx.Commit()
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO tune_logs (job_id, seq, at, text) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: append tune log %s: %w", id, err)
	}
	defer stmt.Close()
	for _, line := range lines {
		last++
		if _, err = stmt.ExecContext(ctx, id, last, micros(at), line); err != nil {
			return fmt.Errorf("sqlite: append tune log %s: %w", id, err)
		}
	}
	if _, err = tx.ExecContext(ctx, `UPDATE tune_jobs SET log_seq = ? WHERE id = ?`, last, id); err != nil {
		return fmt.Errorf("sqlite: append tune log %s: %w", id, err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append tune log %s: commit: %w", id, err)
	}
	return nil
}

// TuneLog returns the job's log lines after afterSeq, in order.
func (db *DB) TuneLog(ctx context.Context, id string, afterSeq int64) ([]store.LogLine, error) {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: tune log %s: %w", id, err)
	}
	defer tx.Rollback()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM tune_jobs WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: tune job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: tune log %s: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, at, text FROM tune_logs
		WHERE job_id = ? AND seq > ? ORDER BY seq`, id, afterSeq)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tune log %s: %w", id, err)
	}
	defer rows.Close()
	var out []store.LogLine
	for rows.Next() {
		var (
			l  store.LogLine
			at int64
		)
		if err := rows.Scan(&l.Seq, &at, &l.Text); err != nil {
			return nil, fmt.Errorf("sqlite: tune log %s: %w", id, err)
		}
		l.At = fromMicros(at)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: tune log %s: %w", id, err)
	}
	return out, nil
}
