package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

func TestShiftSavesVersionsWithHistoryAndAudit(t *testing.T) {
	f := newEvalFixture(t, nil, map[string][2]float64{"gpt-4o": {2.5, 10}, "small-8b": {0.05, 0.1}})
	sf := &storeFlags{config: f.config}
	ctx := context.Background()
	base := shiftOptions{minAgreement: 0.9, minGuard: 0.95, window: 200}
	steps := []struct {
		o    shiftOptions
		want string
	}{
		{shiftOptions{to: "small-8b", mode: "shadow", reason: "leaderboard ev_1 recommends it"}, "version 1: shadow small-8b 100%"},
		{shiftOptions{to: "small-8b", mode: "canary=10%"}, "version 2: canary small-8b 10%, verify 5% (was version 1: shadow small-8b 100%)"},
		{shiftOptions{to: "small-8b", mode: "serve", verify: "2%"}, "version 3: serve small-8b, verify 2%"},
		{shiftOptions{back: true, reason: "incident 42"}, "version 4: observe (was version 3: serve small-8b, verify 2%); reason: incident 42"},
	}
	for i, s := range steps {
		o := s.o
		o.minAgreement, o.minGuard, o.window = base.minAgreement, base.minGuard, base.window
		var out strings.Builder
		if err := runShift(ctx, sf, f.workload, o, time.Date(2026, 11, 28, 12, i, 0, 0, time.UTC), &out); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
		if !strings.Contains(out.String(), s.want) {
			t.Errorf("step %d printed:\n%s\nwant %q", i+1, out.String(), s.want)
		}
	}

	st, err := openStore(ctx, "sqlite", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := st.PolicyHistory(ctx, f.workload)
	if err != nil || len(h) != 4 {
		t.Fatalf("history: %d versions, %v", len(h), err)
	}
	if h[0].Version != 4 || h[0].Mode != store.ModeObserve || h[0].Candidate != "small-8b" || h[0].Actor != "cli" {
		t.Errorf("latest %+v", h[0])
	}
	if h[2].Mode != store.ModeCanary || h[2].CanaryShare != 0.1 || h[2].MinAgreement != 0.9 || h[2].MinGuardPass != 0.95 {
		t.Errorf("canary version %+v", h[2])
	}
	audit, err := st.ListAudit(ctx, store.AuditFilter{Action: store.AuditSetPolicy})
	if err != nil || len(audit) != 4 {
		t.Fatalf("audit: %d set_policy entries, %v", len(audit), err)
	}
	var list strings.Builder
	cur, _ := st.CurrentPolicies(ctx)
	if err := writePolicies(&list, cur, false); err != nil || !strings.Contains(list.String(), "incident 42") {
		t.Errorf("list:\n%s", list.String())
	}

	// A stale expectation is refused and saves nothing.
	o := shiftOptions{to: "small-8b", mode: "shadow", expectVersion: 3, minAgreement: 0.9, window: 200}
	if err := runShift(ctx, sf, f.workload, o, time.Now(), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "version 4, not 3") {
		t.Errorf("stale --expect-version: %v", err)
	}
	if h, _ := st.PolicyHistory(ctx, f.workload); len(h) != 4 {
		t.Errorf("a refused shift saved a version: %d", len(h))
	}
}

func TestShiftRefusesWhatItCannotDo(t *testing.T) {
	f := newEvalFixture(t, nil, map[string][2]float64{"gpt-4o": {2.5, 10}, "small-8b": {0.05, 0.1}})
	sf := &storeFlags{config: f.config}
	cases := []struct {
		workload string
		o        shiftOptions
		want     string
	}{
		{f.workload, shiftOptions{to: "nope", mode: "shadow"}, `--to "nope" is not in the catalog`},
		{f.workload, shiftOptions{to: "small-8b", mode: "canary"}, "needs a share"},
		{f.workload, shiftOptions{to: "small-8b", mode: "canary=150%"}, "between 0 and 100%"},
		{f.workload, shiftOptions{to: "small-8b", mode: "serve=10%"}, "takes no share"},
		{f.workload, shiftOptions{to: "small-8b", mode: "fast"}, "want shadow, canary=N% or serve"},
		{f.workload, shiftOptions{to: "small-8b"}, "say where to"},
		{f.workload, shiftOptions{to: "small-8b", mode: "shadow", guards: []string{"vibes"}}, `--guards: unknown guard "vibes"`},
		{f.workload, shiftOptions{to: "small-8b", mode: "shadow", minSamples: 201}, "--min-samples: 201: want 1 to 200"},
		{f.workload, shiftOptions{back: true, to: "small-8b"}, "--back takes neither"},
		{"no-such-workload", shiftOptions{back: true}, `nor is "no-such-workload" a tag`},
	}
	for _, c := range cases {
		c.o.window = 200
		err := runShift(context.Background(), sf, c.workload, c.o, time.Now(), &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}

func TestParseShare(t *testing.T) {
	for in, want := range map[string]float64{"10%": 0.1, "0.1": 0.1, "10": 0.1, "100%": 1, "0": 0, "2.5%": 0.025} {
		got, err := parseShare("--x", in)
		if err != nil || got < want-1e-12 || got > want+1e-12 {
			t.Errorf("parseShare(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-5%", "101%"} {
		if _, err := parseShare("--x", bad); err == nil {
			t.Errorf("parseShare(%q) accepted", bad)
		}
	}
}
