package record_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/record"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is an in-memory Inserter whose behaviour a test can script.
type memStore struct {
	mu      sync.Mutex
	calls   []store.Call
	batches []int // size of every InsertCalls, failed or not
	// insert, when set, runs before each InsertCalls; an error fails it.
	insert func(ctx context.Context, batch []store.Call) error
}

func (s *memStore) InsertCalls(ctx context.Context, batch []store.Call) error {
	s.mu.Lock()
	s.batches = append(s.batches, len(batch))
	hook := s.insert
	s.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, batch); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, batch...)
	return nil
}

func (s *memStore) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		out = append(out, c.ID)
	}
	return out
}

func (s *memStore) batchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func call(i int) store.Call {
	return store.Call{ID: fmt.Sprintf("call-%06d", i), Status: 200, Request: []byte(`{"secret-payload":1}`)}
}

func newRecorder(t *testing.T, opts record.Options) *record.Recorder {
	t.Helper()
	r, err := record.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func closeNow(t *testing.T, r *record.Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// gate is an insert hook that blocks every InsertCalls until released, and says when
// the first one has begun.
type gate struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hook(ctx context.Context, _ []store.Call) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestConcurrentEnqueueThenCloseLosesNothing(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newRecorder(t, record.Options{
		Store: db, QueueSize: 64, BatchSize: 16, FlushInterval: time.Millisecond,
		BlockTimeout: time.Millisecond,
	})
	r.Start()

	// Enqueuers keep going until they see ErrClosed, so Close races with them: every
	// call Enqueue accepted before or during Close must be stored, none after.
	const enqueuers = 32
	var accepted, refused atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range enqueuers {
		wg.Go(func() {
			for {
				err := r.Enqueue(call(int(next.Add(1))))
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, record.ErrDropped):
					refused.Add(1)
				case errors.Is(err, record.ErrClosed):
					refused.Add(1)
					return
				default:
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		})
	}
	for accepted.Load() < 3000 {
		time.Sleep(time.Millisecond)
	}
	closeNow(t, r)
	wg.Wait()

	n, err := db.CountCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if int64(n) != accepted.Load() {
		t.Errorf("stored %d calls, Enqueue accepted %d", n, accepted.Load())
	}
	if st.Accepted != uint64(accepted.Load()) || st.Written != uint64(n) {
		t.Errorf("Stats = %+v, want Accepted %d, Written %d", st, accepted.Load(), n)
	}
	if st.DroppedWriteFailed != 0 || st.Dropped != uint64(refused.Load()) {
		t.Errorf("Stats = %+v, want %d dropped, none failed", st, refused.Load())
	}
}

func TestDropModeCountsEveryDrop(t *testing.T) {
	g := newGate()
	s := &memStore{insert: g.hook}
	reg := prometheus.NewRegistry()
	r := newRecorder(t, record.Options{Store: s, QueueSize: 10, BatchSize: 1, Overflow: record.Drop, Registerer: reg})
	r.Start()

	if err := r.Enqueue(call(0)); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the writer holds call 0; the queue is empty
	for i := 1; i <= 10; i++ {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatalf("Enqueue %d into a queue with room: %v", i, err)
		}
	}
	for i := 11; i <= 17; i++ {
		start := time.Now()
		if err := r.Enqueue(call(i)); !errors.Is(err, record.ErrDropped) {
			t.Fatalf("Enqueue %d into a full queue = %v, want ErrDropped", i, err)
		}
		if d := time.Since(start); d > 20*time.Millisecond {
			t.Errorf("Enqueue in Drop mode waited %v", d)
		}
	}
	if got := metric(t, reg, "downshift_record_queue_depth", nil); got != 10 {
		t.Errorf("queue depth gauge = %v, want 10", got)
	}
	close(g.release)
	closeNow(t, r)

	st := r.Stats()
	want := record.Stats{Accepted: 11, Written: 11, Dropped: 7, DroppedQueueFull: 7}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if got := dropped(t, reg, record.ReasonQueueFull); got != 7 {
		t.Errorf(`downshift_records_dropped_total{reason="queue_full"} = %v, want 7`, got)
	}
	if got := written(t, reg); got != 11 {
		t.Errorf("downshift_records_written_total = %v, want 11", got)
	}
	if got := s.ids(); len(got) != 11 || got[0] != "call-000000" || got[10] != "call-000010" {
		t.Errorf("stored %v, want calls 0..10", got)
	}
}

func TestBlockModeWaitsForRoomThenDrops(t *testing.T) {
	g := newGate()
	s := &memStore{insert: g.hook}
	r := newRecorder(t, record.Options{Store: s, QueueSize: 2, BatchSize: 1, BlockTimeout: 40 * time.Millisecond})
	r.Start()
	if err := r.Enqueue(call(0)); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	for i := 1; i <= 2; i++ {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	err := r.Enqueue(call(3))
	waited := time.Since(start)
	if !errors.Is(err, record.ErrDropped) {
		t.Fatalf("Enqueue into a queue that stays full = %v, want ErrDropped", err)
	}
	if waited < 40*time.Millisecond {
		t.Errorf("Enqueue gave up after %v, want it to wait BlockTimeout (40ms)", waited)
	}
	if waited > 2*time.Second {
		t.Errorf("Enqueue waited %v, far beyond BlockTimeout", waited)
	}

	close(g.release)
	closeNow(t, r)
	if st := r.Stats(); st.Accepted != 3 || st.Written != 3 || st.DroppedQueueFull != 1 {
		t.Errorf("Stats = %+v, want 3 accepted and written, 1 dropped queue_full", st)
	}
}

func TestBlockModeTakesCallWhenRoomAppears(t *testing.T) {
	s := &memStore{}
	r := newRecorder(t, record.Options{Store: s, QueueSize: 1, BlockTimeout: 10 * time.Second})
	if err := r.Enqueue(call(0)); err != nil { // fills the queue; no writer yet
		t.Fatal(err)
	}
	time.AfterFunc(20*time.Millisecond, r.Start) // the writer makes room
	if err := r.Enqueue(call(1)); err != nil {
		t.Fatalf("Enqueue while room appears = %v, want nil", err)
	}
	closeNow(t, r)
	if got := s.ids(); !slices.Equal(got, []string{"call-000000", "call-000001"}) {
		t.Errorf("stored %v", got)
	}
}

func TestFailingStoreIsRetriedThenCounted(t *testing.T) {
	failing := errors.New("disk on fire")
	s := &memStore{insert: func(context.Context, []store.Call) error { return failing }}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	r := newRecorder(t, record.Options{
		Store: s, BatchSize: 10, Retries: 2, RetryBackoff: time.Millisecond,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for i := range 3 { // queued before Start, so they form one batch
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)

	// One try and two retries of the batch, then each call alone.
	if got, want := s.batchSizes(), []int{3, 3, 3, 1, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("InsertCalls batch sizes = %v, want %v", got, want)
	}
	st := r.Stats()
	if want := (record.Stats{Accepted: 3, Dropped: 3, DroppedWriteFailed: 3}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if got := dropped(t, reg, record.ReasonWriteFailed); got != 3 {
		t.Errorf(`downshift_records_dropped_total{reason="write_failed"} = %v, want 3`, got)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("log does not report the store's error:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "secret-payload") {
		t.Errorf("log contains a payload:\n%s", logs.String())
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	var tries atomic.Int32
	s := &memStore{insert: func(context.Context, []store.Call) error {
		if tries.Add(1) <= 2 {
			return errors.New("busy")
		}
		return nil
	}}
	r := newRecorder(t, record.Options{Store: s, Retries: 3, RetryBackoff: time.Millisecond})
	for i := range 5 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)
	if st := r.Stats(); st.Written != 5 || st.Dropped != 0 {
		t.Errorf("Stats = %+v, want 5 written, none dropped", st)
	}
	if got := s.batchSizes(); !slices.Equal(got, []int{5, 5, 5}) {
		t.Errorf("batch sizes = %v, want the batch tried three times", got)
	}
}

func TestRefusedCallDoesNotCostItsBatch(t *testing.T) {
	s := &memStore{insert: func(_ context.Context, batch []store.Call) error {
		for _, c := range batch {
			if c.ID == "call-000002" {
				return errors.New("duplicate id")
			}
		}
		return nil
	}}
	r := newRecorder(t, record.Options{Store: s, Retries: 1, RetryBackoff: time.Millisecond})
	for i := range 5 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)
	want := []string{"call-000000", "call-000001", "call-000003", "call-000004"}
	if got := s.ids(); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if st := r.Stats(); st.Written != 4 || st.DroppedWriteFailed != 1 || st.Dropped != 1 {
		t.Errorf("Stats = %+v, want 4 written, 1 write_failed", st)
	}
}

func TestEnqueueAfterCloseIsErrClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &memStore{}
	r := newRecorder(t, record.Options{Store: s, Registerer: reg})
	r.Start()
	if err := r.Enqueue(call(0)); err != nil {
		t.Fatal(err)
	}
	closeNow(t, r)
	if err := r.Enqueue(call(1)); !errors.Is(err, record.ErrClosed) {
		t.Fatalf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if st := r.Stats(); st != (record.Stats{Accepted: 1, Written: 1, Dropped: 1, DroppedClosed: 1}) {
		t.Errorf("Stats = %+v", st)
	}
	if got := dropped(t, reg, record.ReasonClosed); got != 1 {
		t.Errorf(`downshift_records_dropped_total{reason="closed"} = %v, want 1`, got)
	}
	if got := s.ids(); !slices.Equal(got, []string{"call-000000"}) {
		t.Errorf("stored %v", got)
	}
}

func TestCloseNeverStartedStillDrains(t *testing.T) {
	s := &memStore{}
	r := newRecorder(t, record.Options{Store: s})
	for i := range 3 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, r)
	if got := len(s.ids()); got != 3 {
		t.Errorf("stored %d calls, want 3", got)
	}
}

func TestCloseIsBoundedByItsContext(t *testing.T) {
	g := newGate() // never released: the store hangs until the recorder gives up
	s := &memStore{insert: g.hook}
	r := newRecorder(t, record.Options{Store: s, BatchSize: 2, Retries: -1})
	for i := range 5 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	<-g.entered
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a 30ms context", d)
	}
	st := r.Stats()
	if want := (record.Stats{Accepted: 5, Dropped: 5, DroppedClosed: 5}); st != want {
		t.Errorf("Stats = %+v, want %+v: every accepted call written or counted", st, want)
	}
}

func TestPartialBatchIsWrittenAfterFlushInterval(t *testing.T) {
	s := &memStore{}
	r := newRecorder(t, record.Options{Store: s, BatchSize: 100, FlushInterval: 10 * time.Millisecond})
	r.Start()
	if err := r.Enqueue(call(0)); err != nil {
		t.Fatal(err)
	}
	// The writer counts a batch just after the store took it, so wait for both.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.ids()) == 0 || r.Stats().Written == 0 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(s.ids()) == 0 {
		t.Fatal("a lone call was not written within 5s of a 10ms flush interval")
	}
	if st := r.Stats(); st.Written != 1 {
		t.Errorf("Stats.Written = %d, want 1", st.Written)
	}
}

func TestBatchSizeCapsBatches(t *testing.T) {
	s := &memStore{}
	r := newRecorder(t, record.Options{Store: s, BatchSize: 4})
	for i := range 10 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)
	if got := s.batchSizes(); !slices.Equal(got, []int{4, 4, 2}) {
		t.Errorf("batch sizes = %v, want [4 4 2]", got)
	}
	want := make([]string, 10)
	for i := range want {
		want[i] = call(i).ID
	}
	if got := s.ids(); !slices.Equal(got, want) {
		t.Errorf("stored %v, want enqueue order %v", got, want)
	}
}

func TestDropsAreLoggedRateLimitedWithoutPayloads(t *testing.T) {
	var logs bytes.Buffer
	g := newGate()
	r := newRecorder(t, record.Options{
		Store: &memStore{insert: g.hook}, QueueSize: 1, BatchSize: 1, Overflow: record.Drop,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	r.Start()
	if err := r.Enqueue(call(0)); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	if err := r.Enqueue(call(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := r.Enqueue(call(2 + i)); !errors.Is(err, record.ErrDropped) {
			t.Fatalf("Enqueue = %v, want ErrDropped", err)
		}
	}
	close(g.release)
	closeNow(t, r)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	// One line at the first drop, one at Close with the rest.
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 1000 drops within a second, want 2:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(lines[0], "queue_full=1") || !strings.Contains(lines[1], "queue_full=999") {
		t.Errorf("log lines do not add up to 1000 drops:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "secret-payload") || strings.Contains(logs.String(), "call-0") {
		t.Errorf("log names calls or payloads:\n%s", logs.String())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := map[string]record.Options{
		"no store":         {},
		"unknown overflow": {Store: &memStore{}, Overflow: "spill"},
		"negative queue":   {Store: &memStore{}, QueueSize: -1},
	}
	for name, opts := range tests {
		if _, err := record.New(opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := record.New(record.Options{Store: &memStore{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := record.New(record.Options{Store: &memStore{}, Registerer: reg}); err == nil {
		t.Error("second recorder on the same registry: New succeeded")
	}
}

func TestMetricsAreExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	newRecorder(t, record.Options{Store: &memStore{}, Registerer: reg})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{
		"downshift_record_queue_depth", "downshift_records_written_total",
		"downshift_records_dropped_total", "downshift_record_batch_duration_seconds",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s not registered; have %v", want, names)
		}
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func dropped(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return metric(t, reg, "downshift_records_dropped_total", map[string]string{"reason": reason})
}

func written(t *testing.T, reg *prometheus.Registry) float64 {
	return metric(t, reg, "downshift_records_written_total", nil)
}
