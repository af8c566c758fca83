package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process: the simulator, the gateway or perf.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error // receives Wait's result once
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// stop sends sig and waits up to timeout for the process to exit, then kills it.
func (p *proc) stop(sig os.Signal, timeout time.Duration) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("%s exited: %w", p.name, err)
		}
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of %v; killed", p.name, timeout, sig)
	}
}

// moduleRoot returns the directory of the go.mod that `go run ./bench/overhead` runs in.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the downshift module: run from the repository root")
	}
	return filepath.Dir(gomod), nil
}

// buildDownshift builds cmd/downshift into dir, as a deployment would.
func buildDownshift(root, dir string) (string, error) {
	bin := filepath.Join(dir, "downshift")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/downshift")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/downshift: %w", err)
	}
	return bin, nil
}

var simAddrRE = regexp.MustCompile(`serving http://([^/\s]+)/v1`)

// startSim runs `downshift sim` with no latency and no faults, replaying the bundled
// tau-bench calls, on a free port, and returns its base URL (http://host:port). extra
// are more flags (candidates).
func startSim(bin string, logw io.Writer, extra ...string) (*proc, string, error) {
	args := append([]string{"sim", "--listen", "127.0.0.1:0", "--mode", "replay",
		"--data", "taubench", "--unknown", "error", "--shutdown-timeout", "2s"}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logw
	p, err := startProc("sim", cmd)
	if err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if m := simAddrRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	select {
	case a := <-addr:
		return p, "http://" + a, nil
	case err := <-p.done:
		return nil, "", fmt.Errorf("sim exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return nil, "", errors.New("sim did not report its address within 30s")
	}
}

// freePort returns a port that was free a moment ago. The gateway's config names a
// fixed listen address, so the port is picked here; the race with other processes is
// accepted for a benchmark.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// gatewayOptions are what runs differ in when they start the gateway.
type gatewayOptions struct {
	// CPU pins the gateway to this CPU with taskset; -1: no pinning.
	CPU int
	// Candidates are candidate-role models served by the simulator, as the gateway's
	// catalog names them; none in the overhead run.
	Candidates []string
	// Prepare, when set, runs on the store (its SQLite path) after the setup an
	// operator would do and before the gateway starts: it saves the shift policies.
	Prepare func(db string) error
	// Transport is the backend's transport setting (config backends[].transport);
	// empty leaves the default.
	Transport string
}

// gatewayConfig is the YAML the gateway runs with: the simulator as the only backend,
// gpt-4o as the reference model (and candidates, if any), recording into SQLite with
// redaction (the default) and encryption at rest on, warnings only.
func gatewayConfig(port int, upstream, db, encKey string, o gatewayOptions) string {
	var transport string
	if o.Transport != "" {
		transport = "\n    transport: " + strconv.Quote(o.Transport)
	}
	var cands strings.Builder
	for _, c := range o.Candidates {
		fmt.Fprintf(&cands, "  - name: %s\n    backend: sim\n    role: candidate\n", c)
	}
	return fmt.Sprintf(`# written by bench/overhead
listen: 127.0.0.1:%d
shutdown_timeout: 60s
store:
  driver: sqlite
  dsn: %s
log:
  level: warn
backends:
  - name: sim
    url: %s/v1%s
models:
  - name: gpt-4o
    backend: sim
    role: reference
%sprivacy:
  encryption:
    active: bench
    keys:
      - {id: bench, file: %s}
`, port, strconv.Quote(db), upstream, transport, cands.String(), strconv.Quote(encKey))
}

// startGateway sets up what an operator would (an encryption key, a gateway key for
// the load generator, the config) with the downshift binary, then runs
// `downshift serve -c` and waits for /readyz. It returns the process, its base URL, the
// database path and the gateway key.
func startGateway(bin, dir, upstream string, o gatewayOptions, logw io.Writer) (*proc, string, string, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", "", "", err
	}
	db := filepath.Join(dir, "bench.db")
	cfgPath := filepath.Join(dir, "bench.yaml")
	encKey := filepath.Join(dir, "encryption.key")
	if out, err := exec.Command(bin, "keys", "encryption", "new", "--out", encKey).CombinedOutput(); err != nil {
		return nil, "", "", "", fmt.Errorf("keys encryption new: %v: %s", err, out)
	}
	if err := os.WriteFile(cfgPath, []byte(gatewayConfig(port, upstream, db, encKey, o)), 0o600); err != nil {
		return nil, "", "", "", err
	}
	out, err := exec.Command(bin, "keys", "create", "--db", db, "--kind", "gateway", "--name", "bench", "--quiet").Output()
	if err != nil {
		return nil, "", "", "", fmt.Errorf("keys create: %v", err)
	}
	key := strings.TrimSpace(string(out))
	repoRoot, err := moduleRoot()
	if err != nil {
		return nil, "", "", "", err
	}
	// A workload model, as after `downshift analyze`, so that the recorder assigns
	// every new call to a workload online, as it would in production.
	for _, args := range [][]string{
		{"import", "taubench", filepath.Join(repoRoot, "examples/taubench/airline.json.gz"),
			"--tools", filepath.Join(repoRoot, "examples/taubench/tools_openai.json"), "--category", "airline", "-c", cfgPath},
		{"analyze", "-c", cfgPath, "--out", ""},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return nil, "", "", "", fmt.Errorf("%s: %v: %s", args[0], err, out)
		}
	}
	if o.Prepare != nil {
		if err := o.Prepare(db); err != nil {
			return nil, "", "", "", err
		}
	}
	cmd := pinned(o.CPU, bin, "serve", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = logw, logw
	p, err := startProc("gateway", cmd)
	if err != nil {
		return nil, "", "", "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(base+"/readyz", p, 30*time.Second); err != nil {
		_ = p.stop(syscall.SIGKILL, 5*time.Second)
		return nil, "", "", "", err
	}
	return p, base, db, key, nil
}

func waitReady(url string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			return fmt.Errorf("%s exited before ready: %v", p.name, err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s not ready within %v", p.name, url, timeout)
}

// metricSums reads a Prometheus text exposition and sums each named metric over its
// labels.
func metricSums(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	vals, err := metricValues(ctx, url, names...)
	if err != nil {
		return nil, err
	}
	sums := map[string]float64{}
	for series, v := range vals {
		name, _, _ := strings.Cut(series, "{")
		sums[name] += v
	}
	return sums, nil
}

// metricValues reads a Prometheus text exposition and returns the value of each series
// of the named metrics, by the series as written (name{label="value",...}).
func metricValues(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	vals := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		series, rest := name, line[len(name):]
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			series, rest = name+rest[:i+1], rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		vals[series] += v
	}
	return vals, sc.Err()
}

// startPerf samples the gateway process's stacks with perf until stopped with SIGINT.
func startPerf(path string, pid int, logw io.Writer) (*proc, error) {
	cmd := exec.Command("perf", "record", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", path)
	cmd.Stdout, cmd.Stderr = logw, logw
	return startProc("perf", cmd)
}

// cpuMeter reads the CPU time the processes under test have used.
type cpuMeter struct {
	names []string
	pids  []int
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// read returns each process's user + system CPU time so far (0 where /proc cannot
// tell). The times are counted in clock ticks, so read them over many requests.
func (m *cpuMeter) read() []time.Duration {
	if m == nil {
		return nil
	}
	out := make([]time.Duration, len(m.pids))
	for i, pid := range m.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses: state is
		// field 3 of stat(5), utime 14 and stime 15.
		j := bytes.LastIndexByte(b, ')')
		if j < 0 {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 13 {
			continue
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 == nil && err2 == nil {
			out[i] = time.Duration(ut+st) * clockTick
		}
	}
	return out
}

// pinned is exec.Command, under `taskset -c cpu` when cpu >= 0.
func pinned(cpu int, name string, args ...string) *exec.Cmd {
	if cpu < 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)...)
}
