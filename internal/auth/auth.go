// Package auth tells who a request comes from and what it may do: gateway keys that
// agents present on /v1 (each with a client id, optional allowed models and a rate
// limit) and admin keys with a role for the admin API. Keys live hashed in the store;
// Keys holds an in-memory snapshot of the active ones, refreshed on an interval, so
// that checking a request costs one SHA-256, one map lookup and, for rate-limited
// keys, one atomic compare-and-swap, with no allocation and no store access.
//
// It is on the hot path and imports no cold-path package. It does not read
// configuration, write HTTP responses or keep the audit trail: whether the gateway runs
// open (without keys), how an error becomes a status, and what is audited are the
// caller's decisions.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errors of Gateway and Admin, with the HTTP status each should become.
var (
	// ErrMissingKey: the request carries no key (401).
	ErrMissingKey = errors.New("auth: no key")
	// ErrInvalidKey: the key is unknown, revoked, malformed, or of the other kind on
	// the gateway (401). Callers must not tell these cases apart to the client.
	ErrInvalidKey = errors.New("auth: invalid key")
	// ErrGatewayKey: a valid gateway key was presented to the admin API (403).
	ErrGatewayKey = errors.New("auth: a gateway key cannot use the admin API")
	// ErrRateLimited: the gateway key is over its rate (429). The error is a
	// *RateLimitError that says when to retry.
	ErrRateLimited = errors.New("auth: rate limited")
)

// RateLimitError is returned by Keys.Gateway when a key is over its rate limit.
// errors.Is(err, ErrRateLimited) holds for it.
type RateLimitError struct {
	// RetryAfter is how long until the key's next request would be allowed.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("auth: rate limited; retry after %v", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1: the value of
// a Retry-After header.
func (e *RateLimitError) RetryAfterSeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// BearerToken returns the key a request presents: the token of an
// "Authorization: Bearer <key>" header, or else the value of an "api-key" header,
// which Azure OpenAI clients send instead (so agents built on them work unchanged).
// It returns "" when there is neither, or when Authorization holds another scheme.
//
// It reads the header map directly with canonical names, so it does not allocate.
func BearerToken(r *http.Request) string {
	if v := r.Header["Authorization"]; len(v) > 0 {
		const scheme = "Bearer "
		s := v[0]
		if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
			return ""
		}
		return strings.TrimSpace(s[len(scheme):])
	}
	if v := r.Header["Api-Key"]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}
