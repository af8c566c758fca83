// Package backend talks to OpenAI-compatible upstreams (vLLM, NIM, SGLang, llama.cpp
// server, Ollama, OpenAI) and holds the model catalog: which model is served by which
// backend, under which upstream name, at what price, in which role.
//
// It is on the hot path, so it only builds requests and classifies failures; deciding
// what to do about a failure (fallbacks, error responses) is the gateway's job. It never
// puts an API key in an error, a log line or a String method.
package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
)

// Backend is one OpenAI-compatible upstream with its own connection pool.
type Backend struct {
	name            string
	base            string // base URL without a trailing slash, e.g. http://host:8000/v1
	apiKey          string
	headers         http.Header
	client          *http.Client
	responseTimeout time.Duration
}

// New builds a backend from its configuration. getenv reads environment variables (for
// api_key_env); nil means os.Getenv.
func New(c config.Backend, getenv func(string) string) (*Backend, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend %q: url must be an absolute http(s) URL", c.Name)
	}
	if u.User != nil {
		return nil, fmt.Errorf("backend %q: url must not carry credentials; use api_key_env or api_key_file", c.Name)
	}
	key, err := c.APIKey(getenv)
	if err != nil {
		return nil, err
	}
	connect := orDefault(c.ConnectTimeout, 5*time.Second)
	respTimeout := orDefault(c.ResponseTimeout, 120*time.Second)
	idle := c.MaxIdleConns
	if idle <= 0 {
		idle = 256
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: respTimeout,
		ExpectContinueTimeout: time.Second,
		// Compressed streams would defeat per-event flushing; ask for identity.
		DisableCompression: true,
	}
	// Cleartext upstreams reached without a proxy get the lighter transport (h1.go)
	// unless the backend asks for net/http's; TLS, HTTP/2 and proxied upstreams keep
	// net/http's.
	var rt http.RoundTripper = tr
	if u.Scheme == "http" && c.Transport != config.TransportNetHTTP {
		if p, err := tr.Proxy(&http.Request{URL: u}); err == nil && p == nil {
			rt = &h1Transport{
				addr:                  canonicalAddr(u.Host),
				dial:                  dialer.DialContext,
				responseHeaderTimeout: respTimeout,
				idleTimeout:           90 * time.Second,
				maxIdle:               idle,
			}
		}
	}
	h := make(http.Header, len(c.Headers))
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	return &Backend{
		name:            c.Name,
		base:            strings.TrimRight(c.URL, "/"),
		apiKey:          key,
		headers:         h,
		client:          &http.Client{Transport: rt},
		responseTimeout: respTimeout,
	}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Name returns the backend's configured name.
func (b *Backend) Name() string { return b.name }

// String names the backend; it never includes the key.
func (b *Backend) String() string { return "backend " + b.name }

// ResponseTimeout is how long the backend may take to send response headers.
func (b *Backend) ResponseTimeout() time.Duration { return b.responseTimeout }

// Post sends body as JSON to path (relative to the base URL, e.g. "/chat/completions").
// A response is returned only for status < 400; any other outcome is an *Error, whose
// Body holds the upstream's error body when there was one. The caller closes the
// response body.
func (b *Backend) Post(ctx context.Context, path string, body []byte, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Backend: b.name, Kind: KindConnect, cause: err}
	}
	for k, v := range b.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if b.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.apiKey)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		// Error bodies are small; cap what we keep so a misbehaving upstream cannot
		// make us buffer without bound.
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(http.MaxBytesReader(nil, resp.Body, 64<<10))
		return nil, &Error{
			Backend:    b.name,
			Kind:       KindStatus,
			Status:     resp.StatusCode,
			Body:       buf.Bytes(),
			Header:     resp.Header,
			RetryAfter: resp.Header.Get("Retry-After"),
		}
	}
	return resp, nil
}

func (b *Backend) classify(ctx context.Context, err error) *Error {
	e := &Error{Backend: b.name, Kind: KindConnect, cause: err}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		e.Kind = KindCanceled
	case errors.As(err, &ne) && ne.Timeout():
		e.Kind = KindTimeout
	}
	return e
}

// Kind says how a call to a backend failed.
type Kind int

// Kinds of failure.
const (
	KindConnect  Kind = iota // could not connect, or the connection broke
	KindTimeout              // no response headers within the response timeout
	KindStatus               // the upstream answered with status >= 400
	KindCanceled             // the caller's context ended (the client went away)
)

func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindTimeout:
		return "timeout"
	case KindStatus:
		return "status"
	case KindCanceled:
		return "canceled"
	}
	return "unknown"
}

// Error is a failed call to a backend. Its message names the backend and never holds
// the API key or the request.
type Error struct {
	Backend    string
	Kind       Kind
	Status     int         // for KindStatus
	Body       []byte      // the upstream's error body, for KindStatus
	Header     http.Header // the upstream's response headers, for KindStatus
	RetryAfter string
	cause      error
}

func (e *Error) Error() string {
	switch e.Kind {
	case KindStatus:
		return fmt.Sprintf("backend %q answered with status %d", e.Backend, e.Status)
	case KindTimeout:
		return fmt.Sprintf("backend %q did not respond in time", e.Backend)
	case KindCanceled:
		return fmt.Sprintf("request to backend %q canceled", e.Backend)
	}
	return fmt.Sprintf("backend %q is unreachable", e.Backend)
}

// Unwrap returns the transport error behind a connect or timeout failure.
func (e *Error) Unwrap() error { return e.cause }

// Retryable reports whether another backend may be tried: connection failures,
// timeouts, 429 and 5xx. A 4xx other than 429 is the request's fault and would fail
// anywhere.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindConnect, KindTimeout:
		return true
	case KindStatus:
		return e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	return false
}
