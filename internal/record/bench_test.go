package record_test

import (
	"context"
	"fmt"
	"path/filepath"
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
