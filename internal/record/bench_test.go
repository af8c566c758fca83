package record_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/record"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// benchRequest is shaped like a tau-bench airline call: a long system policy, tool
// schemas and a few turns, about 10 KB of JSON.
func benchRequest() []byte {
	policy := strings.Repeat("You are an airline agent. Follow the policy; confirm before booking. ", 80)
	var tools strings.Builder
	for i := range 12 {
		if i > 0 {
			tools.WriteString(",")
		}
		fmt.Fprintf(&tools, `{"type":"function","function":{"name":"tool_%d","description":"Looks up a reservation by id and returns its flights, passengers and payment history.","parameters":{"type":"object","properties":{"reservation_id":{"type":"string"}},"required":["reservation_id"]}}}`, i)
	}
	return fmt.Appendf(nil, `{"model":"gpt-4o","messages":[{"role":"system","content":%q},{"role":"user","content":"I want to change my flight to tomorrow."}],"tools":[%s]}`,
		policy, tools.String())
}

// BenchmarkEnqueueIntoSQLite measures end-to-end recording throughput: calls enqueued
// from parallel goroutines until all are written to a SQLite file.
func BenchmarkEnqueueIntoSQLite(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "calls.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r, err := record.New(record.Options{Store: db, BlockTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	r.Start()
	req := benchRequest()
	resp := []byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"tool_3","arguments":"{\"reservation_id\":\"ZFA04Y\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":2600,"completion_tokens":24,"total_tokens":2624}}`)
	b.SetBytes(int64(len(req) + len(resp)))
	var seq atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			c := store.Call{
				ID: fmt.Sprintf("01BENCH%019d", i), StartedAt: start, FinishedAt: start,
				Workload: "airline", RequestedModel: "gpt-4o", ServedModel: "gpt-4o", Status: 200,
				PromptTokens: 2600, CompletionTokens: 24, Request: req, Response: resp,
			}
			if err := r.Enqueue(c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := r.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	elapsed := time.Since(start)
	if st := r.Stats(); st.Written != uint64(b.N) {
		b.Fatalf("wrote %d of %d calls: %+v", st.Written, b.N, st)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
}

// BenchmarkPreparedIntoSQLite measures recording throughput when every call is sealed,
// or redacted and sealed, in the writer, with Prepare on one goroutine and on
// GOMAXPROCS.
// The redaction stand-in is an RE2 scan of both payloads for e-mail addresses and card
// numbers, which costs about what a pattern redactor does; sealing is package seal's.
func BenchmarkPreparedIntoSQLite(b *testing.B) {
	k := testKeyring(b)
	pii := regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}|\b[0-9]{13,19}\b`)
	prepare := func(c *store.Call) error {
		c.Request = pii.ReplaceAll(c.Request, []byte("<PII>"))
		c.Response = pii.ReplaceAll(c.Response, []byte("<PII>"))
		return k.SealCall(c)
	}
	b.Run("none", func(b *testing.B) { benchRecord(b, record.Options{}) })
	b.Run("seal/workers=1", func(b *testing.B) {
		benchRecord(b, record.Options{Prepare: k.SealCall, PrepareWorkers: 1})
	})
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("redact+seal/workers=%d", workers), func(b *testing.B) {
			benchRecord(b, record.Options{Prepare: prepare, PrepareWorkers: workers})
		})
	}
}

// benchRecord enqueues tau-bench-sized calls (~20 KB request, ~1 KB response) from
// parallel goroutines into a recorder with opts until all are written to SQLite.
func benchRecord(b *testing.B, opts record.Options) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "calls.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	opts.Store, opts.BlockTimeout = db, time.Minute
	r, err := record.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	r.Start()
	req := bytes.Repeat(benchRequest(), 2)
	resp := bytes.Repeat([]byte(`{"role":"assistant","content":"Your reservation ZFA04Y is confirmed; a receipt goes to mia.li@example.com."}`), 10)
	b.SetBytes(int64(len(req) + len(resp)))
	var seq atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			c := store.Call{ID: fmt.Sprintf("01BENCH%019d", i), StartedAt: start, Status: 200, Request: req, Response: resp}
			if err := r.Enqueue(c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := r.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := r.Stats(); st.Written != uint64(b.N) {
		b.Fatalf("wrote %d of %d calls: %+v", st.Written, b.N, st)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
