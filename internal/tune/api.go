package tune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// APIError is a request a trainer's service refused or could not answer: the HTTP
// status and the service's own message, with the API key cut out of it. The message
// is what the service said, shortened; never a request body.
type APIError struct {
	Op      string // what was being done: "upload training file", "poll job"
	Status  int    // the HTTP status
	Message string // the service's message, without secrets
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.Status, e.Message)
}

// retryable reports whether the same request may succeed later: rate limits and
// server errors.
func (e *APIError) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Retry settings of a trainer's HTTP client. Zero fields mean the defaults.
type Retry struct {
	// MaxAttempts bounds the tries of one request: connection errors, 429 and 5xx are
	// retried; other failures are final. Default 5.
	MaxAttempts int
	// Backoff is the wait before the first retry; each retry doubles it, with full
	// jitter, up to MaxBackoff. A Retry-After header (in seconds) is honoured up to
	// MaxBackoff. Defaults 500ms and 30s.
	Backoff, MaxBackoff time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 5
	}
	if r.Backoff <= 0 {
		r.Backoff = 500 * time.Millisecond
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 30 * time.Second
	}
	return r
}

// apiClient speaks JSON over HTTP to one trainer service with a bearer key, retrying
// what may succeed later, and keeps the key out of every error it returns.
type apiClient struct {
	http  *http.Client
	key   string // sent as "Authorization: Bearer"; "" sends none
	retry Retry
}

// request is one HTTP request an apiClient can send again: body makes a fresh body
// for each attempt.
type request struct {
	op     string // for errors: "create fine-tuning job"
	method string
	url    string
	// body returns the request body and its length (-1 if unknown); nil sends none.
	body        func() (io.ReadCloser, int64, error)
	contentType string
	header      http.Header
	// ok lists statuses besides 2xx that count as success (409 for "already exists").
	ok []int
}

// jsonBody returns a request body that sends v as JSON.
func jsonBody(v any) (func() (io.ReadCloser, int64, error), error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytesBody(b), nil
}

func bytesBody(b []byte) func() (io.ReadCloser, int64, error) {
	return func() (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
}

// do sends r, retrying connection errors, 429 and 5xx, and decodes a JSON answer into
// out (when out is not nil). It returns the final status.
func (c *apiClient) do(ctx context.Context, r request, out any) (int, error) {
	retry := c.retry.withDefaults()
	var last error
	for attempt := 1; ; attempt++ {
		status, wait, err := c.once(ctx, r, out)
		if err == nil {
			return status, nil
		}
		last = err
		var ae *APIError
		retryable := !errors.As(err, &ae) || ae.retryable()
		if !retryable || attempt >= retry.MaxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				return status, fmt.Errorf("%s: %w", r.op, ctx.Err())
			}
			return status, last
		}
		backoff := retry.Backoff << (attempt - 1)
		if backoff > retry.MaxBackoff || backoff <= 0 {
			backoff = retry.MaxBackoff
		}
		backoff = time.Duration(rand.Int64N(int64(backoff)) + 1) // full jitter
		if wait > 0 {
			backoff = min(wait, retry.MaxBackoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return status, fmt.Errorf("%s: %w", r.op, ctx.Err())
		case <-t.C:
		}
	}
}

// once sends r one time. wait is the Retry-After the service asked for, if any.
func (c *apiClient) once(ctx context.Context, r request, out any) (status int, wait time.Duration, err error) {
	var body io.ReadCloser
	length := int64(0)
	if r.body != nil {
		if body, length, err = r.body(); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", r.op, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return 0, 0, fmt.Errorf("%s: %w", r.op, err)
	}
	if body != nil {
		req.ContentLength = length
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// A transport error names the URL and the cause, never the headers.
		return 0, 0, fmt.Errorf("%s: %s", r.op, scrub(err.Error(), c.key))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return resp.StatusCode, 0, fmt.Errorf("%s: read response: %s", r.op, scrub(err.Error(), c.key))
	}
	success := resp.StatusCode/100 == 2
	for _, s := range r.ok {
		success = success || resp.StatusCode == s
	}
	if !success {
		if s, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		return resp.StatusCode, wait, &APIError{Op: r.op, Status: resp.StatusCode, Message: errorMessage(data, c.key)}
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, 0, fmt.Errorf("%s: the answer is not the JSON expected: %v", r.op, err)
		}
	}
	return resp.StatusCode, 0, nil
}

// maxMessage bounds how much of a service's error message is kept.
const maxMessage = 500

// errorMessage finds the message in an error body: OpenAI's {"error": {"message"}},
// FastAPI's {"detail": ...} (NeMo), {"message"}, or else the body itself; shortened,
// with key cut out.
func errorMessage(body []byte, key string) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Detail  json.RawMessage `json:"detail"`
		Message string          `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil {
		var inner struct {
			Message string `json:"message"`
			Code    any    `json:"code"`
		}
		var s string
		switch {
		case len(e.Error) > 0 && json.Unmarshal(e.Error, &inner) == nil && inner.Message != "":
			msg = inner.Message
			if code, ok := inner.Code.(string); ok && code != "" {
				msg += " (" + code + ")"
			}
		case len(e.Error) > 0 && json.Unmarshal(e.Error, &s) == nil && s != "":
			msg = s
		case len(e.Detail) > 0 && json.Unmarshal(e.Detail, &s) == nil:
			msg = s
		case len(e.Detail) > 0:
			msg = string(e.Detail) // FastAPI's validation errors: a list of objects
		case e.Message != "":
			msg = e.Message
		}
	}
	return shorten(scrub(msg, key), maxMessage)
}

// redacted stands in for a secret wherever one would have been shown.
const redacted = "[REDACTED]"

// scrub returns s with every secret cut out.
func scrub(s string, secrets ...string) string {
	for _, secret := range secrets {
		if len(secret) >= 4 { // shorter "secrets" would blank ordinary text
			s = strings.ReplaceAll(s, secret, redacted)
		}
	}
	return s
}

// scrubJSON returns raw with every secret cut out of it, or nil if what is left is
// not JSON (a secret that straddled an escape sequence).
func scrubJSON(raw []byte, secrets ...string) json.RawMessage {
	out := []byte(scrub(string(raw), secrets...))
	if !json.Valid(out) {
		return nil
	}
	return out
}

// shorten cuts s to at most n bytes on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// joinURL appends path to base, which may end in a slash or not.
func joinURL(base, path string) string {
	return strings.TrimRight(base, "/") + path
}
