package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

var _ store.RollupStore = (*DB)(nil)

// rollupSpans are the spans, in minutes, at which call_rollups keeps every sum
// (migration 00011), finest first: a minute, an hour and a UTC day. Each divides the
// next, so a query reads the coarsest rows that fit its buckets (see rollupRanges).
var rollupSpans = [...]int64{1, 60, 1440}

const usPerMinute = int64(time.Minute / time.Microsecond)

// allWorkloads is the workload of the rows of call_rollups that sum every workload's
// calls, which no workload key is (store.RollupKey is never empty). A question not
// split by workload reads these: a few rows per bucket (one per route and model)
// rather than one per workload too, which at a few calls a minute is one per call.
const allWorkloads = ""

// rollupKey is the key of one row of call_rollups.
type rollupKey struct {
	span, minute           int64
	workload, route, model string
}

// rollupBatch sums calls by key, at every span, before they are added to call_rollups.
type rollupBatch map[rollupKey]*store.Rollup

// add sums c into b under workload wk at every span. It sums c as the calls table
// keeps it (latency to the microsecond), so that a rollup is the same whether it was
// kept as the calls were written or computed later from the table (backfillRollups).
func (b rollupBatch) add(c *store.Call, wk string) {
	stored := *c
	stored.Latency = time.Duration(c.Latency.Microseconds()) * time.Microsecond
	minute := floorDiv(c.StartedAt.UnixMicro(), usPerMinute)
	for _, span := range rollupSpans {
		k := rollupKey{span, floorDiv(minute, span) * span, wk, string(c.Route), c.ServedModel}
		r := b[k]
		if r == nil {
			r = new(store.Rollup)
			b[k] = r
		}
		r.AddCall(&stored)
	}
}

const rollupColumns = `span, minute, workload, route, model, calls, errors, prompt_tokens,
	completion_tokens, cost_usd, second_cost_usd, reference_cost_usd, compared, passed,
	agreement_sum, guard_checked, guard_failed, latency`

// rollupWidth is how many rollupColumns there are.
var rollupWidth = strings.Count(rollupColumns, ",") + 1

// upsertRollups adds a batch's sums to rows of call_rollups (VALUES, one row per
// key, follow it), all but the latency histograms, which SQL cannot add: those are
// given already merged with the rows'.
const upsertRollups = `INSERT INTO call_rollups (` + rollupColumns + `) VALUES %s
	ON CONFLICT (span, workload, minute, route, model) DO UPDATE SET
	calls = calls + excluded.calls, errors = errors + excluded.errors,
	prompt_tokens = prompt_tokens + excluded.prompt_tokens,
	completion_tokens = completion_tokens + excluded.completion_tokens,
	cost_usd = cost_usd + excluded.cost_usd,
	second_cost_usd = second_cost_usd + excluded.second_cost_usd,
	reference_cost_usd = reference_cost_usd + excluded.reference_cost_usd,
	compared = compared + excluded.compared, passed = passed + excluded.passed,
	agreement_sum = agreement_sum + excluded.agreement_sum,
	guard_checked = guard_checked + excluded.guard_checked,
	guard_failed = guard_failed + excluded.guard_failed,
	latency = excluded.latency`

// storedHistograms reads the histograms of the rows of call_rollups whose keys follow
// it (VALUES, one row per key), by a seek in the primary key per key.
const storedHistograms = `SELECT r.span, r.workload, r.minute, r.route, r.model, r.latency
	FROM (VALUES %s) AS k JOIN call_rollups AS r
	ON r.span = k.column1 AND r.workload = k.column2 AND r.minute = k.column3
	AND r.route = k.column4 AND r.model = k.column5`

// rollupChunk is the most keys write reads or writes in one statement: 18 values
// each, well under SQLite's limit of 32,766.
const rollupChunk = 500

// write adds b to call_rollups in tx, rollupChunk keys at a time: one statement reads
// the stored histograms of those that have rows, which are merged in Go, and one
// upserts them all. Keys go in the primary key's order, which keeps neighbouring
// rows' writes on the same pages.
func (b rollupBatch) write(ctx context.Context, tx *sql.Tx) error {
	for keys := range slices.Chunk(slices.SortedFunc(maps.Keys(b), compareRollupKeys), rollupChunk) {
		args := make([]any, 0, len(keys)*rollupWidth)
		for _, k := range keys {
			args = append(args, k.span, k.workload, k.minute, k.route, k.model)
		}
		if err := b.mergeStored(ctx, tx, len(keys), args); err != nil {
			return err
		}
		args = args[:0]
		for _, k := range keys {
			r := b[k]
			args = append(args, k.span, k.minute, k.workload, k.route, k.model,
				r.Calls, r.Errors, r.PromptTokens, r.CompletionTokens,
				r.CostUSD, r.SecondCostUSD, r.ReferenceCostUSD, r.Compared, r.Passed,
				r.AgreementSum, r.GuardChecked, r.GuardFailed, histogramBytes(&r.Latency))
		}
		q := fmt.Sprintf(upsertRollups, valuesList(len(keys), rollupWidth))
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// mergeStored adds the stored histograms of n keys, given as args, to b's.
func (b rollupBatch) mergeStored(ctx context.Context, tx *sql.Tx, n int, args []any) error {
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(storedHistograms, valuesList(n, 5)), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k rollupKey
		var latency sql.RawBytes
		if err := rows.Scan(&k.span, &k.workload, &k.minute, &k.route, &k.model, &latency); err != nil {
			return err
		}
		r := b[k]
		if r == nil {
			return fmt.Errorf("rollup %+v: read, not asked for", k)
		}
		if err := addHistogram(&r.Latency, latency); err != nil {
			return fmt.Errorf("rollup %+v: %w", k, err)
		}
	}
	return rows.Err()
}

// valuesList is the VALUES of n rows of width placeholders: "(?, ?), (?, ?)".
func valuesList(n, width int) string {
	row := "(" + strings.Repeat("?, ", width-1) + "?)"
	return strings.Repeat(row+", ", n-1) + row
}

func compareRollupKeys(a, b rollupKey) int {
	return cmp.Or(cmp.Compare(a.span, b.span), strings.Compare(a.workload, b.workload),
		cmp.Compare(a.minute, b.minute), strings.Compare(a.route, b.route),
		strings.Compare(a.model, b.model))
}

// histogramBytes is the latency column: the counts as little-endian uint32s.
func histogramBytes(h *store.LatencyHistogram) []byte {
	b := make([]byte, 0, 4*len(h))
	for _, n := range h {
		b = binary.LittleEndian.AppendUint32(b, n)
	}
	return b
}

// addHistogram adds the counts of a latency column to h.
func addHistogram(h *store.LatencyHistogram, b []byte) error {
	if len(b) != 4*len(h) {
		return fmt.Errorf("latency histogram of %d bytes, want %d", len(b), 4*len(h))
	}
	for i := range h {
		h[i] += binary.LittleEndian.Uint32(b[4*i:])
	}
	return nil
}

// backfillCalls reads what rollups sum of every gateway call, in the order of the
// covering index calls_savings (migration 00010) so that its rows, not the table's,
// give the workload key and everything else it holds; only served_model and the token
// counts come from the table, and they precede the payloads in each row, so no payload
// is read. TestRollupQueriesUseThePrimaryKey checks the plan.
const backfillCalls = `SELECT ` + workloadKey + ` AS wk, route, started_at, latency_us, served_model,
	status, prompt_tokens, completion_tokens, cost_usd, second_cost_usd, reference_cost_usd,
	agreement, agreement_pass, guard
	FROM calls WHERE source = :gateway ORDER BY wk`

// backfillFlush is the most keys the backfill sums in memory (about 400 bytes each)
// before it writes them; a workload with more is written in parts, added together.
// It is backfillRollups' flush.
const backfillFlush = 1 << 16

// backfillRollups computes the rollups of the calls stored before migration 00011, if
// that is still to do (call_rollups_backfill has a row): in one transaction it empties
// call_rollups, sums every gateway call into it and deletes the row, so that a store
// closed halfway does it all again when next opened. It runs once per store; a store
// created with the migration has no calls and is done at once.
func backfillRollups(ctx context.Context, db *sql.DB, flush int) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var pending int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM call_rollups_backfill`).Scan(&pending); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	if pending == 0 {
		return tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM call_rollups`); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	n, err := sumStoredCalls(ctx, tx, flush)
	if err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	if err := sumAllWorkloads(ctx, tx); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM call_rollups_backfill`); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("backfill rollups: commit: %w", err)
	}
	if n > 0 {
		// The transaction wrote every rollup row to the log; give its space back.
		_, _ = db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	return nil
}

// sumStoredCalls writes the rows of call_rollups of every workload key (not
// allWorkloads') from the gateway calls in the table, and returns how many calls it
// read. It reads them a workload at a time, so that a workload's rows are written
// once, complete, unless it has more than flush keys.
func sumStoredCalls(ctx context.Context, tx *sql.Tx, flush int) (int, error) {
	rows, err := tx.QueryContext(ctx, backfillCalls, sql.Named("gateway", store.SourceGateway))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	batch := make(rollupBatch)
	workload, n := "", 0
	for rows.Next() {
		var (
			c                  store.Call
			wk, route          string
			started, latencyUS int64
			sec                store.SecondAnswer
			agreement          sql.NullFloat64
		)
		if err := rows.Scan(&wk, &route, &started, &latencyUS, &c.ServedModel, &c.Status,
			&c.PromptTokens, &c.CompletionTokens, &c.CostUSD, &sec.CostUSD, &c.ReferenceCostUSD,
			&agreement, &sec.Pass, &c.Guard); err != nil {
			return 0, err
		}
		c.Route = store.Route(route)
		c.StartedAt = time.UnixMicro(started)
		c.Latency = time.Duration(latencyUS) * time.Microsecond
		sec.Compared, sec.Agreement = agreement.Valid, agreement.Float64
		c.Second = &sec
		if wk != workload || len(batch) >= flush {
			if err := batch.write(ctx, tx); err != nil {
				return 0, err
			}
			batch, workload = make(rollupBatch), wk
		}
		batch.add(&c, wk)
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return n, batch.write(ctx, tx)
}

// sumAllWorkloads writes the allWorkloads rows of call_rollups, the sums of every
// workload's rows, from those rows: a window of minutes at a time, of every workload,
// so that each window's sums are complete when written.
func sumAllWorkloads(ctx context.Context, tx *sql.Tx) error {
	workloads, err := rollupWorkloads(ctx, tx)
	if err != nil || len(workloads) == 0 {
		return err
	}
	day := rollupSpans[len(rollupSpans)-1]
	var first, last int64
	if err := tx.QueryRowContext(ctx, `SELECT min(minute), max(minute) FROM call_rollups WHERE span = ?`, day).
		Scan(&first, &last); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, rollupRows)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, span := range rollupSpans {
		window := span * day // a day of minute rows, 60 days of hour rows
		for lo := floorDiv(first, window) * window; lo <= last; lo += window {
			s := rollupSummer{f: store.RollupFilter{ByModel: true}, step: span, sums: make(map[rollupGroup]*store.Rollup)}
			for _, w := range workloads {
				if err := s.read(ctx, stmt, span, w, lo, lo+window); err != nil {
					return err
				}
			}
			batch := make(rollupBatch, len(s.sums))
			for g, r := range s.sums {
				batch[rollupKey{span, g.bucket, allWorkloads, g.route, g.model}] = r
			}
			if err := batch.write(ctx, tx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rollups returns the sums f selects. Buckets are read from the coarsest rows that
// fit them (rollupRanges) and summed in Go: the histograms have to be read row by row
// anyway, and each read is one range of the primary key, one workload's (or
// allWorkloads') rows over a range of minutes.
//
// A Step that is a whole number of hours reads hour rows, of days day rows; Step 0
// reads the period as day rows with hour and minute rows at its ragged ends. So a
// month at a 5-minute step reads every minute row of the month: dashboards ask for
// at most a few hundred buckets, which keeps the step coarse as the period grows.
func (db *DB) Rollups(ctx context.Context, f store.RollupFilter) ([]store.Rollup, error) {
	if f.Step < 0 || f.Step%time.Minute != 0 {
		return nil, fmt.Errorf("sqlite: rollups: step %v is not a whole number of minutes", f.Step)
	}
	step := int64(f.Step / time.Minute)
	// [lo, hi) are the minutes of the rows to sum: those of the buckets that start in
	// [Since, Until), or for Step 0 the minutes that do.
	lo, hi := int64(noSince), int64(noUntil)
	if !f.Since.IsZero() {
		lo = ceilDiv(f.Since.UnixMicro(), usPerMinute)
	}
	if !f.Until.IsZero() {
		hi = ceilDiv(f.Until.UnixMicro(), usPerMinute)
	}
	if step > 0 {
		lo, hi = ceilDiv(lo, step)*step, ceilDiv(hi, step)*step
	}
	if lo >= hi {
		return nil, nil
	}

	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: rollups: %w", err)
	}
	defer tx.Rollback()
	// The rows of the workload asked for, else of every workload when the result is
	// split by them, else those that sum them all.
	workloads := []string{cmp.Or(f.Workload, allWorkloads)}
	if f.ByWorkload && f.Workload == "" {
		if workloads, err = rollupWorkloads(ctx, tx); err != nil {
			return nil, fmt.Errorf("sqlite: rollups: %w", err)
		}
	}
	s := rollupSummer{f: f, step: step, sums: make(map[rollupGroup]*store.Rollup)}
	if step == 0 {
		// One bucket, which starts at Since, else at the first selected call's minute.
		s.start = f.Since.Truncate(time.Microsecond).UTC()
		if f.Since.IsZero() {
			var first sql.NullInt64
			err := tx.QueryRowContext(ctx, rollupFirst, rollupSpans[0], cmp.Or(f.Workload, allWorkloads), lo, hi).Scan(&first)
			if err != nil {
				return nil, fmt.Errorf("sqlite: rollups: %w", err)
			}
			if !first.Valid {
				return nil, nil
			}
			s.start = minuteTime(first.Int64)
		}
	}
	stmt, err := tx.PrepareContext(ctx, rollupRows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rollups: %w", err)
	}
	defer stmt.Close()
	for _, w := range workloads {
		for _, r := range rollupRanges(lo, hi, step) {
			if err := s.read(ctx, stmt, r.span, w, r.lo, r.hi); err != nil {
				return nil, fmt.Errorf("sqlite: rollups: %w", err)
			}
		}
	}
	return s.result(), nil
}

// rollupRows reads one workload's rows of one span over a range of minutes, and
// rollupFirst finds the first of those minutes; rollupNextWorkload finds the workload
// after the one given. Each is a seek in the primary key (TestRollupQueriesUseThePrimaryKey).
const (
	rollupRows = `SELECT minute, workload, route, model, calls, errors, prompt_tokens,
		completion_tokens, cost_usd, second_cost_usd, reference_cost_usd, compared, passed,
		agreement_sum, guard_checked, guard_failed, latency
		FROM call_rollups WHERE span = ? AND workload = ? AND minute >= ? AND minute < ?`
	rollupFirst = `SELECT min(minute) FROM call_rollups
		WHERE span = ? AND workload = ? AND minute >= ? AND minute < ?`
	rollupNextWorkload = `SELECT workload FROM call_rollups WHERE span = ? AND workload > ?
		ORDER BY workload LIMIT 1`
)

// rollupWorkloads returns every workload key with rollups, one seek each: every
// call is in a day row, and there are fewest of those.
func rollupWorkloads(ctx context.Context, tx *sql.Tx) ([]string, error) {
	stmt, err := tx.PrepareContext(ctx, rollupNextWorkload)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	var out []string
	for w := allWorkloads; ; {
		err := stmt.QueryRowContext(ctx, rollupSpans[len(rollupSpans)-1], w).Scan(&w)
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
}

// noSince and noUntil stand for a zero Since and Until in minutes: multiples of every
// span, far beyond any time a call can have, and far from overflowing.
const noSince, noUntil = -1440 << 40, 1440 << 40

// rollupRange is the minutes [lo, hi) of the rows of one span.
type rollupRange struct{ span, lo, hi int64 }

// rollupRanges says which rows of call_rollups sum to the buckets of step minutes
// (0: one bucket) over the minutes [lo, hi), which are multiples of step. Each bucket
// is read from the coarsest span that divides step; for step 0, [lo, hi) is covered
// by day rows in the middle, then hour rows, then minute rows at its ends.
func rollupRanges(lo, hi, step int64) []rollupRange {
	if step > 0 {
		span := rollupSpans[0]
		for _, s := range rollupSpans {
			if step%s == 0 {
				span = s
			}
		}
		return []rollupRange{{span, lo, hi}}
	}
	var cover func(lo, hi int64, spans []int64) []rollupRange
	cover = func(lo, hi int64, spans []int64) []rollupRange {
		if lo >= hi {
			return nil
		}
		span := spans[len(spans)-1]
		a, b := ceilDiv(lo, span)*span, floorDiv(hi, span)*span
		if span == 1 {
			return []rollupRange{{1, lo, hi}}
		}
		if a >= b {
			return cover(lo, hi, spans[:len(spans)-1])
		}
		return slices.Concat(cover(lo, a, spans[:len(spans)-1]), []rollupRange{{span, a, b}},
			cover(b, hi, spans[:len(spans)-1]))
	}
	return cover(lo, hi, rollupSpans[:])
}

// rollupSummer sums rows of call_rollups into the buckets and dimensions f asks for.
type rollupSummer struct {
	f     store.RollupFilter
	step  int64     // minutes; 0 for one bucket
	start time.Time // for step 0, the bucket's start
	sums  map[rollupGroup]*store.Rollup
}

// rollupGroup is one bucket (its start in minutes; 0 for step 0) and the dimensions a
// result is split by; those not asked for are "".
type rollupGroup struct {
	bucket                 int64
	workload, route, model string
}

func (s *rollupSummer) read(ctx context.Context, stmt *sql.Stmt, args ...any) error {
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		r                      store.Rollup
		minute                 int64
		workload, route, model string
		latency                sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&minute, &workload, &route, &model, &r.Calls, &r.Errors,
			&r.PromptTokens, &r.CompletionTokens, &r.CostUSD, &r.SecondCostUSD, &r.ReferenceCostUSD,
			&r.Compared, &r.Passed, &r.AgreementSum, &r.GuardChecked, &r.GuardFailed, &latency); err != nil {
			return err
		}
		g := rollupGroup{route: route}
		if s.step > 0 {
			g.bucket = floorDiv(minute, s.step) * s.step
		}
		if s.f.ByWorkload {
			g.workload = workload
		}
		if s.f.ByModel {
			g.model = model
		}
		sum := s.sums[g]
		if sum == nil {
			sum = &store.Rollup{Start: s.start, Workload: g.workload, Route: store.Route(route), Model: g.model}
			if s.step > 0 {
				sum.Start = minuteTime(g.bucket)
			}
			s.sums[g] = sum
		}
		sum.Add(&r) // r.Latency stays empty: the histogram is added from its bytes
		if err := addHistogram(&sum.Latency, latency); err != nil {
			return fmt.Errorf("rollup at minute %d: %w", minute, err)
		}
	}
	return rows.Err()
}

// result returns the sums in order of start, workload, route and model.
func (s *rollupSummer) result() []store.Rollup {
	if len(s.sums) == 0 {
		return nil
	}
	out := make([]store.Rollup, 0, len(s.sums))
	for _, g := range slices.SortedFunc(maps.Keys(s.sums), func(a, b rollupGroup) int {
		return cmp.Or(cmp.Compare(a.bucket, b.bucket), strings.Compare(a.workload, b.workload),
			strings.Compare(a.route, b.route), strings.Compare(a.model, b.model))
	}) {
		out = append(out, *s.sums[g])
	}
	return out
}

func minuteTime(m int64) time.Time { return time.Unix(m*60, 0).UTC() }

// floorDiv and ceilDiv divide rounding down and up, for times before 1970 too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
