// Package sqlite is the embedded store: store.Store on one SQLite file, through the
// pure-Go driver modernc.org/sqlite, so the single binary needs no cgo and no server.
// It applies its embedded migrations when opened. It is not a general SQL layer: other
// packages speak store.Store, never SQL, so PostgreSQL can stand in for it.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/downshift-dev/downshift/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout is how long a connection waits for another process's lock (a second
// downshift, or a CLI reading while the gateway writes) before SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is a store.Store kept in one SQLite file. It is safe for concurrent use.
//
// SQLite admits one writer at a time, so DB holds two pools: a single write connection,
// which serialises this process's writes in Go instead of in SQLite's busy loop, and a
// pool of read-only connections that WAL mode lets read while the writer writes.
//
// The writer runs with secure_delete on, so that the bytes of a payload UpdatePayloads
// replaces are overwritten with zeros in the database file rather than left in free
// pages; UpdatePayloads then checkpoints and truncates the write-ahead log, which holds
// the old page images too. That scrubs a plaintext payload re-sealed by key rotation
// from both files, unless another process keeps a read transaction open through the
// checkpoint's busy timeout: then the old frames stay in the log until it is reused.
type DB struct {
	write *sql.DB
	read  *sql.DB
}

var _ store.Store = (*DB)(nil)

// Open opens or creates the SQLite database at path and migrates it to the current
// schema. The path is a file name; it must not contain '?'.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q contains '?'", path)
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout.Milliseconds())

	// journal_mode is a property of the file; setting it on the writer, which opens
	// first, puts every later connection in WAL mode too. _txlock=immediate takes the
	// write lock at BEGIN, so a transaction never fails halfway when another process
	// holds it but waits for busy_timeout instead.
	write, err := sql.Open("sqlite", path+"?"+pragmas+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=secure_delete(1)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}

	read, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	if err := read.PingContext(ctx); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return &DB{write: write, read: read}, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	if _, err = p.Up(ctx); err != nil {
		return err
	}
	return backfillRollups(ctx, db, backfillFlush)
}

// Close closes both connection pools.
func (db *DB) Close() error {
	return errors.Join(db.read.Close(), db.write.Close())
}

// Check reports whether the database can be written now: it takes the write lock and
// lets it go again.
func (db *DB) Check(ctx context.Context) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: check: %w", err)
	}
	if err := tx.Rollback(); err != nil {
		return fmt.Errorf("sqlite: check: %w", err)
	}
	return nil
}

const callColumns = `id, started_at, finished_at, client_id, workload, fingerprint,
	requested_model, served_model, backend, route, stream, status, error_type, error_message,
	prompt_tokens, completion_tokens, cached_tokens, tokens_estimated, latency_us, ttft_us,
	cost_usd, simulated, redactions, key_id, source, ground_truth, workload_id,
	mode, policy_version, candidate, guard, second_kind, second_model, second_status,
	second_error, second_prompt_tokens, second_completion_tokens, second_latency_us,
	second_cost_usd, second_simulated, agreement, agreement_pass, reference_cost_usd,
	reference_cost_estimated`

// payloadColumns are the payloads, read only when asked for; listings read
// noPayloads in their place.
const (
	payloadColumns = `request, response, second_response`
	noPayloads     = `x'', x'', NULL`
)

// insertCall has one placeholder per column of callColumns and payloadColumns.
var insertCall = `INSERT INTO calls (` + callColumns + `, ` + payloadColumns + `)
	VALUES (` + strings.Repeat("?, ", strings.Count(callColumns+payloadColumns, ",")+1) + `?)`

// importCall skips only a call whose id is taken; any other constraint still fails
// (INSERT OR IGNORE would swallow those too).
var importCall = insertCall + ` ON CONFLICT (id) DO NOTHING`

// InsertCalls writes calls in one transaction: all or none.
func (db *DB) InsertCalls(ctx context.Context, calls []store.Call) error {
	_, err := db.insert(ctx, "insert calls", insertCall, calls)
	return err
}

// ImportCalls writes calls in one transaction, skipping those whose id is already
// stored (or came earlier in the batch), and returns how many were new. Any other
// error writes nothing.
func (db *DB) ImportCalls(ctx context.Context, calls []store.Call) (int, error) {
	return db.insert(ctx, "import calls", importCall, calls)
}

// insert runs query once per call in one transaction and returns how many rows it
// added; op names the operation in errors.
func (db *DB) insert(ctx context.Context, op, query string, calls []store.Call) (added int, err error) {
	if len(calls) == 0 {
		return 0, nil
	}
	for i := range calls {
		if calls[i].ID == "" {
			return 0, fmt.Errorf("sqlite: %s: call %d has no id", op, i)
		}
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			added = 0
		}
	}()
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer stmt.Close()
	rollups := make(rollupBatch)
	for i := range calls {
		c := &calls[i]
		var sec store.SecondAnswer
		if c.Second != nil {
			sec = *c.Second
		}
		var agreement any // NULL when nothing was compared
		if sec.Compared {
			agreement = sec.Agreement
		}
		res, err := stmt.ExecContext(ctx,
			c.ID, c.StartedAt.UnixMicro(), c.FinishedAt.UnixMicro(),
			c.ClientID, c.Workload, c.Fingerprint,
			c.RequestedModel, c.ServedModel, c.Backend, string(c.Route), c.Stream,
			c.Status, c.ErrorType, c.ErrorMessage,
			c.PromptTokens, c.CompletionTokens, c.CachedTokens, c.TokensEstimated,
			c.Latency.Microseconds(), c.TTFT.Microseconds(), c.CostUSD, c.Simulated,
			redactionsJSON(c.Redactions), c.KeyID, c.Source, c.GroundTruth, c.WorkloadID,
			c.Mode, c.PolicyVersion, c.Candidate, c.Guard,
			sec.Kind, sec.Model, sec.Status, sec.Error, sec.PromptTokens, sec.CompletionTokens,
			sec.Latency.Microseconds(), sec.CostUSD, sec.Simulated, agreement, sec.Pass,
			c.ReferenceCostUSD, c.ReferenceCostEstimated,
			blob(c.Request), blob(c.Response), nullBlob(sec.Response))
		if err != nil {
			if isConstraint(err) {
				return 0, fmt.Errorf("sqlite: %s: call %s: %w", op, c.ID, err)
			}
			return 0, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		added += int(n)
		if n == 1 && c.Source == store.SourceGateway {
			rollups.add(c, store.RollupKey(c))
			rollups.add(c, allWorkloads)
		}
	}
	if err = rollups.write(ctx, tx); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err = tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return added, nil
}

// blob keeps a nil payload from being written as NULL; the column is NOT NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nullBlob is a nullable payload column: NULL when there is no payload.
func nullBlob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// redactionsJSON is the redactions column: a JSON object, or NULL when there are none.
func redactionsJSON(r map[string]int) any {
	if len(r) == 0 {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a map[string]int always marshals
	}
	return string(b)
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// UpdatePayloads replaces the payloads and key ids of calls in one transaction: all or
// none, store.ErrNotFound when a call is missing. After the commit it truncates the
// write-ahead log (see DB) so that the replaced bytes do not linger in it.
func (db *DB) UpdatePayloads(ctx context.Context, updates []store.PayloadUpdate) (err error) {
	if len(updates) == 0 {
		return nil
	}
	for i := range updates {
		if updates[i].ID == "" {
			return fmt.Errorf("sqlite: update payloads: update %d has no id", i)
		}
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: update payloads: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// A call without a second answer keeps none: second_kind is what says there is one.
	stmt, err := tx.PrepareContext(ctx, `UPDATE calls SET key_id = ?, request = ?, response = ?,
		second_response = CASE WHEN second_kind = '' THEN NULL ELSE ? END WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("sqlite: update payloads: %w", err)
	}
	defer stmt.Close()
	for i := range updates {
		u := &updates[i]
		res, err := stmt.ExecContext(ctx, u.KeyID, blob(u.Request), blob(u.Response), nullBlob(u.SecondResponse), u.ID)
		if err != nil {
			return fmt.Errorf("sqlite: update payloads of %s: %w", u.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: update payloads of %s: %w", u.ID, err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: update payloads: call %s: %w", u.ID, store.ErrNotFound)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: update payloads: commit: %w", err)
	}
	// TRUNCATE waits (up to busy_timeout) for readers of older snapshots, copies the log
	// into the database and empties the log file. Its outcome is not the batch's: the
	// batch is committed, so an error here must not read as "none", and a checkpoint
	// that could not finish is tried again after the next batch (and by SQLite's own
	// automatic checkpoints).
	_, _ = db.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return nil
}

// GetCall returns one call with its payloads, or store.ErrNotFound.
func (db *DB) GetCall(ctx context.Context, id string) (store.Call, error) {
	row := db.read.QueryRowContext(ctx,
		`SELECT `+callColumns+`, `+payloadColumns+` FROM calls WHERE id = ?`, id)
	c, err := scanCall(row.Scan, true)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Call{}, fmt.Errorf("sqlite: call %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Call{}, fmt.Errorf("sqlite: get call %s: %w", id, err)
	}
	return c, nil
}

// DefaultLimit is how many calls ListCalls returns when the filter sets no limit.
const DefaultLimit = 100

// ListCalls returns calls matching f, newest first unless f.Ascending.
func (db *DB) ListCalls(ctx context.Context, f store.Filter) ([]store.Call, error) {
	where, args, err := whereClause(f)
	if err != nil {
		return nil, err
	}
	cols := callColumns + `, ` + noPayloads
	if f.WithPayloads {
		cols = callColumns + `, ` + payloadColumns
	}
	order := "DESC"
	if f.Ascending {
		order = "ASC"
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	q := `SELECT ` + cols + ` FROM calls` + where + ` ORDER BY id ` + order + ` LIMIT ?`
	rows, err := db.read.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list calls: %w", err)
	}
	defer rows.Close()
	var calls []store.Call
	for rows.Next() {
		c, err := scanCall(rows.Scan, f.WithPayloads)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list calls: %w", err)
		}
		calls = append(calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list calls: %w", err)
	}
	return calls, nil
}

// CountCalls returns how many calls match f; f.Limit is ignored.
func (db *DB) CountCalls(ctx context.Context, f store.Filter) (int, error) {
	where, args, err := whereClause(f)
	if err != nil {
		return 0, err
	}
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM calls`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count calls: %w", err)
	}
	return n, nil
}

// whereClause turns f into " WHERE ..." (or "") and its arguments.
func whereClause(f store.Filter) (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.Workload != "" {
		add("workload = ?", f.Workload)
	}
	if f.Source != "" {
		add("source = ?", f.Source)
	}
	if f.WorkloadID != "" {
		add("workload_id = ?", f.WorkloadID)
	}
	if f.Model != "" {
		add("(requested_model = ? OR served_model = ?)", f.Model, f.Model)
	}
	switch {
	case f.Status == 0:
	case f.Status == store.StatusOK:
		add("status < 400")
	case f.Status == store.StatusError:
		add("status >= 400")
	case f.Status > 0:
		add("status = ?", f.Status)
	default:
		return "", nil, fmt.Errorf("sqlite: invalid status filter %d", f.Status)
	}
	if !f.Since.IsZero() {
		add("started_at >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("started_at < ?", f.Until.UnixMicro())
	}
	if f.AfterID != "" {
		add("id > ?", f.AfterID)
	}
	if f.SealedUnder != "" {
		add("key_id = ?", f.SealedUnder)
	}
	if f.NotSealedUnder != "" {
		add("key_id != ?", f.NotSealedUnder)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

func scanCall(scan func(dest ...any) error, withPayloads bool) (store.Call, error) {
	var (
		c                                store.Call
		started, finished, latency, ttft int64
		route                            string
		redactions                       sql.NullString
		sec                              store.SecondAnswer
		secLatency                       int64
		agreement                        sql.NullFloat64
		secResponse                      []byte
	)
	err := scan(&c.ID, &started, &finished, &c.ClientID, &c.Workload, &c.Fingerprint,
		&c.RequestedModel, &c.ServedModel, &c.Backend, &route, &c.Stream, &c.Status,
		&c.ErrorType, &c.ErrorMessage, &c.PromptTokens, &c.CompletionTokens, &c.CachedTokens,
		&c.TokensEstimated, &latency, &ttft, &c.CostUSD, &c.Simulated, &redactions, &c.KeyID,
		&c.Source, &c.GroundTruth, &c.WorkloadID,
		&c.Mode, &c.PolicyVersion, &c.Candidate, &c.Guard,
		&sec.Kind, &sec.Model, &sec.Status, &sec.Error, &sec.PromptTokens, &sec.CompletionTokens,
		&secLatency, &sec.CostUSD, &sec.Simulated, &agreement, &sec.Pass,
		&c.ReferenceCostUSD, &c.ReferenceCostEstimated,
		&c.Request, &c.Response, &secResponse)
	if err != nil {
		return store.Call{}, err
	}
	if sec.Kind != "" {
		sec.Latency = time.Duration(secLatency) * time.Microsecond
		sec.Compared, sec.Agreement = agreement.Valid, agreement.Float64
		if len(secResponse) > 0 && withPayloads {
			sec.Response = secResponse
		}
		c.Second = &sec
	}
	if redactions.Valid && redactions.String != "" {
		if err := json.Unmarshal([]byte(redactions.String), &c.Redactions); err != nil {
			return store.Call{}, fmt.Errorf("call %s: redactions column: %w", c.ID, err)
		}
		if len(c.Redactions) == 0 {
			c.Redactions = nil
		}
	}
	c.StartedAt = time.UnixMicro(started).UTC()
	c.FinishedAt = time.UnixMicro(finished).UTC()
	c.Latency = time.Duration(latency) * time.Microsecond
	c.TTFT = time.Duration(ttft) * time.Microsecond
	c.Route = store.Route(route)
	if len(c.Request) == 0 || !withPayloads {
		c.Request = nil
	}
	if len(c.Response) == 0 || !withPayloads {
		c.Response = nil
	}
	return c, nil
}
