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
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
)

// countingServer is an httptest server that counts the connections it accepted and
// the requests it served.
type countingServer struct {
	*httptest.Server
	conns    atomic.Int32
	requests atomic.Int32
	closed   chan struct{} // one value per connection closed
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{closed: make(chan struct{}, 1024)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed <- struct{}{}
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// waitClosed waits until the server has seen n connections close.
func (s *countingServer) waitClosed(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("the server did not see %d connections close", n)
		}
	}
}

func newTestBackend(t *testing.T, url string, c config.Backend) *Backend {
	t.Helper()
	c.Name, c.URL = "up", url
	b, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.client.CloseIdleConnections)
	return b
}

func h1Of(t *testing.T, b *Backend) *h1Transport {
	t.Helper()
	h, ok := b.client.Transport.(*h1Transport)
	if !ok {
		t.Fatalf("backend uses %T, want *h1Transport", b.client.Transport)
	}
	return h
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewChoosesTheTransportByScheme(t *testing.T) {
	plain, err := New(config.Backend{Name: "a", URL: "http://127.0.0.1:8000/v1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := plain.client.Transport.(*h1Transport); !ok || h.addr != "127.0.0.1:8000" {
		t.Errorf("http upstream: transport %T %+v", plain.client.Transport, h)
	}
	noPort, _ := New(config.Backend{Name: "b", URL: "http://vllm.internal/v1"}, nil)
	if h, ok := noPort.client.Transport.(*h1Transport); !ok || h.addr != "vllm.internal:80" {
		t.Errorf("http upstream without a port: transport %T", noPort.client.Transport)
	}
	chosen, _ := New(config.Backend{Name: "d", URL: "http://127.0.0.1:8000/v1", Transport: config.TransportNetHTTP}, nil)
	if _, ok := chosen.client.Transport.(*http.Transport); !ok {
		t.Errorf("transport: net/http: transport %T", chosen.client.Transport)
	}
	tls, _ := New(config.Backend{Name: "c", URL: "https://api.openai.com/v1"}, nil)
	if _, ok := tls.client.Transport.(*http.Transport); !ok {
		t.Errorf("https upstream: transport %T, want net/http's", tls.client.Transport)
	}
}

func TestH1ConcurrentRequestsGetTheirOwnAnswers(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	b := newTestBackend(t, srv.URL+"/v1", config.Backend{MaxIdleConns: 64})
	const workers, each = 32, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Bodies of different sizes, some larger than the connection's buffers.
				want := fmt.Sprintf(`{"worker":%d,"i":%d,"pad":%q}`, w, i, strings.Repeat("x", (w*each+i)*97%40000))
				resp, err := b.Post(context.Background(), "/chat/completions", []byte(want), "")
				if err != nil {
					t.Error(err)
					return
				}
				if got := readAll(t, resp); got != want {
					t.Errorf("worker %d call %d got another answer (%d bytes, want %d)", w, i, len(got), len(want))
					return
				}
			}
		})
	}
	wg.Wait()
	if n := srv.requests.Load(); n != workers*each {
		t.Errorf("server saw %d requests, want %d", n, workers*each)
	}
	if n := srv.conns.Load(); n > workers {
		t.Errorf("%d connections for %d concurrent callers", n, workers)
	}
	if d := h1Of(t, b).dials.Load(); d != int64(srv.conns.Load()) {
		t.Errorf("transport dialled %d, server accepted %d", d, srv.conns.Load())
	}
}

// A server that closes each connection after one answer, without saying so (as a
// keep-alive timeout does between requests): the next request must not fail on it.
func TestH1SkipsConnectionsTheServerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{}, 16)
	var served atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if req, err := http.ReadRequest(br); err == nil {
				io.Copy(io.Discard, req.Body)
				served.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
			}
			c.Close()
			closed <- struct{}{}
		}
	}()
	b := newTestBackend(t, "http://"+ln.Addr().String()+"/v1", config.Backend{})
	for i := range 10 {
		resp, err := b.Post(context.Background(), "/chat/completions", []byte(`{}`), "")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		readAll(t, resp)
		<-closed
	}
	if n := served.Load(); n != 10 {
		t.Errorf("served %d, want 10", n)
	}
	if d := h1Of(t, b).dials.Load(); d != 10 {
		t.Errorf("dialled %d connections, want 10 (one per closed connection)", d)
	}
}

// flakyConn fails its writes or reads once told to, as a connection the server has
// dropped does. It is not a syscall.Conn, so the pool cannot peek at it.
type flakyConn struct {
	net.Conn
	failWrite, failRead *atomic.Bool
}

func (c flakyConn) Write(p []byte) (int, error) {
	if c.failWrite.Load() {
		return 0, errors.New("write: broken pipe")
	}
	return c.Conn.Write(p)
}

func (c flakyConn) Read(p []byte) (int, error) {
	if c.failRead.Load() {
		return 0, errors.New("read: connection reset by peer")
	}
	return c.Conn.Read(p)
}

func TestH1ResendsOnlyWhatNeverLeft(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{}`)
	})
	b := newTestBackend(t, srv.URL+"/v1", config.Backend{})
	h := h1Of(t, b)
	var conns []flakyConn
	var mu sync.Mutex
	base := h.dial
	h.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := base(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		fc := flakyConn{Conn: c, failWrite: new(atomic.Bool), failRead: new(atomic.Bool)}
		mu.Lock()
		conns = append(conns, fc)
		mu.Unlock()
		return fc, nil
	}
	post := func() error {
		resp, err := b.Post(context.Background(), "/chat/completions", []byte(`{"a":1}`), "")
		if err == nil {
			readAll(t, resp)
		}
		return err
	}
	if err := post(); err != nil {
		t.Fatal(err)
	}
	// The pooled connection cannot take the next request: it is sent on a new one.
	conns[0].failWrite.Store(true)
	if err := post(); err != nil {
		t.Fatalf("a failed write on a reused connection was not retried: %v", err)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
	// The request went out but its answer broke off: sending it again could run it
	// twice, so the caller gets the error and decides (fallbacks).
	conns[1].failRead.Store(true)
	err := post()
	var be *Error
	if !errors.As(err, &be) || be.Kind != KindConnect {
		t.Fatalf("got %v, want a connect error", err)
	}
	// The server may still be reading the request our side gave up on.
	for deadline := time.Now().Add(5 * time.Second); srv.requests.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // and a resend would have arrived by now
	if n := srv.requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (the broken one once)", n)
	}
	if d := h.dials.Load(); d != 2 {
		t.Errorf("dialled %d, want 2", d)
	}
}

// A server that answers before reading the whole request and closes (a 413 for a
// body over its limit): the caller gets that answer, not the failed write.
func TestH1ReturnsAnAnswerSentBeforeTheRequestWasRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				msg := `{"error":{"message":"request too large"}}`
				fmt.Fprintf(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
			}
			c.Close() // with the body unread: the client's write fails
		}
	}()
	b := newTestBackend(t, "http://"+ln.Addr().String()+"/v1", config.Backend{})
	// Larger than loopback's socket buffers, so that the write cannot complete.
	body := bytes.Repeat([]byte("x"), 64<<20)
	_, err = b.Post(context.Background(), "/chat/completions", body, "")
	var be *Error
	if !errors.As(err, &be) || be.Kind != KindStatus || be.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(be.Body), "too large") {
		t.Fatalf("got %v, want the upstream's 413", err)
	}
	if n := h1Of(t, b).early.Load(); n != 1 {
		t.Errorf("answers read after a failed write: %d, want 1 (the write did not fail?)", n)
	}
}

func TestH1TimeoutCoversHeadersNotTheStream(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
	})
	b := newTestBackend(t, srv.URL, config.Backend{ResponseTimeout: 100 * time.Millisecond})
	resp, err := b.Post(context.Background(), "/x", nil, "text/event-stream")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n" {
		t.Errorf("stream cut by the header timeout: %q", got)
	}
}

// Each event must reach the caller before the server sends the next one.
func TestH1StreamsEachEventAsItArrives(t *testing.T) {
	next := make(chan struct{})
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	})
	b := newTestBackend(t, srv.URL, config.Backend{})
	resp, err := b.Post(context.Background(), "/x", nil, "text/event-stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("after the last event: %q", rest)
	}
	resp.Body.Close()
	// Chunked to the end: the connection goes back to the pool.
	resp2, err := b.Post(context.Background(), "/x", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 5 {
			next <- struct{}{}
		}
	}()
	readAll(t, resp2)
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func endlessStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestH1CancelEndsAStreamAndItsConnection(t *testing.T) {
	srv := newCountingServer(t, endlessStream)
	b := newTestBackend(t, srv.URL, config.Backend{})
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := b.Post(ctx, "/x", nil, "text/event-stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream went on after its context was canceled")
	}
	resp.Body.Close()
	srv.waitClosed(t, 1)
	if n := len(h1Of(t, b).idle); n != 0 {
		t.Errorf("%d connections pooled after a canceled stream", n)
	}
}

func TestH1CloseBeforeTheEndDoesNotDrain(t *testing.T) {
	srv := newCountingServer(t, endlessStream)
	b := newTestBackend(t, srv.URL, config.Backend{})
	resp, err := b.Post(context.Background(), "/x", nil, "text/event-stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		resp.Body.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		srv.CloseClientConnections() // so that the stream ends and the test can stop
		t.Fatal("Close waited for an endless stream to end")
	}
	srv.waitClosed(t, 1)
	if _, err := resp.Body.Read(make([]byte, 16)); err == nil {
		t.Error("read after Close succeeded")
	}
}

// Close from another goroutine ends a Read that is waiting for the upstream.
func TestH1CloseUnblocksAPendingRead(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	b := newTestBackend(t, srv.URL, config.Backend{})
	resp, err := b.Post(context.Background(), "/x", nil, "text/event-stream")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read block
	resp.Body.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the pending read returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the pending read")
	}
}

func TestH1HonoursConnectionClose(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, `{}`)
	})
	b := newTestBackend(t, srv.URL, config.Backend{})
	for range 3 {
		resp, err := b.Post(context.Background(), "/x", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	if n := srv.conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests answered with Connection: close", n)
	}
}

func TestH1SkipsInformationalResponses(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, `{"ok":true}`)
	})
	b := newTestBackend(t, srv.URL, config.Backend{})
	resp, err := b.Post(context.Background(), "/x", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if got := readAll(t, resp); got != `{"ok":true}` {
		t.Errorf("body %q", got)
	}
}

func TestH1ClosesIdleConnections(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{}`) })
	b := newTestBackend(t, srv.URL, config.Backend{})
	h := h1Of(t, b)
	h.idleTimeout = 50 * time.Millisecond
	resp, err := b.Post(context.Background(), "/x", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	srv.waitClosed(t, 1) // the reaper closed it
	resp, err = b.Post(context.Background(), "/x", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if d := h.dials.Load(); d != 2 {
		t.Errorf("dialled %d, want 2", d)
	}
	b.client.CloseIdleConnections()
	srv.waitClosed(t, 1)
}

func TestH1RefusesOtherHosts(t *testing.T) {
	b := newTestBackend(t, "http://127.0.0.1:9/v1", config.Backend{})
	req, _ := http.NewRequest(http.MethodPost, "http://example.com/v1/x", bytes.NewReader(nil))
	if _, err := h1Of(t, b).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "example.com") {
		t.Errorf("got %v", err)
	}
}

// BenchmarkPostLoopback compares the two transports on one loopback exchange: a
// 21 KB request (the bundled tau-bench calls' mean) and a 1.5 KB answer.
func BenchmarkPostLoopback(b *testing.B) {
	answer := []byte(`{"choices":[{"message":{"content":"` + strings.Repeat("word ", 300) + `"}}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	defer srv.Close()
	body := bytes.Repeat([]byte(`{"role":"user","content":"abcdefghij klmnopq"},`), 450)
	for _, name := range []string{"net-http", "h1"} {
		b.Run(name, func(b *testing.B) {
			be, err := New(config.Backend{Name: "up", URL: srv.URL}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if name == "net-http" {
				be.client.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
			}
			defer be.client.CloseIdleConnections()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				resp, err := be.Post(context.Background(), "/chat/completions", body, "")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
