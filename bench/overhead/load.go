package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// bodies are the request bodies, in the order sent: the bundled tau-bench calls as the
// agent made them, once without and once with "stream": true.
type bodies struct {
	plain, stream [][]byte
	bytes         int // total size of plain
}

func loadBodies() (*bodies, error) {
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		return nil, err
	}
	raws := make([][]byte, len(calls))
	for i := range calls {
		if raws[i], err = calls[i].RequestJSON(); err != nil {
			return nil, err
		}
	}
	return newBodies(raws)
}

// newBodies makes the streaming variant of each request.
func newBodies(raws [][]byte) (*bodies, error) {
	b := &bodies{}
	for _, raw := range raws {
		if len(raw) < 2 || raw[len(raw)-1] != '}' {
			return nil, errors.New("a request is not a JSON object")
		}
		st := make([]byte, 0, len(raw)+16)
		st = append(st, raw[:len(raw)-1]...)
		st = append(st, `,"stream":true}`...)
		b.plain = append(b.plain, raw)
		b.stream = append(b.stream, st)
		b.bytes += len(raw)
	}
	if len(b.plain) == 0 {
		return nil, errors.New("no bundled tau-bench calls")
	}
	return b, nil
}

// withModel returns the same requests, in the same order, asking for model.
func (b *bodies) withModel(model string) (*bodies, error) {
	raws := make([][]byte, len(b.plain))
	for i, raw := range b.plain {
		var err error
		if raws[i], err = openai.PatchRequest(raw, map[string]any{"model": model}); err != nil {
			return nil, err
		}
	}
	return newBodies(raws)
}

// body returns the i-th body of the cycled sequence.
func (b *bodies) body(i int, stream bool) []byte {
	if stream {
		return b.stream[i%len(b.stream)]
	}
	return b.plain[i%len(b.plain)]
}

// sample is one request's timings.
type sample struct {
	total time.Duration
	ttft  time.Duration // streaming: first delta with content or tool calls; else 0
	err   error
}

// target is where requests go: the upstream directly, or the gateway (with a workload
// tag, under some shift policy).
type target struct {
	name     string
	key      string // sent as the Bearer token
	url      string // .../v1/chat/completions
	reqs     *bodies
	workload string // sent as X-Downshift-Workload when not empty
	// pause is how long each worker waits after an answer before its next request (an
	// agent's time between calls); not part of any timing.
	pause  time.Duration
	client *http.Client
	sent   atomic.Int64
}

func newTarget(name, base, key string, reqs *bodies, conns int) *target {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &target{name: name, key: key, url: base + "/v1/chat/completions", reqs: reqs, client: &http.Client{Transport: tr}}
}

// do sends one request and times it. Non-streaming: until the body is fully read.
// Streaming: ttft at the first data event whose delta carries content or tool calls,
// total at the end of the stream.
func (t *target) do(body []byte, stream bool) sample {
	t.sent.Add(1)
	req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return sample{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.key)
	if t.workload != "" {
		req.Header.Set("X-Downshift-Workload", t.workload)
	}
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return sample{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return sample{err: fmt.Errorf("%s: %s: %s", t.name, resp.Status, msg)}
	}
	if !stream {
		n, err := io.Copy(io.Discard, resp.Body)
		s := sample{total: time.Since(start), err: err}
		if err == nil && n == 0 {
			s.err = fmt.Errorf("%s: empty body", t.name)
		}
		return s
	}
	var s sample
	br := bufio.NewReaderSize(resp.Body, 32<<10)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			data, ok := bytes.CutPrefix(line, []byte("data:"))
			if ok {
				data = bytes.TrimSpace(data)
				if bytes.Equal(data, []byte("[DONE]")) {
					done = true
				} else if s.ttft == 0 && carriesToken(data) {
					s.ttft = time.Since(start)
				}
			}
		}
		if err == bufio.ErrBufferFull {
			continue // a long event: the rest of the line comes next
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sample{err: err}
		}
	}
	s.total = time.Since(start)
	switch {
	case !done:
		s.err = fmt.Errorf("%s: stream ended without [DONE]", t.name)
	case s.ttft == 0:
		s.err = fmt.Errorf("%s: stream carried no content or tool call", t.name)
	}
	return s
}

// carriesToken reports whether a chunk's first choice has delta content or tool calls.
func carriesToken(data []byte) bool {
	// Cheap filter before decoding: role-only and finish chunks have neither key.
	if !bytes.Contains(data, []byte(`"content"`)) && !bytes.Contains(data, []byte(`"tool_calls"`)) {
		return false
	}
	var c struct {
		Choices []struct {
			Delta struct {
				Content   *string           `json:"content"`
				ToolCalls []json.RawMessage `json:"tool_calls"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &c) != nil || len(c.Choices) == 0 {
		return false
	}
	d := c.Choices[0].Delta
	return (d.Content != nil && *d.Content != "") || len(d.ToolCalls) > 0
}

// block sends requests first..first+n-1 of t's sequence to t with conc workers and
// returns their samples (in the sequence's order) and the block's wall time.
func block(t *target, stream bool, first, n, conc int) ([]sample, time.Duration) {
	out := make([]sample, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				out[i] = t.do(t.reqs.body(first+i, stream), stream)
				if t.pause > 0 {
					time.Sleep(t.pause)
				}
			}
		}()
	}
	wg.Wait()
	return out, time.Since(start)
}

// series collects one target's samples in one cell.
type series struct {
	total, ttft []time.Duration
	// blockTotal and blockTTFT are the p50s of each block, for paired differences;
	// blockTTFT only when streaming.
	blockTotal, blockTTFT []time.Duration
	wall                  time.Duration
	errors                int
	firstErr              error
	// cpu is the CPU time each metered process used during this target's blocks.
	cpu []time.Duration
}

// blockP50 is the per-block p50 the overhead cells pair: of TTFT when streaming, else
// of the total.
func (s *series) blockP50() []time.Duration {
	if len(s.blockTTFT) > 0 {
		return s.blockTTFT
	}
	return s.blockTotal
}

func (s *series) add(samples []sample, wall time.Duration, stream bool) {
	s.wall += wall
	var tot, ttft []time.Duration
	for _, x := range samples {
		if x.err != nil {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = x.err
			}
			continue
		}
		tot = append(tot, x.total)
		if stream {
			ttft = append(ttft, x.ttft)
		}
	}
	s.total = append(s.total, tot...)
	s.ttft = append(s.ttft, ttft...)
	if len(tot) > 0 {
		slices.Sort(tot)
		s.blockTotal = append(s.blockTotal, quantile(tot, 0.5))
	}
	if len(ttft) > 0 {
		slices.Sort(ttft)
		s.blockTTFT = append(s.blockTTFT, quantile(ttft, 0.5))
	}
}

// addCPU adds the CPU time each metered process used during one of the target's blocks.
func (s *series) addCPU(before, after []time.Duration) {
	if s.cpu == nil {
		s.cpu = make([]time.Duration, len(after))
	}
	for i := range after {
		s.cpu[i] += after[i] - before[i]
	}
}

// quantile returns the q-quantile of sorted xs by the nearest-rank method.
func quantile[T time.Duration | float64](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// dist is a latency distribution's summary, in microseconds.
type dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
}

func summarize(xs []time.Duration) *dist {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return &dist{
		N:    len(s),
		Mean: us(sum / time.Duration(len(s))),
		P50:  us(quantile(s, 0.50)),
		P90:  us(quantile(s, 0.90)),
		P99:  us(quantile(s, 0.99)),
		Max:  us(s[len(s)-1]),
	}
}

// pairedP50 is the median over block pairs of (gateway block p50 - direct block p50):
// an estimate of the added p50 that cancels drift in machine load between blocks.
func pairedP50(direct, gateway []time.Duration) float64 {
	d := blockDiffs(direct, gateway)
	if len(d) == 0 {
		return 0
	}
	return median(d)
}

// blockDiffs returns b[i] - a[i] for each block pair, in microseconds, sorted.
func blockDiffs(a, b []time.Duration) []float64 {
	n := min(len(a), len(b))
	d := make([]float64, n)
	for i := range n {
		d[i] = float64(b[i]-a[i]) / float64(time.Microsecond)
	}
	slices.Sort(d)
	return d
}

// median of sorted, non-empty xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
