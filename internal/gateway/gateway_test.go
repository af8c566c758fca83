package gateway

import (
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// memRecorder keeps enqueued calls in memory.
type memRecorder struct {
	mu    sync.Mutex
	calls []store.Call
}

func (m *memRecorder) Enqueue(c store.Call) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, c)
	return nil
}

func (m *memRecorder) all() []store.Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.Call(nil), m.calls...)
}

// testConfig serves "big" (reference, alias gpt-4o) from the upstream at url.
func testConfig(url string) config.Config {
	return config.Config{
		Backends: []config.Backend{{Name: "up", URL: url + "/v1"}},
		Models: []config.Model{
			{Name: "big", Backend: "up", UpstreamName: "big-upstream", Role: "reference",
				Price: config.Price{InputPerMTok: 2.5, OutputPerMTok: 10, CachedInputPerMTok: 1.25}},
		},
		Aliases: map[string]string{"gpt-4o": "big"},
	}
}

type gwOptions struct {
	cfg      config.Config
	maxBody  int64
	recorder Recorder
}

// startGateway serves a gateway built from cfg on a real socket.
func startGateway(t *testing.T, o gwOptions) (*httptest.Server, *Gateway) {
	t.Helper()
	cat, err := backend.NewCatalog(o.cfg, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{Catalog: cat, Recorder: o.recorder, MaxBodyBytes: o.maxBody})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv, gw
}

// waitCalls waits until rec holds n calls (handlers enqueue after the last byte, so a
// client can see its answer a moment before the record exists).
func waitCalls(t *testing.T, rec *memRecorder, n int) []store.Call {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls := rec.all()
		if len(calls) >= n || time.Now().After(deadline) {
			if len(calls) != n {
				t.Fatalf("recorded %d calls, want %d", len(calls), n)
			}
			return calls
		}
		time.Sleep(5 * time.Millisecond)
	}
}
