package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testCalls are three calls: two of workload "route" (one served by a candidate), one
// failed call without a workload.
func testCalls() []store.Call {
	return []store.Call{
		{
			ID: "01JX0000000000000000000001", StartedAt: t0, FinishedAt: t0.Add(1500 * time.Millisecond),
			Workload: "route", RequestedModel: "gpt-4o", ServedModel: "gpt-4o", Backend: "nim",
			Route: store.RouteReference, Status: 200, PromptTokens: 1200, CompletionTokens: 34,
			Latency: 1500 * time.Millisecond, TTFT: 250 * time.Millisecond, CostUSD: 0.0012345,
			Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"héllo"}]}`),
			Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`),
		},
		{
			ID: "01JX0000000000000000000002", StartedAt: t0.Add(time.Minute), FinishedAt: t0.Add(time.Minute + 80*time.Millisecond),
			Workload: "route", RequestedModel: "gpt-4o", ServedModel: "nemotron-nano-9b", Backend: "local",
			Route: store.RouteCandidate, Status: 200, PromptTokens: 1100, CompletionTokens: 20,
			TokensEstimated: true, Latency: 80 * time.Millisecond, CostUSD: 0.0000712,
			Request: []byte(`{"model":"gpt-4o"}`), Response: []byte("not json \x00"),
		},
		{
			ID: "01JX0000000000000000000003", StartedAt: t0.Add(2 * time.Minute), FinishedAt: t0.Add(2 * time.Minute),
			RequestedModel: "claude", ServedModel: "claude", Status: 502, ErrorType: "upstream_error",
			ErrorMessage: "bad gateway",
		},
	}
}

// testDB writes testCalls to a new SQLite file and returns its path.
func testDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.InsertCalls(ctx, testCalls()); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the downshift command line and returns its stdout; it fails the test when
// the exit code is not want.
func run(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(args, &out, &errOut); code != want {
		t.Fatalf("downshift %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), code, want, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func TestCallsListTable(t *testing.T) {
	db := testDB(t)
	out, _ := run(t, 0, "calls", "list", "--db", db)
	want := `ID                          TIME                  WORKLOAD  MODEL                    STATUS  TOKENS IN/OUT  LATENCY MS  COST $
01JX0000000000000000000003  2025-06-01T12:02:00Z  -         claude                   502     0/0            0           0.000000
01JX0000000000000000000002  2025-06-01T12:01:00Z  route     gpt-4o→nemotron-nano-9b  200     ~1100/20       80          0.000071
01JX0000000000000000000001  2025-06-01T12:00:00Z  route     gpt-4o                   200     1200/34        1500        0.001234
`
	if out != want {
		t.Errorf("calls list:\n%s\nwant:\n%s", out, want)
	}
}

func TestCallsListFilters(t *testing.T) {
	db := testDB(t)
	tests := []struct {
		args []string
		want []string // ids, by their last digit, in output order
	}{
		{[]string{"--workload", "route"}, []string{"2", "1"}},
		{[]string{"--model", "nemotron-nano-9b"}, []string{"2"}},
		{[]string{"--model", "gpt-4o"}, []string{"2", "1"}},
		{[]string{"--status", "error"}, []string{"3"}},
		{[]string{"--status", "ok"}, []string{"2", "1"}},
		{[]string{"--status", "502"}, []string{"3"}},
		{[]string{"--since", "2025-06-01T12:01:00Z"}, []string{"3", "2"}},
		{[]string{"--until", "2025-06-01T12:01:00Z"}, []string{"1"}},
		{[]string{"--since", "1h"}, nil}, // the calls are from 2025-06-01
		{[]string{"--limit", "1"}, []string{"3"}},
		{[]string{"--workload", "route", "--status", "ok", "--limit", "1"}, []string{"2"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, _ := run(t, 0, append([]string{"calls", "list", "--json", "--db", db}, tt.args...)...)
			var got []string
			for line := range strings.Lines(out) {
				var v struct{ ID string }
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				got = append(got, v.ID[len(v.ID)-1:])
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got calls %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCallsListJSONLeavesPayloadsOut(t *testing.T) {
	out, _ := run(t, 0, "calls", "list", "--json", "--limit", "1", "--workload", "route", "--db", testDB(t))
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if v["served_model"] != "nemotron-nano-9b" || v["latency_ms"] != 80.0 || v["tokens_estimated"] != true {
		t.Errorf("JSON line = %v", v)
	}
	if _, ok := v["request"]; ok {
		t.Errorf("list --json includes the request payload: %v", v)
	}
}

func TestCallsShowEmbedsPayloadsAsJSON(t *testing.T) {
	db := testDB(t)
	viewer := createKey(t, db, store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "analyst"})
	out, _ := run(t, 0, "calls", "show", "--db", db, "--key", viewer, "01JX0000000000000000000001")
	var v struct {
		ID        string
		LatencyMS float64 `json:"latency_ms"`
		TTFTMS    float64 `json:"ttft_ms"`
		Request   struct {
			Model    string
			Messages []struct{ Content string }
		}
		Response map[string]any
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("show output is not JSON: %v\n%s", err, out)
	}
	if v.Request.Model != "gpt-4o" || len(v.Request.Messages) != 1 || v.Request.Messages[0].Content != "héllo" {
		t.Errorf("request not embedded as JSON: %+v\n%s", v.Request, out)
	}
	if v.Response["choices"] == nil || v.LatencyMS != 1500 || v.TTFTMS != 250 {
		t.Errorf("show = %+v", v)
	}
	if !strings.Contains(out, "\n  \"request\": {\n    \"model\"") {
		t.Errorf("show output is not indented:\n%s", out)
	}

	// A payload that is not JSON is shown as a string.
	out, _ = run(t, 0, "calls", "show", "--db", db, "--key", viewer, "01JX0000000000000000000002")
	var w struct{ Response string }
	if err := json.Unmarshal([]byte(out), &w); err != nil || w.Response != "not json \x00" {
		t.Errorf("non-JSON response = %q, %v\n%s", w.Response, err, out)
	}
}

func TestCallsShowUnknownID(t *testing.T) {
	db := testDB(t)
	admin := createKey(t, db, store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "ops"})
	_, stderr := run(t, 1, "calls", "show", "--db", db, "--key", admin, "01JXNOPE")
	if !strings.Contains(stderr, `no call with id "01JXNOPE"`) {
		t.Errorf("stderr = %q", stderr)
	}
}

// Reading payloads from the command line takes an admin key and leaves an audit entry
// naming it; without one, or with a gateway key, nothing is printed or audited.
func TestCallsShowNeedsAnAdminKeyAndIsAudited(t *testing.T) {
	db := testDB(t)
	gw := createKey(t, db, store.Key{Kind: store.KeyGateway, Name: "agent"})
	viewer := createKey(t, db, store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "analyst"})
	const id = "01JX0000000000000000000001"
	for _, key := range []string{"", gw, "dsa_not-a-key"} {
		out, stderr := run(t, 1, "calls", "show", "--db", db, "--key", key, id)
		if out != "" || !strings.Contains(stderr, "admin key") {
			t.Errorf("key %q: stdout %q stderr %q", key, out, stderr)
		}
	}
	t.Setenv("DOWNSHIFT_KEY", viewer)
	run(t, 0, "calls", "show", "--db", db, id)
	st, err := openStore(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditReadPayload})
	if err != nil || len(es) != 1 || es[0].Target != id || es[0].ActorName != "analyst" {
		t.Errorf("audit = %+v (%v), want one read_payload of %s by analyst", es, err, id)
	}
}

func TestCallsStoreSelection(t *testing.T) {
	db := testDB(t)
	dir := t.TempDir()
	writeConfig := func(name, store string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(store), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("config names the database", func(t *testing.T) {
		cfg := writeConfig("ok.yaml", "store:\n  driver: sqlite\n  dsn: "+db+"\n")
		out, _ := run(t, 0, "calls", "list", "--json", "--config", cfg)
		if strings.Count(out, "\n") != 3 {
			t.Errorf("calls list with --config: %q", out)
		}
	})
	t.Run("db overrides config", func(t *testing.T) {
		cfg := writeConfig("elsewhere.yaml", "store:\n  dsn: "+filepath.Join(dir, "missing.db")+"\n")
		out, _ := run(t, 0, "calls", "list", "--json", "--config", cfg, "--db", db)
		if strings.Count(out, "\n") != 3 {
			t.Errorf("calls list with --db and --config: %q", out)
		}
	})
	t.Run("missing database is an error, not created", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.db")
		_, stderr := run(t, 1, "calls", "list", "--db", missing)
		if !strings.Contains(stderr, "no database at "+missing) {
			t.Errorf("stderr = %q", stderr)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("calls list created %s", missing)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"--status", "fine"}, {"--status", "42"}, {"--since", "yesterday"}, {"--until", "-1h"}, {"--limit", "-1"},
		} {
			_, stderr := run(t, 1, append([]string{"calls", "list", "--db", db}, args...)...)
			if !strings.Contains(stderr, args[0]) {
				t.Errorf("%v: stderr %q does not name the flag", args, stderr)
			}
		}
	})
}

func TestOpenStoreRejectsUnknownDriver(t *testing.T) {
	_, err := openStore(context.Background(), "postgres", "postgres://x")
	if err == nil || !strings.Contains(err.Error(), `store driver "postgres" is not supported`) {
		t.Errorf("openStore(postgres) = %v", err)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"1h", now.Add(-time.Hour), true},
		{"90s", now.Add(-90 * time.Second), true},
		{"2025-05-31T10:00:00Z", time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC), true},
		{"2025-05-31T10:00:00.5+02:00", time.Date(2025, 5, 31, 8, 0, 0, 5e8, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"2025-05-31", time.Time{}, false},
		{"soon", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTime("since", tt.in, now)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v (ok %t)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the follower and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCallsFollowPrintsNewCalls(t *testing.T) {
	ctx := context.Background()
	path := testDB(t)
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runCallsFollow(fctx, db, store.Filter{Workload: "route", Limit: 1}, 5*time.Millisecond, true, &out)
	}()

	waitFor := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) >= n && lines[0] != "" {
				var ids []string
				for _, l := range lines {
					var v struct{ ID string }
					if err := json.Unmarshal([]byte(l), &v); err != nil {
						t.Fatalf("line %q: %v", l, err)
					}
					ids = append(ids, v.ID)
				}
				return ids
			}
			if time.Now().After(deadline) {
				t.Fatalf("follow printed %q, want %d lines", out.String(), n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// The backlog: the newest route call only.
	if got := waitFor(1); strings.Join(got, ",") != "01JX0000000000000000000002" {
		t.Fatalf("backlog = %v", got)
	}

	newCalls := []store.Call{
		{ID: "01JX0000000000000000000004", Workload: "route", Status: 200},
		{ID: "01JX0000000000000000000005", Workload: "other", Status: 200},
		{ID: "01JX0000000000000000000006", Workload: "route", Status: 200},
	}
	if err := db.InsertCalls(ctx, newCalls); err != nil {
		t.Fatal(err)
	}
	got := waitFor(3)
	want := "01JX0000000000000000000002,01JX0000000000000000000004,01JX0000000000000000000006"
	if strings.Join(got, ",") != want {
		t.Errorf("follow printed %v, want %s", got, want)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop when its context ended")
	}
	// Nothing is printed twice.
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("follow printed %d lines, want 3:\n%s", n, out.String())
	}
}

func TestCallsFollowCommandTable(t *testing.T) {
	db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"calls", "follow", "--db", db, "--limit", "2", "--interval", "10ms"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("calls follow: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.HasPrefix(lines[1], "01JX0000000000000000000002") || !strings.HasPrefix(lines[2], "01JX0000000000000000000003") {
		t.Errorf("calls follow --limit 2 printed:\n%s\nwant a header and the two newest calls, oldest first", out.String())
	}
}

// A call's second answer is shown with it: its metadata, and its body opened with the
// call's key and embedded as JSON.
func TestCallsShowIncludesTheSecondAnswer(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1.key")
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "calls.db")
	cfg := filepath.Join(dir, "downshift.yaml")
	yaml := fmt.Sprintf("store: {driver: sqlite, dsn: %q}\nprivacy:\n  encryption:\n    active: k1\n    keys:\n      - {id: k1, file: %q}\n", db, keyFile)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := seal.NewKeyring(config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", File: keyFile}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const candidateSaid = "Paris, says the candidate"
	c := testCalls()[0]
	c.Mode, c.Candidate = store.ModeShadow, "small"
	c.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200, Compared: true, Agreement: 0.4,
		Response: []byte(`{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"` + candidateSaid + `"}}]}`)}
	if err := kr.SealCall(&c); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.InsertCalls(context.Background(), []store.Call{c}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	viewer := createKey(t, db, store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "analyst"})

	out, _ := run(t, 0, "calls", "show", "-c", cfg, "--key", viewer, c.ID)
	var v struct {
		Response map[string]any
		Second   struct {
			Kind      string
			Model     string
			Agreement float64
			Response  struct {
				Choices []struct{ Message struct{ Content string } }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("show output is not JSON: %v\n%s", err, out)
	}
	s := v.Second
	if s.Kind != store.SecondShadow || s.Model != "small" || s.Agreement != 0.4 ||
		len(s.Response.Choices) != 1 || s.Response.Choices[0].Message.Content != candidateSaid {
		t.Errorf("second answer not shown, opened, as JSON: %+v\n%s", s, out)
	}
	if v.Response["choices"] == nil {
		t.Errorf("the call's own response is missing:\n%s", out)
	}

	// Listing shows the second answer's metadata, never its body.
	out, _ = run(t, 0, "calls", "list", "--json", "--db", db)
	if !strings.Contains(out, `"kind":"shadow"`) || strings.Contains(out, candidateSaid) || strings.Contains(out, `"response"`) {
		t.Errorf("list --json: want the second answer's metadata without its body:\n%s", out)
	}
}
