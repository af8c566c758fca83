package gateway

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Error types as OpenAI names them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
	typeTimeout        = "timeout_error"
	typeAuthentication = "authentication_error"
	typePermission     = "permission_error"
)

// apiError is an error with the response a client should see. msg is client-visible
// and must hold no secret; cause is for the log only.
type apiError struct {
	status int
	typ    string
	msg    string
	param  string
	code   string
	// body, when set, is sent instead of one built from the fields (an upstream's own
	// error body passed through).
	body []byte
	// challenge adds WWW-Authenticate: Bearer (401s); retryAfter a Retry-After (429s).
	challenge  bool
	retryAfter int
	cause      error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.cause }

func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{status: http.StatusInternalServerError, typ: typeServer, msg: "internal error", cause: err}
}

// bytes returns the OpenAI error body the client receives.
func (e *apiError) bytes() []byte {
	if e.body != nil {
		return e.body
	}
	return openai.ErrorBody(e.typ, e.msg, e.param, e.code)
}

func writeError(w http.ResponseWriter, e *apiError) {
	b := e.bytes()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if e.challenge {
		h.Set("WWW-Authenticate", "Bearer")
	}
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}
