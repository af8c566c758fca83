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
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The floor is what any reverse proxy costs: one more loopback hop through Go's
// net/http and httputil.ReverseProxy, reading the request body whole and flushing
// every write, with no parsing and no recording. It runs as a separate process (this program re-executed with
// -serve-proxy), like the gateway, so that gateway minus floor is downshift's own work.
//
// The relay is lower still: a bare TCP relay, also in its own process (-serve-relay),
// that copies bytes between each connection it accepts and one it dials to the
// upstream, parsing nothing. It is the cost of one more loopback hop in the kernel and
// the scheduler, which no proxy of any kind can go under, so that floor minus relay is
// what proxying HTTP in Go costs.

// serveProxy runs the floor proxy to upstream until SIGTERM, printing its address.
func serveProxy(upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The body is read whole before it is forwarded, as the gateway does. Streaming it
	// through would also hit net/http's HTTP/1 limit on reading a request body after
	// the response has begun (golang/go#40747): the server closes the inbound body
	// when the response headers go out, the transport's last read of it fails and the
	// upstream connection is torn down mid-answer.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("floor proxy listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// relay copies bytes between the connections it accepts and ones it dials to upstream.
type relay struct {
	upstream string // host:port
	dialer   net.Dialer
	wg       sync.WaitGroup // one per accepted connection, until both of its sides are closed
	mu       sync.Mutex
	conns    map[net.Conn]struct{} // open connections, both sides; nil once closing
}

// serveRelay relays TCP connections to upstream (host:port) until SIGTERM, printing
// its address. Each accepted connection gets its own connection to upstream, with Go's
// defaults (TCP_NODELAY on, keep-alive probes), and the bytes are copied both ways as
// they come; an end of stream is passed on as a half-close, so the client's keep-alive
// connections live as long as it keeps them.
func serveRelay(upstream string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("relay listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return newRelay(upstream).run(ctx, ln)
}

// newRelay returns a relay to upstream (host:port).
func newRelay(upstream string) *relay {
	return &relay{upstream: upstream, dialer: net.Dialer{Timeout: 5 * time.Second}, conns: map[net.Conn]struct{}{}}
}

// run relays the connections ln accepts until ctx is done (nil) or ln fails, then
// closes ln and every connection still open and waits for them.
func (r *relay) run(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			// Whatever stopped the listener, the connections still open (idle
			// keep-alive ones, once the benchmark is done) are closed, not waited for.
			ln.Close()
			r.closeAll()
			r.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

// serve relays one accepted connection until both directions have ended.
func (r *relay) serve(client net.Conn) {
	defer r.wg.Done()
	defer client.Close()
	if !r.track(client) {
		return
	}
	defer r.untrack(client)
	up, err := r.dialer.Dial("tcp", r.upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: dial upstream:", err)
		return
	}
	defer up.Close()
	if !r.track(up) {
		return
	}
	defer r.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(up, client)
	}()
	pipe(client, up)
	<-done
}

// pipe copies src to dst until src ends, then closes dst for writing so that the far
// end sees the end too. On an error it closes both, so that the other direction ends
// as well.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// track adds c to the open connections; false when the relay is closing (c is left to
// its caller to close).
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// closeAll closes every open connection and makes track refuse new ones.
func (r *relay) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// startFloor re-executes this program as the floor proxy and returns its base URL.
func startFloor(upstream string, cpu int, logw io.Writer) (*proc, string, error) {
	p, addr, err := startSelf("floor proxy", "-serve-proxy", upstream, cpu, logw)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// startRelay re-executes this program as the relay to upstream (a base URL) and
// returns its base URL.
func startRelay(upstream string, cpu int, logw io.Writer) (*proc, string, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, "", err
	}
	if u.Port() == "" {
		return nil, "", fmt.Errorf("relay: upstream %s names no port", upstream)
	}
	p, addr, err := startSelf("relay", "-serve-relay", u.Host, cpu, logw)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// startSelf re-executes this program with flagName set to arg, pinned to cpu (-1: not
// pinned), and waits for the line "NAME listening on ADDR" it prints once serving. It
// returns the process and ADDR.
func startSelf(name, flagName, arg string, cpu int, logw io.Writer) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := pinned(cpu, self, flagName, arg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logw
	p, err := startProc(name, cmd)
	if err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), name+" listening on "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return p, a, nil
	case err := <-p.done:
		return nil, "", fmt.Errorf("%s exited before serving: %v", name, err)
	case <-time.After(10 * time.Second):
		_ = p.stop(syscall.SIGKILL, 5*time.Second)
		return nil, "", fmt.Errorf("%s did not report its address within 10s", name)
	}
}
