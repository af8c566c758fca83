package backend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h1Transport is the RoundTripper for cleartext (http://) upstreams without a proxy:
// the common case of a vLLM, NIM, SGLang, llama.cpp or Ollama server next to the
// gateway. It sends each request and reads its response on the calling goroutine over
// a pooled keep-alive connection.
//
// We wrote it because net/http's Transport was measured to be slower for this hop:
// Transport hands every request to a per-connection writer goroutine and every response
// back from a per-connection reader goroutine, and on a small machine those two
// hand-offs cost ~40µs of a call that the gateway should add ≤100µs to (bench/RESULTS.md,
// "Upstream transport"). The wire format is still net/http's own, (*http.Request).Write
// and http.ReadResponse; only the connection pool is ours. TLS upstreams, HTTP/2 and
// proxies stay on http.Transport.
//
// Semantics follow Transport where a caller can tell: the response timeout bounds the
// wait for response headers only; canceling the request's context aborts the exchange
// and the body's reads (they return the context's error); a body closed before its end
// closes its connection rather than draining a stream that might never end; a
// connection goes back to the pool only after its body was read to the end and neither
// side asked to close it. A POST is never sent twice once it may have reached the
// server: a pooled connection is checked for a close from the server before it is used,
// and a request is retried on a new connection only when writing it to a reused one
// failed.
type h1Transport struct {
	addr                  string // host:port every request goes to
	dial                  func(ctx context.Context, network, addr string) (net.Conn, error)
	responseHeaderTimeout time.Duration
	idleTimeout           time.Duration
	maxIdle               int

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	reaper *time.Timer
	dials  atomic.Int64 // connections opened, for tests and debugging
	early  atomic.Int64 // answers read after a failed write, likewise
}

// Buffer sizes per connection. Requests are typically 2-40 KB of JSON: a 16 KB writer
// sends most in one or two writes; responses are read through a 16 KB reader.
const (
	h1WriteBuffer = 16 << 10
	h1ReadBuffer  = 16 << 10
)

type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	reused    bool
}

// errRequestCanceled is returned when the exchange was cut because its context ended
// and the context's own error is not at hand (it always is; this is a guard).
var errRequestCanceled = errors.New("backend: request canceled")

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if req.URL.Scheme != "http" || canonicalAddr(req.URL.Host) != t.addr {
		closeBody(req)
		return nil, fmt.Errorf("backend: request for %s://%s on the transport for %s", req.URL.Scheme, req.URL.Host, t.addr)
	}
	for attempt := 0; ; attempt++ {
		c, err := t.get(ctx)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, wrote, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		// A reused connection that the server closed between the liveness check and
		// our write: the request did not reach it, so it is safe to send again.
		if !wrote && c.reused && attempt == 0 && req.GetBody != nil && ctx.Err() == nil {
			body, gerr := req.GetBody()
			if gerr == nil {
				r2 := *req
				r2.Body = body
				req = &r2
				continue
			}
		}
		return nil, err
	}
}

// exchange writes req on c and reads the response headers. wrote says whether the
// whole request was handed to the connection, after which it must not be resent.
func (t *h1Transport) exchange(ctx context.Context, c *h1Conn, req *http.Request) (resp *http.Response, wrote bool, err error) {
	var canceled atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		// The flag first, then the deadline: see where the header deadline is cleared.
		canceled.Store(true)
		_ = c.nc.SetDeadline(time.Unix(1, 0))
	})
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		_ = c.nc.Close()
		if canceled.Load() {
			if cerr := ctx.Err(); cerr != nil {
				return nil, wrote, cerr
			}
			return nil, wrote, errRequestCanceled
		}
		return nil, wrote, err
	}
	werr := req.Write(c.bw)
	if werr == nil {
		werr = c.bw.Flush()
	}
	if werr != nil {
		if resp := t.earlyAnswer(c, req); resp != nil {
			stop()
			return resp, true, nil
		}
		return fail(werr)
	}
	wrote = true
	if t.responseHeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(t.responseHeaderTimeout))
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		// Informational responses (103 Early Hints) come before the real one.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	if t.responseHeaderTimeout > 0 {
		// The timeout bounds the wait for headers only; a stream may take as long as
		// it takes. If the context ended meanwhile, its AfterFunc set the flag before
		// the deadline, so checking the flag after clearing cannot lose the cancel.
		_ = c.nc.SetReadDeadline(time.Time{})
		if canceled.Load() {
			return fail(nil)
		}
	}
	b := &h1Body{t: t, c: c, rc: resp.Body, ctx: ctx, stop: stop, canceled: &canceled,
		keep: !resp.Close && !req.Close}
	if resp.Body == http.NoBody || resp.ContentLength == 0 {
		b.eof.Store(true)
	}
	resp.Body = b
	return resp, true, nil
}

// earlyWait is how long a failed write waits for an answer the server sent before
// reading the whole request.
const earlyWait = 50 * time.Millisecond

// earlyAnswer reads the answer a server may have sent before it stopped reading the
// request (a 413 for a body over its limit, then a close, which fails our write): that
// answer says more than the write error. It returns nil when there is none, and closes
// the connection when there is: the server is done with it.
func (t *h1Transport) earlyAnswer(c *h1Conn, req *http.Request) *http.Response {
	_ = c.nc.SetReadDeadline(time.Now().Add(earlyWait))
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return nil
	}
	// An error answer is small; read it whole so that the connection can go.
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = c.nc.Close()
	if err != nil {
		return nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Close = true
	t.early.Add(1)
	return resp
}

// get returns a pooled connection that the server has not closed, or dials one.
func (t *h1Transport) get(ctx context.Context) (*h1Conn, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if time.Since(c.idleSince) < t.idleTimeout && connAlive(c.nc) {
			c.reused = true
			return c, nil
		}
		_ = c.nc.Close()
	}
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	t.dials.Add(1)
	return &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, h1ReadBuffer), bw: bufio.NewWriterSize(nc, h1WriteBuffer)}, nil
}

// put returns a connection whose response was read to the end to the pool.
func (t *h1Transport) put(c *h1Conn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	t.idle = append(t.idle, c)
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.idleTimeout, t.reap)
	}
	t.mu.Unlock()
}

// reap closes connections idle for longer than the idle timeout, so that an idle
// gateway does not hold sockets the server closed long ago.
func (t *h1Transport) reap() {
	cutoff := time.Now().Add(-t.idleTimeout)
	t.mu.Lock()
	var old []*h1Conn
	kept := t.idle[:0]
	for _, c := range t.idle {
		if c.idleSince.Before(cutoff) {
			old = append(old, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(t.idle[len(kept):])
	t.idle = kept
	t.reaper = nil
	if len(t.idle) > 0 {
		t.reaper = time.AfterFunc(t.idleTimeout, t.reap)
	}
	t.mu.Unlock()
	for _, c := range old {
		_ = c.nc.Close()
	}
}

// CloseIdleConnections closes the pooled connections (http.Client calls it through
// its own CloseIdleConnections).
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.reaper != nil {
		t.reaper.Stop()
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// h1Body is a response body that returns its connection to the pool when it was read
// to the end, and closes it otherwise. Close may be called while a Read is blocked in
// another goroutine: it closes the connection, which ends that Read.
type h1Body struct {
	t        *h1Transport
	c        *h1Conn
	rc       io.ReadCloser
	ctx      context.Context
	stop     func() bool
	canceled *atomic.Bool
	keep     bool // neither side asked to close the connection

	eof    atomic.Bool
	closed atomic.Bool
}

var errBodyClosed = errors.New("backend: read on a closed response body")

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil && b.canceled.Load():
		if err = b.ctx.Err(); err == nil {
			err = errRequestCanceled
		}
	case err != nil && b.closed.Load():
		err = errBodyClosed
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	stopped := b.stop()
	if b.eof.Load() && b.keep && stopped && !b.canceled.Load() {
		// At the end already, so this reads nothing (it picks up trailers).
		if err := b.rc.Close(); err == nil {
			b.t.put(b.c)
			return nil
		}
	}
	// Not at the end: closing the connection ends the body without reading the rest,
	// which for a stream might never come.
	return b.c.nc.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// canonicalAddr is host:port with the scheme's default port (80) filled in.
func canonicalAddr(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(trimBrackets(host), "80")
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}
