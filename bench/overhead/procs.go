package main

import (
	"bufio"
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
// tau-bench calls, on a free port, and returns its base URL (http://host:port).
func startSim(bin string, logw io.Writer) (*proc, string, error) {
	cmd := exec.Command(bin, "sim", "--listen", "127.0.0.1:0", "--mode", "replay",
		"--data", "taubench", "--unknown", "error", "--shutdown-timeout", "2s")
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

// gatewayConfig is the YAML the gateway runs with: the simulator as the only backend,
// gpt-4o as the reference model, recording into SQLite with redaction (the default) and
// encryption at rest on, warnings only.
func gatewayConfig(port int, upstream, db, encKey string) string {
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
    url: %s/v1
models:
  - name: gpt-4o
    backend: sim
    role: reference
privacy:
  encryption:
    active: bench
    keys:
      - {id: bench, file: %s}
`, port, strconv.Quote(db), upstream, strconv.Quote(encKey))
}

// startGateway sets up what an operator would (an encryption key, a gateway key for
// the load generator, the config) with the downshift binary, then runs
// `downshift serve -c` and waits for /readyz. It returns the process, its base URL, the
// database path and the gateway key.
func startGateway(bin, dir, upstream string, cpu int, logw io.Writer) (*proc, string, string, string, error) {
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
	if err := os.WriteFile(cfgPath, []byte(gatewayConfig(port, upstream, db, encKey)), 0o600); err != nil {
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
	cmd := pinned(cpu, bin, "serve", "-c", cfgPath)
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
	sums := map[string]float64{}
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
		rest := line[len(name):]
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		sums[name] += v
	}
	return sums, sc.Err()
}

// startPerf samples the gateway process's stacks with perf until stopped with SIGINT.
func startPerf(path string, pid int, logw io.Writer) (*proc, error) {
	cmd := exec.Command("perf", "record", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", path)
	cmd.Stdout, cmd.Stderr = logw, logw
	return startProc("perf", cmd)
}

// pinned is exec.Command, under `taskset -c cpu` when cpu >= 0.
func pinned(cpu int, name string, args ...string) *exec.Cmd {
	if cpu < 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)...)
}
