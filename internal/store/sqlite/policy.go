package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.PolicyStore = (*DB)(nil)

const policyColumns = `workload, version, mode, candidate, canary_share, shadow_share, verify_share,
	guards, min_agreement, min_guard_pass, window_calls, min_samples, promote_after, at, actor,
	actor_name, remote, reason, automatic`

// SavePolicy appends the next version of p.Workload's policy and its audit entry in one
// transaction. The write connection's BEGIN IMMEDIATE serialises savers, so reading the
// current version and inserting the next cannot interleave with another save; the
// UNIQUE (workload, version) constraint backs that up against other processes.
func (db *DB) SavePolicy(ctx context.Context, p store.Policy) (_ store.Policy, err error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy: %w", err)
	}
	p.At = fromMicros(micros(p.At)) // as stored: microseconds, UTC
	if len(p.Guards) == 0 {
		p.Guards = nil
	}
	guards, err := json.Marshal(p.Guards)
	if err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: %w", p.Workload, err)
	}
	if p.Guards == nil {
		guards = []byte("[]")
	}

	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: %w", p.Workload, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	row := tx.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM policies
		WHERE workload = ? ORDER BY version DESC LIMIT 1`, p.Workload)
	var prev *store.Policy
	cur, err := scanPolicy(row.Scan)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: %w", p.Workload, err)
	default:
		prev = &cur
	}
	next := cur.Version + 1 // 1 when there is none
	if p.Version != 0 && p.Version != next {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s version %d: version %d is stored: %w",
			p.Workload, p.Version, cur.Version, store.ErrConflict)
	}
	p.Version = next
	_, err = tx.ExecContext(ctx, `INSERT INTO policies (`+policyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.Workload, p.Version, p.Mode, p.Candidate, p.CanaryShare, p.ShadowShare, p.VerifyShare,
		string(guards), p.MinAgreement, p.MinGuardPass, p.Window, p.MinSamples, p.PromoteAfter,
		micros(p.At), p.Actor, p.ActorName, p.Remote, p.Reason, p.Automatic)
	if isConstraint(err) {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s version %d: %w", p.Workload, p.Version, store.ErrConflict)
	}
	if err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: %w", p.Workload, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit
		(at, actor, actor_name, action, target, detail, remote) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		micros(p.At), p.Actor, p.ActorName, string(store.AuditSetPolicy), p.Workload,
		store.PolicyAuditDetail(&p, prev), p.Remote)
	if err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: audit: %w", p.Workload, err)
	}
	if err = tx.Commit(); err != nil {
		return store.Policy{}, fmt.Errorf("sqlite: save policy %s: commit: %w", p.Workload, err)
	}
	return p, nil
}

// CurrentPolicies returns the highest version of every workload's policy, by workload.
func (db *DB) CurrentPolicies(ctx context.Context) ([]store.Policy, error) {
	return db.listPolicies(ctx, "current policies", `SELECT `+policyColumns+` FROM policies AS p
		WHERE version = (SELECT MAX(version) FROM policies WHERE workload = p.workload)
		ORDER BY workload`)
}

// PolicyHistory returns every version of a workload's policy, newest first.
func (db *DB) PolicyHistory(ctx context.Context, workload string) ([]store.Policy, error) {
	return db.listPolicies(ctx, "policy history", `SELECT `+policyColumns+` FROM policies
		WHERE workload = ? ORDER BY version DESC`, workload)
}

// LastPolicySeq returns the sequence number of the last policy saved, 0 when none is.
func (db *DB) LastPolicySeq(ctx context.Context) (int64, error) {
	var seq int64
	err := db.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM policies`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("sqlite: last policy seq: %w", err)
	}
	return seq, nil
}

func (db *DB) listPolicies(ctx context.Context, op, query string, args ...any) ([]store.Policy, error) {
	rows, err := db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer rows.Close()
	var out []store.Policy
	for rows.Next() {
		p, err := scanPolicy(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return out, nil
}

func scanPolicy(scan func(dest ...any) error) (store.Policy, error) {
	var (
		p      store.Policy
		guards string
		at     int64
	)
	err := scan(&p.Workload, &p.Version, &p.Mode, &p.Candidate, &p.CanaryShare, &p.ShadowShare,
		&p.VerifyShare, &guards, &p.MinAgreement, &p.MinGuardPass, &p.Window, &p.MinSamples,
		&p.PromoteAfter, &at, &p.Actor, &p.ActorName, &p.Remote, &p.Reason, &p.Automatic)
	if err != nil {
		return store.Policy{}, err
	}
	if err := json.Unmarshal([]byte(guards), &p.Guards); err != nil {
		return store.Policy{}, fmt.Errorf("policy %s version %d: guards: %w", p.Workload, p.Version, err)
	}
	if len(p.Guards) == 0 {
		p.Guards = nil
	}
	p.At = fromMicros(at)
	return p, nil
}
