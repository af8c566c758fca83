package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/discover"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

// TestAnalyzeThenAssignOnline imports the bundled tau-bench calls, analyses them, and
// then plays some of the same conversations through a served gateway: each new
// untagged call must be assigned online to a saved workload, mostly the one analysis
// put the identical imported call in, and a tagged call keeps its tag.
func TestAnalyzeThenAssignOnline(t *testing.T) {
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	upstream := startSim(t, sim.Options{Mode: sim.ModeReplay, Calls: calls})
	srv, db, key := startTestServer(t, upstream)

	// Import while the server runs: the same store, as an operator would.
	st, err := openStore(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	var imported []store.Call
	im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
	if err := im.TauBench(calls); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportCalls(context.Background(), imported); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out := t.TempDir()
	var stdout strings.Builder
	sf := &storeFlags{db: db}
	if err := runAnalyze(context.Background(), sf, analyzeOptions{seed: 1, out: out, save: true}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"workloads.json", "workloads.html"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if !strings.Contains(stdout.String(), "saved") || !strings.Contains(stdout.String(), "READY") {
		t.Errorf("analyze output:\n%s", stdout.String())
	}

	// The server picks the model up at its next refresh; force one now.
	if err := srv.refreshWorkloads(context.Background()); err != nil {
		t.Fatal(err)
	}

	st2, err := openStore(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st2.ListCalls(context.Background(), store.Filter{Source: store.SourceTauBench, WithPayloads: true, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := st2.ListWorkloads(context.Background())
	st2.Close()
	if err != nil || len(ws) < 4 {
		t.Fatalf("saved workloads: %d (%v)", len(ws), err)
	}
	known := map[string]bool{}
	for _, w := range ws {
		known[w.ID] = true
	}
	byID := map[string]string{}
	for _, c := range stored {
		byID[c.ID] = c.WorkloadID
	}

	// Play 60 turns (every 40th call) through the gateway, untagged, and one tagged.
	n := 0
	want := map[int]string{}
	for i := 0; i < len(calls); i += 40 {
		body, _ := calls[i].RequestJSON()
		tag := ""
		if n == 0 {
			tag = "checkout"
		}
		post(t, "http://"+srv.addr+"/v1/chat/completions", key, tag, body)
		want[n] = byID[imported[i].ID]
		n++
	}
	served := storedCalls(t, srv, db)
	agree, assigned := 0, 0
	for _, c := range served {
		if c.Source != store.SourceGateway {
			continue
		}
		if c.Workload == "checkout" {
			if c.WorkloadID != "checkout" {
				t.Errorf("tagged call: workload id %q, want its tag", c.WorkloadID)
			}
			continue
		}
		if !known[c.WorkloadID] {
			t.Errorf("call %s assigned to %q, not a saved workload", c.ID, c.WorkloadID)
			continue
		}
		assigned++
	}
	// Compare with the offline assignment of the identical imported call, in order.
	i := 0
	for _, c := range served {
		if c.Source != store.SourceGateway || c.Workload != "" {
			continue
		}
		i++
		if c.WorkloadID == want[i] {
			agree++
		}
	}
	if assigned != n-1 {
		t.Fatalf("%d of %d untagged calls assigned", assigned, n-1)
	}
	// Online assignment sees only the request, analysis also the reference's answer;
	// it must at least beat always naming the biggest workload.
	counts := map[string]int{}
	majority := 0
	for k := 1; k < n; k++ {
		counts[want[k]]++
		majority = max(majority, counts[want[k]])
	}
	if agree <= majority {
		t.Errorf("online assignment agrees with analysis on %d of %d calls; naming the biggest workload would on %d", agree, n-1, majority)
	}
	t.Logf("online assignment agrees with the offline analysis on %d of %d calls (biggest workload: %d)", agree, n-1, majority)
}

func post(t *testing.T, url, key, tag string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	if tag != "" {
		req.Header.Set("X-Downshift-Workload", tag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

func TestSortByContentIgnoresArrivalOrder(t *testing.T) {
	var calls []discover.Call
	for i := range 50 {
		calls = append(calls, discover.Call{ID: fmt.Sprintf("id-%02d", i), Fingerprint: fmt.Sprintf("fp-%d", i%7),
			Request: []byte(fmt.Sprintf(`{"n":%d}`, i%13))})
	}
	a := slices.Clone(calls)
	b := slices.Clone(calls)
	slices.Reverse(b)
	b[3], b[40] = b[40], b[3]
	sortByContent(a)
	sortByContent(b)
	for i := range a {
		if a[i].ID != b[i].ID {
			t.Fatalf("position %d: %s after one arrival order, %s after another", i, a[i].ID, b[i].ID)
		}
	}
}

// TestAnalyzeKeepsWorkloadIDs analyses the bundled tau-bench calls, then a later
// window of them (their last 85%): the workloads found again must keep their ids, so
// that a policy set on one still routes its calls, and a policy on a workload that is
// not found again is named in a warning.
func TestAnalyzeKeepsWorkloadIDs(t *testing.T) {
	ctx := context.Background()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "ds.db")
	st, err := openStore(ctx, "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var imported []store.Call
	im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
	if err := im.TauBench(calls); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportCalls(ctx, imported); err != nil {
		t.Fatal(err)
	}
	sf := &storeFlags{db: db}
	if err := runAnalyze(ctx, sf, analyzeOptions{seed: 1, save: true}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	first, err := st.ListWorkloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, w := range first {
		before[w.ID] = true
	}
	for _, p := range []store.Policy{
		{Workload: first[0].ID, Mode: store.ModeShadow, Candidate: "small", Actor: "test", Reason: "try it", At: time.Now()},
		{Workload: "wl-000000000000", Mode: store.ModeShadow, Candidate: "small", Actor: "test", Reason: "gone", At: time.Now()},
	} {
		if _, err := st.SavePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	slices.SortFunc(imported, func(a, b store.Call) int { return a.StartedAt.Compare(b.StartedAt) })
	since := imported[len(imported)*15/100].StartedAt.UTC().Format(time.RFC3339Nano)
	var out, warn strings.Builder
	if err := runAnalyze(ctx, sf, analyzeOptions{seed: 1, save: true, since: since}, &out, &warn); err != nil {
		t.Fatal(err)
	}
	second, err := st.ListWorkloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fresh []string
	for _, w := range second {
		if !before[w.ID] {
			fresh = append(fresh, w.ID+" ("+w.Label+")")
		}
	}
	if len(fresh) > 0 {
		t.Errorf("%d of %d workloads got new ids in the later window: %v", len(fresh), len(second), fresh)
	}
	if !strings.Contains(out.String(), "kept the ids they had before") {
		t.Errorf("analyze did not say it kept ids:\n%s", out.String())
	}
	if w := warn.String(); !strings.Contains(w, "wl-000000000000") || strings.Contains(w, first[0].ID) {
		t.Errorf("warnings:\n%s\nwant one for wl-000000000000 only", w)
	}
}
