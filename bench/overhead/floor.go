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
	"syscall"
	"time"
)

// The floor is what any reverse proxy costs: one more loopback hop through Go's
// net/http and httputil.ReverseProxy, reading the request body whole and flushing
// every write, with no parsing and no recording. It runs as a separate process (this program re-executed with
// -serve-proxy), like the gateway, so that gateway minus floor is downshift's own work.

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

// startFloor re-executes this program as the floor proxy and returns its base URL.
func startFloor(upstream string, cpu int, logw io.Writer) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := pinned(cpu, self, "-serve-proxy", upstream)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logw
	p, err := startProc("floor proxy", cmd)
	if err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "floor proxy listening on "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return p, "http://" + a, nil
	case err := <-p.done:
		return nil, "", fmt.Errorf("floor proxy exited before serving: %v", err)
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return nil, "", errors.New("floor proxy did not report its address within 10s")
	}
}
