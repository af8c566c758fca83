package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
)

func TestPostSendsKeyHeadersAndReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk-abc" || r.Header.Get("X-Tenant") != "acme" || r.URL.Path != "/v1/chat/completions" {
			t.Errorf("upstream got auth=%q tenant=%q path=%q", r.Header.Get("Authorization"), r.Header.Get("X-Tenant"), r.URL.Path)
		}
		io.WriteString(w, `{}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	b, err := New(config.Backend{Name: "up", URL: srv.URL + "/v1/", APIKeyEnv: "K", Headers: map[string]string{"X-Tenant": "acme"}},
		func(k string) string { return map[string]string{"K": " sk-abc\n"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		resp, err := b.Post(context.Background(), "/chat/completions", []byte(`{}`), "application/json")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d connections, want 1", n)
	}
	if strings.Contains(b.String(), "sk-abc") {
		t.Error("String shows the key")
	}
}

func TestPostClassifiesFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	defer slow.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, `{"error":{"message":"slow down"}}`, http.StatusTooManyRequests)
	}))
	defer failing.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()

	cases := []struct {
		name      string
		url       string
		kind      Kind
		status    int
		retryable bool
	}{
		{"timeout", slow.URL, KindTimeout, 0, true},
		{"rate limited", failing.URL, KindStatus, 429, true},
		{"refused", closed, KindConnect, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(config.Backend{Name: "up", URL: tc.url, ResponseTimeout: 100 * time.Millisecond}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Post(context.Background(), "/x", nil, "")
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a *backend.Error", err)
			}
			if be.Kind != tc.kind || be.Status != tc.status || be.Retryable() != tc.retryable {
				t.Errorf("kind=%v status=%d retryable=%v", be.Kind, be.Status, be.Retryable())
			}
			if tc.status == 429 && (be.RetryAfter != "7" || !strings.Contains(string(be.Body), "slow down")) {
				t.Errorf("retry-after %q body %q", be.RetryAfter, be.Body)
			}
			if !strings.Contains(be.Error(), `"up"`) {
				t.Errorf("error %q does not name the backend", be.Error())
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		b, _ := New(config.Backend{Name: "up", URL: slow.URL}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := b.Post(ctx, "/x", nil, "")
		var be *Error
		if !errors.As(err, &be) || be.Kind != KindCanceled || be.Retryable() {
			t.Errorf("got %v", err)
		}
	})
}

func TestNewRejectsBadBackends(t *testing.T) {
	for _, c := range []config.Backend{
		{Name: "a", URL: "ftp://x"},
		{Name: "b", URL: "http://user:pass@host/v1"},
		{Name: "c", URL: "http://host/v1", APIKeyEnv: "MISSING"},
	} {
		if _, err := New(c, func(string) string { return "" }); err == nil {
			t.Errorf("%+v: no error", c)
		} else if strings.Contains(err.Error(), "pass") {
			t.Errorf("error leaks credentials: %v", err)
		}
	}
}

func TestCost(t *testing.T) {
	m := &Model{Price: config.Price{InputPerMTok: 2.5, OutputPerMTok: 10, CachedInputPerMTok: 1.25}}
	if got, want := m.Cost(1_000_000, 1_000_000, 200_000), 0.8*2.5+0.2*1.25+10; got != want {
		t.Errorf("cost = %v, want %v", got, want)
	}
	m.Price.CachedInputPerMTok = 0
	if got, want := m.Cost(1000, 0, 1000), 1000*2.5/1e6; got != want {
		t.Errorf("cached without a cached price = %v, want the input price %v", got, want)
	}
}
