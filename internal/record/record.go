// Package record is the asynchronous recorder between the gateway and the store: a
// bounded queue the hot path enqueues calls to without waiting for the store, and one
// writer that batches them into InsertCalls, retries failed batches, and counts every
// call it cannot keep. Nothing is dropped silently.
//
// The writer also runs Options.Prepare on each call before writing it: that is where
// the composition root plugs in redaction and encryption, so that they happen off the
// request path and before anything reaches the store.
//
// It is not a store (it keeps nothing itself once Close returns) and it does not decide
// what a call contains: it knows neither redaction nor keys, only that a call Prepare
// fails on is never written.
package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/store"
)

// Inserter is the part of store.Store the recorder writes to.
type Inserter interface {
	// InsertCalls writes calls in one transaction: all or none.
	InsertCalls(ctx context.Context, calls []store.Call) error
}

var _ Inserter = store.Store(nil)

// Overflow says what Enqueue does when the queue is full.
type Overflow string

// Overflow policies.
const (
	// Block waits up to BlockTimeout for room, then drops the call.
	Block Overflow = "block"
	// Drop drops the call at once.
	Drop Overflow = "drop"
)

// Errors Enqueue returns. Either way the call is not recorded, and it is counted.
var (
	// ErrDropped means the queue was full.
	ErrDropped = errors.New("record: queue full, call dropped")
	// ErrClosed means the recorder is closed.
	ErrClosed = errors.New("record: recorder closed, call dropped")
)

// Reasons a call is dropped; the values of the "reason" label of
// downshift_records_dropped_total.
const (
	ReasonQueueFull   = "queue_full"
	ReasonClosed      = "closed"
	ReasonWriteFailed = "write_failed"
	// ReasonPrepareFailed counts calls Options.Prepare returned an error for (or
	// panicked on). They are never written, so no call that failed to be redacted or
	// sealed reaches the store in plaintext.
	ReasonPrepareFailed = "prepare_failed"
)

// reasons lists every drop reason, in the order the drop log reports them.
var reasons = []string{ReasonQueueFull, ReasonClosed, ReasonWriteFailed, ReasonPrepareFailed}

// Defaults for zero Options fields.
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 256
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultBlockTimeout  = 50 * time.Millisecond
	DefaultRetries       = 3
	DefaultRetryBackoff  = 100 * time.Millisecond
)

// Options configure a Recorder. Zero fields take the documented defaults.
type Options struct {
	// Store is where calls are written. Required.
	Store Inserter
	// QueueSize bounds the calls accepted but not yet written. Default 10000.
	QueueSize int
	// BatchSize is the most calls written in one InsertCalls. Default 256.
	BatchSize int
	// FlushInterval is the longest a call waits for its batch to fill. Default 100ms.
	FlushInterval time.Duration
	// Overflow is what Enqueue does when the queue is full. Default Block.
	Overflow Overflow
	// BlockTimeout bounds Enqueue's wait under Block. Default 50ms.
	BlockTimeout time.Duration
	// Retries is how many times a failed batch is tried again before its calls are
	// tried one by one and those that still fail are dropped. Default 3; negative
	// means none.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles for each next one.
	// Default 100ms.
	RetryBackoff time.Duration
	// Logger receives drop reports (rate-limited, never payloads). Default: discarded.
	Logger *slog.Logger
	// Registerer receives the recorder's metrics. Default: not registered.
	Registerer prometheus.Registerer

	// Prepare, when set, runs on every call in the writer, after the call is taken
	// from the queue and before its batch is written: it is where redaction and
	// sealing happen, never on the request path. It may change the call in place. A
	// call Prepare returns an error for, or panics on, is not written at all and is
	// counted as dropped ("prepare_failed"); the error is logged, so it must not quote
	// the payload. Prepare runs once per call, not again when a write is retried, and
	// on PrepareWorkers goroutines at once, each with a different call.
	Prepare func(*store.Call) error
	// PrepareWorkers is how many goroutines run Prepare over a batch, since redaction
	// can cost more CPU than the write. Default GOMAXPROCS-1 (at least 1), leaving a
	// processor to the request handlers; 1 runs Prepare in the writer goroutine.
	PrepareWorkers int
}

// Stats are the recorder's counters since New. Once Close has returned nil,
// Accepted == Written + DroppedWriteFailed + DroppedPrepareFailed.
type Stats struct {
	Accepted uint64 // calls Enqueue took
	Written  uint64 // calls the store has
	Dropped  uint64 // all drops: the sum of the four below

	DroppedQueueFull     uint64 // refused by Enqueue: queue full
	DroppedClosed        uint64 // refused by Enqueue after Close, or accepted but not written when Close's context ended
	DroppedWriteFailed   uint64 // accepted, but the store refused them after retries
	DroppedPrepareFailed uint64 // accepted, but Options.Prepare failed on them, so they were not written
}

// Recorder queues calls and writes them to the store in batches. Its methods are safe
// for concurrent use. Start it, Enqueue from any goroutine, then Close it once.
type Recorder struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	// mu orders Enqueue's sends against Close's close of queue: Enqueue holds it for
	// reading while it sends, Close for writing while it closes.
	mu     sync.RWMutex
	closed bool
	queue  chan store.Call

	startOnce sync.Once
	done      chan struct{} // closed when the writer has exited
	abort     context.CancelFunc
	writeCtx  context.Context // cancelled when Close gives up waiting

	accepted, written                                  atomic.Uint64
	dropFull, dropClosed, dropWriteErr, dropPrepareErr atomic.Uint64

	drops dropLog
}

// New returns a Recorder that is not yet writing; call Start.
func New(opts Options) (*Recorder, error) {
	if opts.Store == nil {
		return nil, errors.New("record: Options.Store is nil")
	}
	switch opts.Overflow {
	case "":
		opts.Overflow = Block
	case Block, Drop:
	default:
		return nil, fmt.Errorf("record: unknown overflow %q (want %q or %q)", opts.Overflow, Block, Drop)
	}
	if opts.QueueSize < 0 || opts.BatchSize < 0 || opts.FlushInterval < 0 || opts.BlockTimeout < 0 || opts.RetryBackoff < 0 || opts.PrepareWorkers < 0 {
		return nil, errors.New("record: negative queue size, batch size, worker count or duration in Options")
	}
	opts.QueueSize = cmpOr(opts.QueueSize, DefaultQueueSize)
	opts.BatchSize = cmpOr(opts.BatchSize, DefaultBatchSize)
	opts.FlushInterval = cmpOr(opts.FlushInterval, DefaultFlushInterval)
	opts.BlockTimeout = cmpOr(opts.BlockTimeout, DefaultBlockTimeout)
	opts.RetryBackoff = cmpOr(opts.RetryBackoff, DefaultRetryBackoff)
	opts.PrepareWorkers = cmpOr(opts.PrepareWorkers, max(runtime.GOMAXPROCS(0)-1, 1))
	switch {
	case opts.Retries == 0:
		opts.Retries = DefaultRetries
	case opts.Retries < 0:
		opts.Retries = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		opts:     opts,
		log:      log,
		queue:    make(chan store.Call, opts.QueueSize),
		done:     make(chan struct{}),
		writeCtx: ctx,
		abort:    cancel,
	}
	r.drops.log = log
	r.m = newMetrics(func() float64 { return float64(len(r.queue)) })
	if opts.Registerer != nil {
		if err := r.m.register(opts.Registerer); err != nil {
			cancel()
			return nil, fmt.Errorf("record: registering metrics: %w", err)
		}
	}
	return r, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Start starts the writer. Calls enqueued before Start wait in the queue. Calling
// Start more than once, or after Close, does nothing.
func (r *Recorder) Start() {
	r.startOnce.Do(func() { go r.write() })
}

// Enqueue hands c to the recorder. It returns nil once c is queued; the write happens
// later. It never waits longer than BlockTimeout: when the queue stays full it returns
// ErrDropped, and after Close it returns ErrClosed. Every refused call is counted.
func (r *Recorder) Enqueue(c store.Call) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		r.dropped(ReasonClosed, 1, nil)
		return ErrClosed
	}
	select {
	case r.queue <- c:
		r.accepted.Add(1)
		return nil
	default:
	}
	if r.opts.Overflow == Block {
		t := time.NewTimer(r.opts.BlockTimeout)
		defer t.Stop()
		select {
		case r.queue <- c:
			r.accepted.Add(1)
			return nil
		case <-t.C:
		}
	}
	r.dropped(ReasonQueueFull, 1, nil)
	return ErrDropped
}

// Close stops accepting calls, writes every call already accepted, and returns when
// they are written. If ctx ends first, Close stops the writer, counts the calls it had
// not written as dropped ("closed") and returns ctx's error. Only the first Close
// waits; later ones return nil at once.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.queue)
	r.mu.Unlock()

	r.Start() // so that a recorder never started still drains
	defer r.drops.flush()
	select {
	case <-r.done:
		r.abort()
		return nil
	case <-ctx.Done():
		r.abort()
		<-r.done
		return fmt.Errorf("record: close: %w", ctx.Err())
	}
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() Stats {
	s := Stats{
		Accepted:           r.accepted.Load(),
		Written:            r.written.Load(),
		DroppedQueueFull:   r.dropFull.Load(),
		DroppedClosed:      r.dropClosed.Load(),
		DroppedWriteFailed: r.dropWriteErr.Load(),

		DroppedPrepareFailed: r.dropPrepareErr.Load(),
	}
	s.Dropped = s.DroppedQueueFull + s.DroppedClosed + s.DroppedWriteFailed + s.DroppedPrepareFailed
	return s
}

// write is the writer goroutine: it batches the queue into the store until the queue
// is closed and empty, or Close gives up.
func (r *Recorder) write() {
	defer close(r.done)
	batch := make([]store.Call, 0, r.opts.BatchSize)
	timer := time.NewTimer(r.opts.FlushInterval)
	timer.Stop()
	defer timer.Stop()

	for {
		c, ok := <-r.queue
		if !ok {
			return
		}
		batch = append(batch, c)
		open := r.fill(&batch, timer)
		r.flush(r.prepare(batch))
		clear(batch) // drop the payloads before the next batch
		batch = batch[:0]
		if !open {
			return
		}
	}
}

// fill adds queued calls to batch until it is full, FlushInterval has passed since its
// first call, or the queue is closed and empty (then it returns false).
func (r *Recorder) fill(batch *[]store.Call, timer *time.Timer) (open bool) {
	armed := false
	defer func() {
		if armed {
			timer.Stop()
		}
	}()
	for len(*batch) < r.opts.BatchSize {
		// Take what is already there without touching the timer: under load the
		// batch fills from the backlog at once.
		select {
		case c, ok := <-r.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, c)
			continue
		default:
		}
		if !armed {
			timer.Reset(r.opts.FlushInterval)
			armed = true
		}
		select {
		case c, ok := <-r.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, c)
		case <-timer.C:
			armed = false
			return true
		}
	}
	return true
}

// prepare runs Options.Prepare on every call of batch, on up to PrepareWorkers
// goroutines, and returns the calls it succeeded on, in order, in batch's own array.
// The calls it failed on are counted as dropped and never written. If Close gives up
// while it runs, it stops and returns nothing: the calls not dropped for Prepare are
// counted as closed, since none of them may be written half prepared.
func (r *Recorder) prepare(batch []store.Call) []store.Call {
	if r.opts.Prepare == nil || len(batch) == 0 {
		return batch
	}
	ctx := r.writeCtx
	errs := make([]error, len(batch))
	if workers := min(r.opts.PrepareWorkers, len(batch)); workers <= 1 {
		for i := range batch {
			if ctx.Err() != nil {
				break
			}
			errs[i] = r.prepareOne(&batch[i])
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					i := int(next.Add(1)) - 1
					if i >= len(batch) {
						return
					}
					errs[i] = r.prepareOne(&batch[i])
				}
			})
		}
		wg.Wait()
	}

	kept := batch[:0]
	var failed int
	var cause error
	for i := range batch {
		if errs[i] != nil {
			failed++
			cause = cmpOr(cause, errs[i])
			continue
		}
		kept = append(kept, batch[i])
	}
	if failed > 0 {
		r.dropped(ReasonPrepareFailed, failed, cause)
	}
	if ctx.Err() != nil {
		r.dropped(ReasonClosed, len(kept), ctx.Err())
		return nil
	}
	return kept
}

// prepareOne runs Prepare on c and turns a panic into an error, so that one call a
// redactor trips on is dropped instead of taking the gateway down. The error names the
// panic's type only: a panic value may hold a piece of the payload.
func (r *Recorder) prepareOne(c *store.Call) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("record: Prepare panicked (%T)", p)
		}
		// Preparation shares the processors with request handlers. Yielding after each
		// call lets a handler that became runnable wait behind one call's redaction
		// (~0.2 ms) instead of a scheduler time slice (10 ms): without it, the
		// gateway's p99 at concurrency 1 rose to 17 ms on one pinned core.
		runtime.Gosched()
	}()
	return r.opts.Prepare(c)
}

// flush writes batch, retrying with backoff. When every try fails it writes the calls
// one at a time, so that one call the store refuses does not cost the others, and
// counts those that still fail.
func (r *Recorder) flush(batch []store.Call) {
	if len(batch) == 0 {
		return
	}
	ctx := r.writeCtx
	if ctx.Err() != nil {
		r.dropped(ReasonClosed, len(batch), ctx.Err())
		return
	}
	start := time.Now()
	err := r.opts.Store.InsertCalls(ctx, batch)
	r.m.batchDuration.Observe(time.Since(start).Seconds())
	backoff := r.opts.RetryBackoff
	for try := 0; err != nil && try < r.opts.Retries; try++ {
		r.log.Debug("record: batch write failed; retrying", "calls", len(batch), "retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			break
		}
		backoff *= 2
		start = time.Now()
		err = r.opts.Store.InsertCalls(ctx, batch)
		r.m.batchDuration.Observe(time.Since(start).Seconds())
	}
	if err == nil {
		r.wrote(len(batch))
		return
	}
	if ctx.Err() != nil {
		r.dropped(ReasonClosed, len(batch), err)
		return
	}
	if len(batch) == 1 {
		r.dropped(ReasonWriteFailed, 1, err)
		return
	}
	for i := range batch {
		if ctx.Err() != nil {
			r.dropped(ReasonClosed, len(batch)-i, ctx.Err())
			return
		}
		if err := r.opts.Store.InsertCalls(ctx, batch[i:i+1]); err != nil {
			r.dropped(ReasonWriteFailed, 1, err)
			continue
		}
		r.wrote(1)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *Recorder) wrote(n int) {
	r.written.Add(uint64(n))
	r.m.written.Add(float64(n))
}

// dropped counts n dropped calls and reports them to the log, rate-limited.
func (r *Recorder) dropped(reason string, n int, cause error) {
	switch reason {
	case ReasonQueueFull:
		r.dropFull.Add(uint64(n))
	case ReasonClosed:
		r.dropClosed.Add(uint64(n))
	case ReasonWriteFailed:
		r.dropWriteErr.Add(uint64(n))
	case ReasonPrepareFailed:
		r.dropPrepareErr.Add(uint64(n))
	}
	r.m.dropped.WithLabelValues(reason).Add(float64(n))
	r.drops.report(reason, n, cause)
}

// dropLogEvery is the least time between two drop reports in the log; drops in
// between are summed into the next report, so a flood of drops is one line a second.
const dropLogEvery = time.Second

// dropLog reports drops to the log at most once per dropLogEvery. It logs counts,
// reasons and the store's error, never a call's payload.
type dropLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	last    time.Time
	pending map[string]int
}

func (d *dropLog) report(reason string, n int, cause error) {
	d.mu.Lock()
	if d.pending == nil {
		d.pending = make(map[string]int)
	}
	d.pending[reason] += n
	now := time.Now()
	if now.Sub(d.last) < dropLogEvery {
		d.mu.Unlock()
		return
	}
	d.last = now
	d.logPendingLocked(cause)
}

// flush logs the drops not yet reported, so the last ones are not lost at Close.
func (d *dropLog) flush() {
	d.mu.Lock()
	d.logPendingLocked(nil)
}

// logPendingLocked logs and resets the pending counts; it unlocks d.mu before logging.
func (d *dropLog) logPendingLocked(cause error) {
	attrs := make([]any, 0, 2*len(d.pending)+2)
	for _, r := range reasons {
		if d.pending[r] > 0 {
			attrs = append(attrs, r, d.pending[r])
		}
	}
	clear(d.pending)
	d.mu.Unlock()
	if len(attrs) == 0 {
		return
	}
	if cause != nil {
		attrs = append(attrs, "err", cause.Error())
	}
	d.log.Warn("record: calls dropped, not recorded", attrs...)
}
