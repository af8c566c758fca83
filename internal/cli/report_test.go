package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/report"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

var reportDay = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// reportDB writes a day of shifted calls to a new SQLite file, with two policies, and
// returns its path:
//
//	support (tag): two shadowed calls, one the candidate answered (its reference
//	  cost estimated), one escalated (simulated); one more call two days later
//	wl-7 (assigned, tagged "other"): one the candidate answered and the reference
//	  verified, one the reference answered with an error
//	quiet: a policy, no calls
//	an imported call tagged support, which must not count
func reportDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	call := func(minutes int, latencyMS int, c store.Call) store.Call {
		n++
		c.ID = "01JREPORT" + strings.Repeat("0", 15) + string(rune('A'+n))
		c.StartedAt = reportDay.Add(time.Duration(minutes) * time.Minute)
		c.Latency = time.Duration(latencyMS) * time.Millisecond
		c.FinishedAt = c.StartedAt.Add(c.Latency)
		if c.Status == 0 {
			c.Status = 200
		}
		return c
	}
	shadow := func(agreement float64) *store.SecondAnswer {
		return &store.SecondAnswer{Kind: store.SecondShadow, Model: "small-8b", Status: 200, CostUSD: 0.002,
			Compared: true, Agreement: agreement, Pass: true}
	}
	calls := []store.Call{
		call(0, 1000, store.Call{Workload: "support", Route: store.RouteReference, Mode: store.ModeShadow,
			PolicyVersion: 1, Candidate: "small-8b", CostUSD: 0.010, ReferenceCostUSD: 0.010, Second: shadow(0.8)}),
		call(10, 1200, store.Call{Workload: "support", Route: store.RouteReference, Mode: store.ModeShadow,
			PolicyVersion: 1, Candidate: "small-8b", CostUSD: 0.010, ReferenceCostUSD: 0.010, Second: shadow(1)}),
		call(20, 300, store.Call{Workload: "support", Route: store.RouteCandidate, Mode: store.ModeCanary,
			PolicyVersion: 2, Candidate: "small-8b", Guard: store.GuardPass,
			CostUSD: 0.001, ReferenceCostUSD: 0.010, ReferenceCostEstimated: true}),
		call(30, 1500, store.Call{Workload: "support", Route: store.RouteEscalated, Mode: store.ModeCanary,
			PolicyVersion: 2, Candidate: "small-8b", Guard: "schema_valid", Simulated: true,
			CostUSD: 0.010, ReferenceCostUSD: 0.010,
			Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: "small-8b", Status: 200, CostUSD: 0.001}}),
		call(40, 400, store.Call{Workload: "other", WorkloadID: "wl-7", Route: store.RouteCandidate, Mode: store.ModeServe,
			PolicyVersion: 4, Candidate: "mini-3b", Guard: store.GuardPass, CostUSD: 0.002, ReferenceCostUSD: 0.010,
			Second: &store.SecondAnswer{Kind: store.SecondVerify, Model: "gpt-4o", Status: 200, CostUSD: 0.010,
				Compared: true, Agreement: 0.9, Pass: true}}),
		call(50, 800, store.Call{Workload: "other", WorkloadID: "wl-7", Route: store.RouteReference, Status: 500,
			ErrorType: "upstream_error", CostUSD: 0.010, ReferenceCostUSD: 0.010}),
		call(5, 900, store.Call{Workload: "support", Source: store.SourceOpenAI, Route: store.RouteReference,
			CostUSD: 5, ReferenceCostUSD: 5}),
		call(48*60, 700, store.Call{Workload: "support", Route: store.RouteReference, CostUSD: 0.010, ReferenceCostUSD: 0.010}),
	}
	if err := db.InsertCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.Policy{
		{Workload: "support", Mode: store.ModeCanary, Candidate: "small-8b", CanaryShare: 0.1},
		{Workload: "quiet", Mode: store.ModeShadow, Candidate: "tiny-1b"},
	} {
		p.At, p.Actor = reportDay, "cli"
		if _, err := db.SavePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// reportCells is the cells of the table line that starts with name.
func reportCells(t *testing.T, out, name string) []string {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, name+"  ") {
			return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		}
	}
	t.Fatalf("no line for %s in\n%s", name, out)
	return nil
}

func TestReportPrintsTheFiguresPerWorkloadAndTotal(t *testing.T) {
	db := reportDB(t)
	out, _ := run(t, 0, "report", "--db", db, "--since", "2026-11-27T00:00:00Z", "--until", "2026-11-28T12:00:00Z")
	main, _, _ := strings.Cut(out, "how the calls were answered:")
	want := map[string][]string{
		// POLICY, CALLS, MOVED, ESCALATED, AGREEMENT (N), PAID, REFERENCE, SAVED, REF P50, CAND P50, LATENCY
		"support": {"support", "canary small-8b (v1)", "4", "1 (25.0%)", "1 (50.0%)", "0.90 (2)",
			"$0.036", "$0.04*", "$0.004* (10.0%)", "1.10s", "300ms", "−800ms"},
		"wl-7": {"wl-7", "-", "2", "1 (50.0%)", "0 (0.0%)", "0.90 (1)",
			"$0.022", "$0.02", "-$0.002 (-10.0%)", "800ms", "400ms", "−400ms"},
		"quiet": {"quiet", "shadow tiny-1b (v1)", "0", "-", "-", "-", "$0", "$0", "$0", "-", "-", "-"},
		"TOTAL": {"TOTAL", "-", "6", "2 (33.3%)", "1 (33.3%)", "0.90 (3)",
			"$0.058", "$0.06*", "$0.002* (3.3%)", "-", "-", "−600ms"},
	}
	for name, w := range want {
		if got := reportCells(t, main, name); !slices.Equal(got, w) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, w)
		}
	}
	if strings.Contains(main, "other") {
		t.Error("wl-7's calls were reported under their tag")
	}
	for _, s := range []string{
		"2026-11-27 00:00 UTC to 2026-11-28 12:00 UTC: 6 calls",
		"* 1 of 6 reference costs are estimates",
		"1 of 6 calls had an answer simulated by downshift sim",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the report does not say %q:\n%s", s, out)
		}
	}

	// Without bounds the call two days later counts too; the imported one never does.
	out, _ = run(t, 0, "report", "--db", db)
	if got := reportCells(t, out, "support"); got[2] != "5" || got[6] != "$0.046" {
		t.Errorf("support over everything: %q, want 5 calls, $0.046 paid", got)
	}
}

func TestReportJSONForOneWorkload(t *testing.T) {
	db := reportDB(t)
	out, _ := run(t, 0, "report", "--db", db, "--workload", "wl-7", "--json")
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if r.Workload != "wl-7" || len(r.Workloads) != 1 {
		t.Fatalf("workloads %+v, want wl-7 alone", r.Workloads)
	}
	w := r.Workloads[0]
	if w.Calls != 2 || w.CandidateAnswered != 1 || w.Verified != 1 || w.Errors != 1 ||
		math.Abs(w.PaidUSD-0.022) > 1e-12 || math.Abs(w.SavedUSD+0.002) > 1e-12 ||
		w.LatencyChange == nil || *w.LatencyChange != -400*time.Millisecond ||
		w.CandidateP50 != 400*time.Millisecond || w.MovedShare == nil || *w.MovedShare != 0.5 {
		t.Errorf("wl-7 %+v", w)
	}
	if r.Total.Calls != 2 || r.At.IsZero() {
		t.Errorf("total %+v, at %v", r.Total, r.At)
	}
}

func TestReportSinceIsADurationAgo(t *testing.T) {
	db := reportDB(t)
	var out bytes.Buffer
	// 65 minutes after the first call, --since 35m keeps the calls at 30, 40 and 50
	// minutes, and the one two days later (no --until).
	o := reportOptions{since: "35m", asJSON: true}
	if err := runReport(context.Background(), &storeFlags{db: db}, o, reportDay.Add(time.Hour+5*time.Minute), &out, &out); err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Since.Equal(reportDay.Add(30*time.Minute)) || r.Total.Calls != 4 || r.Total.Escalated != 1 {
		t.Errorf("since %v: %d calls, %d escalated; want 4 and 1", r.Since, r.Total.Calls, r.Total.Escalated)
	}
}

func TestReportWritesJSONAndHTMLToOut(t *testing.T) {
	db := reportDB(t)
	dir := filepath.Join(t.TempDir(), "out")
	out, errOut := run(t, 0, "report", "--db", db, "--out", dir, "--json")
	if !strings.Contains(errOut, filepath.Join(dir, "report.html")) {
		t.Errorf("stderr does not say where the report is: %q", errOut)
	}
	var printed, written report.Report
	if err := json.Unmarshal([]byte(out), &printed); err != nil {
		t.Fatalf("stdout is not the JSON alone: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &written); err != nil || written.Total.Calls != 7 || printed.Total.Calls != 7 {
		t.Errorf("report.json: %v; %d calls, printed %d; want 7", err, written.Total.Calls, printed.Total.Calls)
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(page, []byte("<!DOCTYPE html>")) || !bytes.Contains(page, []byte(">wl-7<")) ||
		!bytes.Contains(page, []byte("simulated by downshift sim")) {
		t.Errorf("report.html lacks the workloads or the simulation warning:\n%s", page)
	}

	// The table goes to stdout, and the paths after it.
	out, _ = run(t, 0, "report", "--db", db, "--out", dir)
	if !strings.Contains(out, "TOTAL") || !strings.Contains(out, "report: "+filepath.Join(dir, "report.html")) {
		t.Errorf("stdout:\n%s", out)
	}
}

func TestReportRefusesBadFlags(t *testing.T) {
	db := reportDB(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, `--since "yesterday": want a duration ago (1h, 30d) or an RFC 3339 time`},
		{[]string{"--until", "2026-13-01"}, `--until "2026-13-01": want a duration ago`},
		{[]string{"--since", "-5h"}, "a duration ago must not be negative"},
		{[]string{"--since", "2026-11-28T00:00:00Z", "--until", "2026-11-27T00:00:00Z"},
			"--since 2026-11-28T00:00:00Z is not before --until 2026-11-27T00:00:00Z: the period is empty"},
		{[]string{"--json=maybe"}, `invalid argument "maybe" for "--json"`},
		{[]string{"extra"}, `unknown command "extra"`},
	}
	for _, c := range cases {
		_, errOut := run(t, 1, append([]string{"report", "--db", db}, c.args...)...)
		if !strings.Contains(errOut, c.want) {
			t.Errorf("report %q: stderr %q, want %q", c.args, errOut, c.want)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, errOut := run(t, 1, "report", "--db", missing); !strings.Contains(errOut, "no database at "+missing) {
		t.Errorf("a missing database: %q", errOut)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("report created the database it did not find")
	}
}
