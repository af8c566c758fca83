// Package web is downshift's admin JSON API, served under /api/ behind admin keys with
// roles: recorded calls (metadata for listing; payloads one call at a time, each read
// written to the audit trail first), gateway and admin keys, the workloads' shift
// policies (read, changed and stepped back, each change a new audited version), and the
// audit trail. The dashboard pages will live here too.
//
// It is cold path: the gateway never imports it, and it reads the store directly. It
// does not authenticate agents on /v1 (package auth and the gateway do) and it does not
// decrypt payloads itself: the composition root passes Options.OpenCall.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// Store is what the admin API reads and writes: calls, keys, policies and the audit
// trail. store/sqlite's DB is one.
type Store interface {
	CallReader
	store.KeyStore
	store.AuditLog
	store.PolicyStore
}

// CallReader reads recorded calls; store.Store's methods of the same names.
type CallReader interface {
	ListCalls(ctx context.Context, f store.Filter) ([]store.Call, error)
	GetCall(ctx context.Context, id string) (store.Call, error)
	CountCalls(ctx context.Context, f store.Filter) (int, error)
}

// Options configure the API. Store and Keys are required.
type Options struct {
	Store Store
	// Keys authenticates admin keys. The API refreshes it after it creates or revokes
	// a key, so that the change holds at once in this process.
	Keys *auth.Keys
	// OpenCall turns a stored call's payloads back into the JSON the client and the
	// model exchanged (decrypting them). nil: payloads are served as stored.
	OpenCall func(*store.Call) error
	// Logger receives one line per refused or failed request; never a key, a secret or
	// a payload. nil: discard.
	Logger *slog.Logger
	// Now is the clock for audit entries, key times and policy versions. nil: time.Now.
	Now func() time.Time
	// PolicyChanged is called once after each policy version the API saves, so that
	// the server applies it at once rather than at its next periodic reload (the
	// composition root passes policy.Refresher.Refresh). nil: nothing is called.
	PolicyChanged func(ctx context.Context)
	// KnownModel reports whether name is a model a policy may shift to; a policy
	// change to any other candidate is refused. nil: any non-empty name is accepted.
	KnownModel func(name string) bool
}

// API serves the admin JSON API. Mount it at "/api/" (it routes on the full path).
type API struct {
	store         Store
	keys          *auth.Keys
	openCall      func(*store.Call) error
	log           *slog.Logger
	now           func() time.Time
	policyChanged func(context.Context)
	knownModel    func(string) bool
	mux           *http.ServeMux
}

// New builds the API.
func New(o Options) (*API, error) {
	if o.Store == nil || o.Keys == nil {
		return nil, errors.New("web: Store and Keys are required")
	}
	a := &API{store: o.Store, keys: o.Keys, openCall: o.OpenCall, log: o.Logger, now: o.Now,
		policyChanged: o.PolicyChanged, knownModel: o.KnownModel}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.mux = a.routes()
	return a, nil
}

// ServeHTTP serves the API's routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Payloads and secrets must not sit in a browser's or a proxy's cache.
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	a.mux.ServeHTTP(w, r)
}

// handler serves one authorised request for principal p.
type handler func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// routes is the route table, with the role each endpoint needs. Unknown paths and
// methods need a viewer key too, so that the API's shape is not shown to strangers.
func (a *API) routes() *http.ServeMux {
	mux := http.NewServeMux()
	viewer, admin := store.RoleViewer, store.RoleAdmin
	mux.Handle("GET /api/calls", a.route(viewer, a.listCalls))
	mux.Handle("GET /api/calls/{id}", a.route(viewer, a.getCall))
	mux.Handle("GET /api/keys", a.route(admin, a.listKeys))
	mux.Handle("POST /api/keys", a.route(admin, a.createKey))
	mux.Handle("DELETE /api/keys/{id}", a.route(admin, a.revokeKey))
	mux.Handle("GET /api/audit", a.route(admin, a.listAudit))
	mux.Handle("GET /api/policies", a.route(viewer, a.listPolicies))
	mux.Handle("GET /api/policies/{workload}", a.route(viewer, a.getPolicy))
	mux.Handle("POST /api/policies/{workload}", a.route(admin, a.changePolicy))
	mux.Handle("POST /api/policies/{workload}/back", a.route(admin, a.backPolicy))
	for _, p := range []string{"/api/calls", "/api/calls/{id}", "/api/keys", "/api/keys/{id}", "/api/audit",
		"/api/policies", "/api/policies/{workload}", "/api/policies/{workload}/back"} {
		mux.Handle(p, a.route(viewer, methodNotAllowed))
	}
	mux.Handle("/api/", a.route(viewer, func(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
		return &apiError{status: http.StatusNotFound, typ: openai.TypeNotFound, code: "unknown_url",
			msg: fmt.Sprintf("Unknown request URL: %s %s.", r.Method, r.URL.Path)}
	}))
	return mux
}

func methodNotAllowed(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	return &apiError{status: http.StatusMethodNotAllowed, typ: openai.TypeInvalidRequest, code: "method_not_allowed",
		msg: fmt.Sprintf("Method %s is not allowed on %s.", r.Method, r.URL.Path)}
}

// route authenticates the request, checks that its key holds role, runs h, and turns
// an error into the JSON error response.
func (a *API) route(role store.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authorize(r, role)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			a.fail(w, r, p, err)
		}
	})
}

func (a *API) authorize(r *http.Request, role store.Role) (*auth.Principal, error) {
	p, err := a.keys.Admin(auth.BearerToken(r))
	switch {
	case errors.Is(err, auth.ErrMissingKey):
		return nil, &apiError{status: http.StatusUnauthorized, typ: openai.TypeAuthentication,
			msg: "No admin key: send Authorization: Bearer <admin key>.", cause: err}
	case errors.Is(err, auth.ErrGatewayKey):
		return nil, &apiError{status: http.StatusForbidden, typ: openai.TypePermission, code: "gateway_key",
			msg: "This is a gateway key; the admin API needs an admin key.", cause: err}
	case err != nil:
		return nil, &apiError{status: http.StatusUnauthorized, typ: openai.TypeAuthentication,
			code: openai.CodeInvalidAPIKey, msg: "Invalid admin key.", cause: err}
	}
	if !p.Can(role) {
		return p, &apiError{status: http.StatusForbidden, typ: openai.TypePermission, code: "insufficient_role",
			msg: fmt.Sprintf("This key's role is %s; this needs %s.", p.Role, role)}
	}
	return p, nil
}

// apiError is an error with the response a client should see. msg is client-visible
// and must hold no secret; cause is for the log only. param names the request field at
// fault, when there is one.
type apiError struct {
	status int
	typ    string
	code   string
	param  string
	msg    string
	cause  error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.cause }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, msg: fmt.Sprintf(format, args...)}
}

// fail answers with err as OpenAI's error JSON and logs it, without the request's key.
func (a *API) fail(w http.ResponseWriter, r *http.Request, p *auth.Principal, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, typ: openai.TypeServer, msg: "internal error", cause: err}
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", ae.status, "remote", r.RemoteAddr}
	if p != nil {
		attrs = append(attrs, "key", p.KeyID)
	}
	if ae.cause != nil {
		attrs = append(attrs, "err", ae.cause)
	}
	if ae.status >= 500 {
		a.log.Error("admin API request failed", attrs...)
	} else {
		a.log.Info("admin API request refused", attrs...)
	}
	b := openai.ErrorBody(ae.typ, ae.msg, ae.param, ae.code)
	h := w.Header()
	if ae.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="downshift"`)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(ae.status)
	_, _ = w.Write(b)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// queryInt reads an integer query parameter in [lo, hi], or def when absent.
func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s=%q: want an integer from %d to %d.", name, s, lo, hi)
	}
	return n, nil
}

// queryTime reads an RFC 3339 time query parameter, or the zero time when absent.
func queryTime(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("%s=%q: want an RFC 3339 time such as 2025-06-01T12:00:00Z.", name, s)
	}
	return t, nil
}

// maxLimit caps how many calls or audit entries one request may list.
const maxLimit = 1000
