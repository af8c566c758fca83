package record_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/record"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

func testKeyring(t testing.TB) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", Env: "K1"}}},
		func(string) string { return strings.Repeat("ab", 32) })
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrepareSealsEveryCallBeforeItIsWritten(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := testKeyring(t)
	r := newRecorder(t, record.Options{Store: db, BatchSize: 16, Prepare: k.SealCall, PrepareWorkers: 4})
	r.Start()
	const n = 100
	for i := range n {
		c := call(i)
		c.Response = fmt.Appendf(nil, `{"answer":"secret-answer-%d"}`, i)
		if err := r.Enqueue(c); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, r)
	if st := r.Stats(); st.Written != n || st.Dropped != 0 {
		t.Fatalf("Stats = %+v, want %d written", st, n)
	}

	calls, err := db.ListCalls(ctx, store.Filter{Limit: 1000, Ascending: true, WithPayloads: true})
	if err != nil || len(calls) != n {
		t.Fatalf("ListCalls = %d calls, %v", len(calls), err)
	}
	for i, c := range calls {
		if c.KeyID != "k1" {
			t.Fatalf("call %s stored with KeyID %q, want k1", c.ID, c.KeyID)
		}
		if bytes.Contains(c.Request, []byte("secret-payload")) || bytes.Contains(c.Response, []byte("secret-answer")) {
			t.Fatalf("call %s stored in plaintext", c.ID)
		}
		if err := k.OpenCall(&c); err != nil {
			t.Fatalf("OpenCall: %v", err)
		}
		if want := call(i); c.ID != want.ID || !bytes.Equal(c.Request, want.Request) ||
			string(c.Response) != fmt.Sprintf(`{"answer":"secret-answer-%d"}`, i) {
			t.Errorf("call %d opened to %s %q %q", i, c.ID, c.Request, c.Response)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("secret-payload")) || bytes.Contains(b, []byte("secret-answer")) {
			t.Errorf("%s holds plaintext payload", filepath.Base(p))
		}
	}
}

func TestCallsPrepareFailsOnAreNeverWritten(t *testing.T) {
	s := &memStore{}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	k := testKeyring(t)
	prepare := func(c *store.Call) error {
		var i int
		fmt.Sscanf(c.ID, "call-%d", &i)
		switch i % 4 {
		case 1:
			// Half done: the request is changed, then the call fails. It must not be
			// written, changed or not.
			c.Request = []byte(`{"redacted":true}`)
			return errors.New("redactor out of patience")
		case 2:
			panic(fmt.Sprintf("bug near %s", c.Request))
		}
		return k.SealCall(c)
	}
	r := newRecorder(t, record.Options{
		Store: s, BatchSize: 8, Prepare: prepare, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for i := range 20 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)

	var want []string
	for i := 0; i < 20; i += 4 {
		want = append(want, call(i).ID, call(i+3).ID)
	}
	if got := s.ids(); !slices.Equal(got, want) {
		t.Errorf("stored %v, want only the calls Prepare succeeded on, in order: %v", got, want)
	}
	for _, c := range s.calls {
		if c.KeyID != "k1" {
			t.Errorf("call %s stored unsealed", c.ID)
		}
	}
	st := r.Stats()
	if want := (record.Stats{Accepted: 20, Written: 10, Dropped: 10, DroppedPrepareFailed: 10}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if got := dropped(t, reg, record.ReasonPrepareFailed); got != 10 {
		t.Errorf(`downshift_records_dropped_total{reason="prepare_failed"} = %v, want 10`, got)
	}
	if !strings.Contains(logs.String(), "prepare_failed=") {
		t.Errorf("log does not report prepare failures:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "secret-payload") || strings.Contains(logs.String(), "call-0") {
		t.Errorf("log names calls or payloads:\n%s", logs.String())
	}
}

func TestPrepareRunsOncePerCallAcrossRetries(t *testing.T) {
	var tries atomic.Int32
	s := &memStore{insert: func(context.Context, []store.Call) error {
		if tries.Add(1) <= 2 {
			return errors.New("busy")
		}
		return nil
	}}
	var mu sync.Mutex
	runs := map[string]int{}
	prepare := func(c *store.Call) error {
		mu.Lock()
		runs[c.ID]++
		mu.Unlock()
		c.Request = append(c.Request, '!')
		return nil
	}
	r := newRecorder(t, record.Options{Store: s, Retries: 3, RetryBackoff: time.Millisecond, Prepare: prepare})
	for i := range 5 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)
	for i := range 5 {
		if n := runs[call(i).ID]; n != 1 {
			t.Errorf("Prepare ran %d times on call %d, want once", n, i)
		}
	}
	for _, c := range s.calls {
		if !bytes.HasSuffix(c.Request, []byte("}!")) {
			t.Errorf("stored request %q, want it prepared exactly once", c.Request)
		}
	}
}

func TestPrepareRunsOnWorkersAndKeepsOrder(t *testing.T) {
	s := &memStore{}
	var running, most atomic.Int32
	prepare := func(c *store.Call) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(200 * time.Microsecond)
		running.Add(-1)
		return nil
	}
	r := newRecorder(t, record.Options{Store: s, BatchSize: 64, Prepare: prepare, PrepareWorkers: 4})
	var want []string
	for i := range 200 {
		want = append(want, call(i).ID)
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	closeNow(t, r)
	if got := s.ids(); !slices.Equal(got, want) {
		t.Errorf("stored in order %v, want enqueue order", got)
	}
	if m := most.Load(); m < 2 || m > 4 {
		t.Errorf("at most %d Prepare calls ran at once, want 2..4 with PrepareWorkers 4", m)
	}
}

func TestCloseStopsPrepareAndWritesNothingHalfPrepared(t *testing.T) {
	s := &memStore{}
	entered := make(chan struct{})
	var once sync.Once
	prepare := func(c *store.Call) error {
		once.Do(func() { close(entered) })
		time.Sleep(5 * time.Millisecond)
		return nil
	}
	r := newRecorder(t, record.Options{Store: s, BatchSize: 100, Prepare: prepare, PrepareWorkers: 1})
	for i := range 100 {
		if err := r.Enqueue(call(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if got := s.ids(); len(got) != 0 {
		t.Errorf("%d calls written after Close gave up mid-batch", len(got))
	}
	if st := r.Stats(); st != (record.Stats{Accepted: 100, Dropped: 100, DroppedClosed: 100}) {
		t.Errorf("Stats = %+v, want all 100 dropped as closed", st)
	}
}

func TestNewRejectsNegativePrepareWorkers(t *testing.T) {
	if _, err := record.New(record.Options{Store: &memStore{}, PrepareWorkers: -1}); err == nil {
		t.Error("New with PrepareWorkers -1 succeeded")
	}
}
