package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// The dashboard, as a person sees it: the demo's store served by `downshift serve`,
// opened in chromium. Every page is visited and screenshotted; the figures shown are
// checked against the store; a workload's mode is changed through the confirmation
// flow and found in the audit trail.

// browser returns chromium's path, or skips (fails when DOWNSHIFT_REQUIRE_BROWSER is
// set, as .ci/run sets it after installing chromium).
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("DOWNSHIFT_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH, and DOWNSHIFT_REQUIRE_BROWSER is set")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); .ci/run installs it")
	return ""
}

// artifacts is where screenshots are kept: $DOWNSHIFT_ARTIFACTS, else
// artifacts/screenshots at the module root (ignored by git).
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DOWNSHIFT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), "artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// buildBinary builds downshift once into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "downshift")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/downshift")
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveDemo runs the demo into a new directory and serves its store; it returns the
// dashboard's base URL, the admin key and the database path.
func serveDemo(t *testing.T) (base, adminKey, db string) {
	t.Helper()
	tmp := t.TempDir()
	bin := buildBinary(t, tmp)
	demo := filepath.Join(tmp, "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "demo", "--dir", demo).CombinedOutput(); err != nil {
		t.Fatalf("downshift demo: %v\n%s", err, out)
	}
	key, err := os.ReadFile(filepath.Join(demo, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	srv := exec.Command(bin, "serve", "-c", filepath.Join(demo, "downshift.yaml"))
	srv.Env = append(os.Environ(), "DOWNSHIFT_LISTEN="+addr, "DOWNSHIFT_LOG_LEVEL=warn")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
		}
	})
	base = "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return base, strings.TrimSpace(string(key)), filepath.Join(demo, "downshift.db")
}

// value reads a figure's data-value.
func value(ctx context.Context, t *testing.T, testid string) string {
	t.Helper()
	res, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(fmt.Sprintf(`[data-testid=%q]`, testid)), "data-value"))
	if err != nil {
		t.Fatalf("reading %s: %v", testid, err)
	}
	if !res.Exists {
		t.Fatalf("%s has no data-value", testid)
	}
	return res.Value
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("figure %q is not a number", s)
	}
	return f
}

func shoot(ctx context.Context, t *testing.T, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func TestDashboardInABrowser(t *testing.T) {
	exe := browser(t)
	shots := artifacts(t)
	base, adminKey, db := serveDemo(t)

	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.WindowSize(1440, 900), chromedp.NoSandbox)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// Log in with the demo's admin key.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-key"]`)),
	); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "login")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid="login-key"]`), adminKey),
		chromedp.Click(chromedp.CSS(`[data-testid="login-submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="tile-calls"]`)),
	); err != nil {
		t.Fatal(err)
	}

	// Overview over 30 days: every call of the demo, against the store.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/?period=30d"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="tile-calls"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "overview")
	all, err := st.CountCalls(context.Background(), store.Filter{Source: store.SourceGateway})
	if err != nil {
		t.Fatal(err)
	}
	if got := number(t, value(ctx, t, "tile-calls")); int(got) != all {
		t.Errorf("overview calls %v, store %d", got, all)
	}
	sums, err := st.Savings(context.Background(), store.SavingsFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var saved, paid float64
	var candidate, escalated int64
	for _, s := range sums {
		saved += s.ReferenceUSD - s.PaidUSD
		paid += s.PaidUSD
		candidate += int64(s.Candidate)
		escalated += int64(s.Escalated)
	}
	if got := number(t, value(ctx, t, "tile-saved-total")); abs(got-saved) > 1e-6 {
		t.Errorf("overview saved %v, store %v", got, saved)
	}
	if got := number(t, value(ctx, t, "tile-escalation-rate")); abs(got-float64(escalated)/float64(candidate+escalated)) > 1e-9 {
		t.Errorf("overview escalation rate %v, store %d of %d", got, escalated, candidate+escalated)
	}

	// The last hour, which holds the demo's traffic: the README's picture.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/?period=1h"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="tile-calls"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "overview-1h")
	if got := number(t, value(ctx, t, "tile-calls")); int(got) != all {
		t.Errorf("overview of the last hour: %v calls, store %d (the demo ran minutes ago)", got, all)
	}

	// Workloads, and the shifted workload's page.
	policies, err := st.CurrentPolicies(context.Background())
	if err != nil || len(policies) != 1 {
		t.Fatalf("the demo's policies: %v, %v", policies, err)
	}
	shifted := policies[0]
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/workloads?period=30d"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="workloads"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "workloads")
	res, err := chromedp.Run(ctx, chromedp.AttributeValue(
		chromedp.CSS(fmt.Sprintf(`[data-workload=%q] [data-testid="wl-mode"]`, shifted.Workload)), "data-value"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := res.Value; mode != shifted.Mode {
		t.Errorf("workloads page: %s in %q, store %q", shifted.Workload, mode, shifted.Mode)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/workloads/"+shifted.Workload+"?period=30d"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="wl-calls"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "workload")
	n, err := st.CountCalls(context.Background(), store.Filter{WorkloadID: shifted.Workload})
	if err != nil {
		t.Fatal(err)
	}
	if got := number(t, value(ctx, t, "wl-calls")); int(got) != n {
		t.Errorf("workload page calls %v, store %d", got, n)
	}

	// A recent call's page (payloads, audited).
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="call-link"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="call-response"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "call")

	// A shadowed call and a refused candidate answer: the two answers side by side.
	recent, err := st.ListCalls(context.Background(), store.Filter{WorkloadID: shifted.Workload, WithPayloads: true, Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{store.SecondShadow, store.SecondRejected} {
		i := slices.IndexFunc(recent, func(c store.Call) bool {
			return c.Second != nil && c.Second.Kind == kind && len(c.Second.Response) > 0 && c.Guard != store.GuardUnanswered
		})
		if i < 0 {
			t.Errorf("the demo recorded no %s answer with a body", kind)
			continue
		}
		c := recent[i]
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/calls/"+c.ID),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="call-second-response"]`))); err != nil {
			t.Fatal(err)
		}
		shoot(ctx, t, shots, "call-"+kind)
		if got := value(ctx, t, "second-kind"); got != kind {
			t.Errorf("call %s: second answer kind %q, want %q", c.ID, got, kind)
		}
		model, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-testid="second-model"]`)))
		if err != nil || model != c.Second.Model {
			t.Errorf("call %s: second answer's model %q (%v), want %q", c.ID, model, err, c.Second.Model)
		}
		body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-testid="call-second-response"]`)))
		if err != nil || !strings.Contains(body, `"choices"`) {
			t.Errorf("call %s: the second answer shown is not a completion: %.200q (%v)", c.ID, body, err)
		}
	}

	// Models.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/models?period=30d"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="models"]`))); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "models")

	// Change the workload's mode back to observe through the confirmation flow.
	reason := "browser test: back to observe " + time.Now().Format(time.RFC3339Nano)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/workloads/"+shifted.Workload),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="policy-form"]`)),
		chromedp.SetValue(chromedp.CSS(`#policy-mode`), store.ModeObserve),
		chromedp.SendKeys(chromedp.CSS(`[data-testid="policy-form"] [name="reason"]`), reason),
		chromedp.Click(chromedp.CSS(`[data-testid="policy-review"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="policy-confirm-button"]`)),
	); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "policy-confirm")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="policy-confirm-button"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="policy-history"]`)),
	); err != nil {
		t.Fatal(err)
	}
	shoot(ctx, t, shots, "workload-after-change")
	h, err := st.PolicyHistory(context.Background(), shifted.Workload)
	if err != nil {
		t.Fatal(err)
	}
	if h[0].Mode != store.ModeObserve || h[0].Reason != reason || h[0].Version != shifted.Version+1 || h[0].ActorName != "demo-admin" {
		t.Errorf("after the change: version %d mode %q reason %q actor %q", h[0].Version, h[0].Mode, h[0].Reason, h[0].ActorName)
	}
	entries, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditSetPolicy, Target: shifted.Workload, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].ActorName != "demo-admin" || !strings.Contains(entries[0].Detail, store.ModeObserve) {
		t.Errorf("the audit trail's last set_policy entry for %s: %+v", shifted.Workload, entries)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
