package discover

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/workload"
)

// tauCalls returns the bundled tau-bench airline calls as discovery reads them, and
// each call's reference action label (tool name(s), or "text").
func tauCalls(t testing.TB) ([]Call, []string) {
	t.Helper()
	dcs, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	calls := make([]Call, len(dcs))
	labels := make([]string, len(dcs))
	for i := range dcs {
		dc := &dcs[i]
		req, err := dc.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := json.Marshal(openai.ChatCompletion{
			Object:  "chat.completion",
			Model:   dc.Answers[0].Model,
			Choices: []openai.Choice{{Message: dc.Answers[0].Message, FinishReason: dc.Answers[0].FinishReason}},
		})
		if err != nil {
			t.Fatal(err)
		}
		calls[i] = Call{ID: dc.ID, Fingerprint: workload.Fingerprint(&dc.Request), Request: req, Response: resp}
		labels[i] = actionOf(dc.Answers[0].Message).Label
	}
	return calls, labels
}

func clustersOf(res *Result, calls []Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = res.Assignments[c.ID]
	}
	return out
}

// TestQualityTauBench is the acceptance measure of workload discovery on real calls:
// the 2,454 tau-bench airline calls, labelled by the action GPT-4o took.
func TestQualityTauBench(t *testing.T) {
	calls, labels := tauCalls(t)
	ctx := context.Background()
	report := &strings.Builder{}
	fmt.Fprintf(report, "tau-bench airline: %d calls, %d distinct actions\n", len(calls), distinct(labels))

	start := time.Now()
	full, err := Discover(ctx, calls, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tookA := time.Since(start)
	agA, err := Compare(labels, clustersOf(full, calls))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(report, "(a) request+action: %s (%v)\n", fmtAgreement(agA), tookA.Round(time.Millisecond))

	start = time.Now()
	reqOnly, err := Discover(ctx, calls, Options{Seed: 1, RequestOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tookB := time.Since(start)
	agB, err := Compare(labels, clustersOf(reqOnly, calls))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(report, "(b) request only:    %s (%v)\n", fmtAgreement(agB), tookB.Round(time.Millisecond))

	// (b) with the split forced: the k of best silhouette even below MinSilhouette.
	forced, err := Discover(ctx, calls, Options{Seed: 1, RequestOnly: true, MinSilhouette: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	agF, err := Compare(labels, clustersOf(forced, calls))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(report, "(b) forced split:    %s\n", fmtAgreement(agF))

	// Online assignment: the request-only Assigner of each result against that
	// result's own offline clusters.
	for _, r := range []struct {
		name string
		res  *Result
	}{{"(a)", full}, {"(b)", reqOnly}} {
		acc, unassigned, per := onlineAccuracy(t, r.res, calls)
		fmt.Fprintf(report, "online assignment vs %s clusters: accuracy %.3f (%d unassigned), %d centroids, %.1f µs per call\n",
			r.name, acc, unassigned, len(r.res.Model.Centroids), per.Seconds()*1e6)
	}
	// Held out: fit on the conversations of even-numbered tasks, assign the calls of
	// odd-numbered ones, and count a call right when its workload's dominant action is
	// the call's own.
	var fit, held []Call
	var heldLabels []string
	for i, c := range calls {
		var task int
		fmt.Sscanf(strings.Split(c.ID, "/")[1], "%d", &task)
		if task%2 == 0 {
			fit = append(fit, c)
		} else {
			held, heldLabels = append(held, c), append(heldLabels, labels[i])
		}
	}
	half, err := Discover(ctx, fit, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, err := workload.NewAssigner(half.Model)
	if err != nil {
		t.Fatal(err)
	}
	dominant := map[string]string{}
	for _, w := range half.Workloads {
		dominant[w.ID] = dominantAction(w)
	}
	right := 0
	for i, c := range held {
		got, _ := a.Assign(c.Fingerprint, c.Request)
		if dominant[got] == heldLabels[i] {
			right++
		}
	}
	majority := 0
	for _, l := range heldLabels {
		if l == OutputText {
			majority++
		}
	}
	fmt.Fprintf(report, "online assignment of held-out calls (fit on %d calls of even tasks, %d calls of odd tasks assigned): workload's action right for %.3f (always \"text\": %.3f)\n",
		len(fit), len(held), float64(right)/float64(len(held)), float64(majority)/float64(len(held)))
	for _, w := range full.Workloads {
		fmt.Fprintf(report, "  %-22s %5d  %s\n", w.ID, len(w.CallIDs), w.Label)
	}
	t.Log("\n" + report.String())
	if agA.ARI < 0.9 {
		t.Errorf("(a) request+action ARI %.3f, want >= 0.9", agA.ARI)
	}
}

func onlineAccuracy(t testing.TB, res *Result, calls []Call) (float64, int, time.Duration) {
	t.Helper()
	b, err := workload.MarshalModel(res.Model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := workload.UnmarshalModel(b)
	if err != nil {
		t.Fatal(err)
	}
	a, err := workload.NewAssigner(m)
	if err != nil {
		t.Fatal(err)
	}
	right, none := 0, 0
	start := time.Now()
	for _, c := range calls {
		got, _ := a.Assign(c.Fingerprint, c.Request)
		switch {
		case got == "":
			none++
		case got == res.Assignments[c.ID]:
			right++
		}
	}
	return float64(right) / float64(len(calls)), none, time.Since(start) / time.Duration(len(calls))
}

func fmtAgreement(a Agreement) string {
	return fmt.Sprintf("ARI %.3f, V-measure %.3f (homogeneity %.3f, completeness %.3f), purity %.3f, %d clusters for %d labels",
		a.ARI, a.VMeasure, a.Homogeneity, a.Completeness, a.Purity, a.Clusters, a.Classes)
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, GOMAXPROCS %d, %s", model, runtime.GOMAXPROCS(0), runtime.Version())
}

func distinct(xs []string) int {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return len(m)
}

// dominantAction is the action most of a workload's calls took: its top tool when most
// calls called tools, else its top output type.
func dominantAction(w Workload) string {
	if len(w.OutputTypes) == 0 {
		return ""
	}
	if w.OutputTypes[0].Name == OutputToolCalls && len(w.Tools) > 0 {
		return w.Tools[0].Name
	}
	return w.OutputTypes[0].Name
}
