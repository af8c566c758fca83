package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRelay sends requests through the relay on one keep-alive connection, then checks
// that the client's closing it closes the upstream's and that stopping the relay closes
// what is still open.
func TestRelay(t *testing.T) {
	var mu sync.Mutex
	states := map[http.ConnState]int{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for i := range 3 {
			fmt.Fprintf(w, "%d:%s\n", i, body)
			w.(http.Flusher).Flush()
		}
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		states[s]++
	}
	up.Start()
	defer up.Close()
	count := func(s http.ConnState) int {
		mu.Lock()
		defer mu.Unlock()
		return states[s]
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- newRelay(up.Listener.Addr().String()).run(ctx, ln) }()

	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	for i := range 5 {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost,
			"http://"+ln.Addr().String()+"/", strings.NewReader(strings.Repeat("x", 20000)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := 3 * (20000 + 3); len(b) != want {
			t.Fatalf("request %d: %d bytes back, want %d", i, len(b), want)
		}
		if reused != (i > 0) {
			t.Errorf("request %d: connection reused %v, want %v", i, reused, i > 0)
		}
	}
	if n := count(http.StateNew); n != 1 {
		t.Errorf("upstream saw %d connections, want 1", n)
	}

	// The client closes its idle connection: the relay passes the end on.
	tr.CloseIdleConnections()
	waitFor(t, "the upstream connection to close", func() bool { return count(http.StateClosed) == 1 })

	// A connection left open is closed when the relay stops.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "a second upstream connection", func() bool { return count(http.StateNew) == 2 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of its context's end")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read from a connection open when the relay stopped: %d, %v; want its end", n, err)
	}
	waitFor(t, "the second upstream connection to close", func() bool { return count(http.StateClosed) == 2 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
	}
}
