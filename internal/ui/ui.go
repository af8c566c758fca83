// Package ui is downshift's dashboard, served by `downshift serve` under /ui/: an
// overview of the gateway's traffic (calls per minute, the share small models answer,
// money saved, escalations, latency by route), the workloads with their readiness,
// policy, agreement and escalations, a page per workload (trends, latest leaderboard,
// policy history, recent calls), the models (catalog, usage, tuning jobs), and one
// call's redacted request and response, each read written to the audit trail. Admins
// change a workload's mode through a confirmation page; the reason goes into the
// policy history.
//
// Pages are rendered on the server with html/template; charts are SVG drawn in Go;
// templates and the stylesheet are embedded, so the dashboard works with no network
// beyond the server and runs no script. Every figure over time comes from the store's
// rollups (store.RollupStore), never from reading calls, so pages stay fast on large
// stores. People log in with an admin key; the browser keeps a signed session that
// names the key, never the key itself.
//
// It is cold path: the gateway never imports it. It is not the admin JSON API (package
// web), it does not decrypt payloads itself (Options.OpenCall does) and it does not
// decide routing: it saves policy versions, as the API does, through policy.Next.
package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/store"
)

//go:embed templates/*.html static/ui.css
var assets embed.FS

// Store is what the dashboard reads, and where it writes policy versions and the
// audit entries of payload reads. store/sqlite's DB is one.
type Store interface {
	CallReader
	store.AuditLog
	store.PolicyStore
	WorkloadLister
	EvalRunLister
	ModelLister
	TuneJobLister
}

// CallReader reads recorded calls; store.Store's methods of the same names.
type CallReader interface {
	ListCalls(ctx context.Context, f store.Filter) ([]store.Call, error)
	GetCall(ctx context.Context, id string) (store.Call, error)
}

// WorkloadLister reads the latest analysis's workloads (store.WorkloadStore).
type WorkloadLister interface {
	ListWorkloads(ctx context.Context) ([]store.Workload, error)
}

// EvalRunLister reads evaluation runs and their leaderboards (store.EvalStore).
type EvalRunLister interface {
	ListEvalRuns(ctx context.Context, workloadID string) ([]store.EvalRun, error)
}

// ModelLister reads the models added to the catalog at run time (store.ModelStore).
type ModelLister interface {
	ListModels(ctx context.Context) ([]store.CatalogModel, error)
}

// TuneJobLister reads fine-tuning jobs (store.TuneJobStore).
type TuneJobLister interface {
	ListTuneJobs(ctx context.Context, workload string) ([]store.TuneJob, error)
}

// Model is a model of the configured catalog as the models page lists it.
type Model struct {
	Name          string
	Role          string  // "reference" or "candidate"
	Backend       string  // the backend that serves it
	ParamsB       float64 // parameters in billions; 0: unknown
	ContextTokens int     // 0: unknown
	Licence       string  // "": unknown
	// InputPerMTok and OutputPerMTok are its per-token prices in US dollars per
	// million tokens; GPUHourUSD its price per GPU-hour instead. All 0: unknown or free.
	InputPerMTok, OutputPerMTok float64
	GPUHourUSD                  float64
}

// Options configure the dashboard. Store and Keys are required; every other zero
// value is useful.
type Options struct {
	// Store is what the pages read, and where policy changes and the audit entries of
	// payload reads are written.
	Store Store
	// Rollups gives every figure over time (charts, period totals, usage per
	// workload and per model). nil: Store, when it implements store.RollupStore;
	// with neither, the pages say so and show no figures.
	Rollups store.RollupStore
	// Keys checks the admin key a person logs in with and, on every request, that
	// the session's key is still active and what its role is now, so that revoking a
	// key or changing its role takes effect at the keys' next refresh.
	Keys *auth.Keys
	// Models returns the configured catalog's models (the composition root passes a
	// function over backend.Catalog.Models; see CatalogModels). nil: the models page
	// lists only the models seen in the rollups and those added at run time.
	Models func() []Model
	// OpenCall turns a stored call's payloads back into the JSON the client and the
	// model exchanged (decrypting them; they were redacted before they were stored).
	// nil: payloads are shown as stored.
	OpenCall func(*store.Call) error
	// PolicyChanged is called once after each policy version the dashboard saves,
	// so that the server applies it at once (the composition root passes
	// policy.Refresher.Refresh, as for the admin API). nil: nothing is called.
	PolicyChanged func(ctx context.Context)
	// KnownModel reports whether name is a model a policy may shift to; a change to
	// any other candidate is refused. nil: any non-empty name is accepted.
	KnownModel func(name string) bool
	// Logger receives logins, logouts, refused and failed requests; never a key, a
	// cookie or a payload. nil: discard.
	Logger *slog.Logger
	// Now is the clock for sessions, periods, audit entries and policy versions.
	// nil: time.Now.
	Now func() time.Time
	// SessionTTL is how long a login lasts. 0: 12 hours.
	SessionTTL time.Duration
	// SessionKey signs session cookies and CSRF tokens, at least 32 bytes. nil: 32
	// random bytes drawn by New, so sessions end when the process restarts.
	SessionKey []byte
	// SecureCookies marks the cookies Secure (sent over HTTPS only) whatever the
	// request came over, for a server behind a proxy that terminates TLS. false:
	// they are Secure when the request itself came over TLS.
	SecureCookies bool
}

// DefaultSessionTTL is how long a login lasts unless Options.SessionTTL says.
const DefaultSessionTTL = 12 * time.Hour

// UI serves the dashboard. Mount it at "/ui/": it routes on the full path.
type UI struct {
	store         Store
	rollups       store.RollupStore
	keys          *auth.Keys
	models        func() []Model
	openCall      func(*store.Call) error
	policyChanged func(context.Context)
	knownModel    func(string) bool
	log           *slog.Logger
	now           func() time.Time
	sessions      *sessions
	secure        bool // cookies are Secure whatever the request came over

	pages   map[string]*template.Template
	css     []byte // the stylesheet
	cssPath string // its path, versioned by its content
	mux     *http.ServeMux
}

// New builds the dashboard.
func New(o Options) (*UI, error) {
	if o.Store == nil || o.Keys == nil {
		return nil, errors.New("ui: Store and Keys are required")
	}
	u := &UI{store: o.Store, rollups: o.Rollups, keys: o.Keys, models: o.Models, openCall: o.OpenCall,
		policyChanged: o.PolicyChanged, knownModel: o.KnownModel, log: o.Logger, now: o.Now,
		secure: o.SecureCookies}
	if u.rollups == nil {
		u.rollups, _ = o.Store.(store.RollupStore)
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if u.now == nil {
		u.now = time.Now
	}
	ttl := o.SessionTTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	key := o.SessionKey
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // never fails: crypto/rand crashes the program instead
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("ui: SessionKey is %d bytes; want at least 32", len(key))
	}
	if ttl < 0 {
		return nil, fmt.Errorf("ui: SessionTTL %v: want a positive duration", ttl)
	}
	u.sessions = newSessions(key, ttl, u.now)
	var err error
	if u.css, err = assets.ReadFile("static/ui.css"); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(u.css)
	u.cssPath = "/ui/static/ui.css?v=" + hex.EncodeToString(sum[:6])
	if u.pages, err = parsePages(); err != nil {
		return nil, err
	}
	u.mux = u.routes()
	return u, nil
}

// parsePages parses each page's template (templates/NAME.html) together with the
// shared ones (templates/_*.html: the layout, the chart, the policy form).
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/_*.html")
	if err != nil {
		return nil, fmt.Errorf("ui: templates: %w", err)
	}
	names, err := fs.Glob(assets, "templates/[^_]*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		t, err := template.Must(base.Clone()).ParseFS(assets, name)
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		pages[strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")] = t
	}
	return pages, nil
}

// ServeHTTP serves the dashboard's routes.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script, no frame, no request to anywhere but this server; payloads must not
	// sit in a browser's or a proxy's cache.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	u.mux.ServeHTTP(w, r)
}

// routes is the route table. Every page but the login page and the stylesheet needs
// a session; changing a policy needs the admin role.
func (u *UI) routes() *http.ServeMux {
	mux := http.NewServeMux()
	viewer, admin := store.RoleViewer, store.RoleAdmin
	mux.Handle("GET /ui/{$}", u.page(viewer, u.overview))
	mux.Handle("GET /ui/workloads", u.page(viewer, u.workloads))
	mux.Handle("GET /ui/workloads/{id}", u.page(viewer, u.workload))
	mux.Handle("POST /ui/workloads/{id}/policy", u.page(admin, u.reviewPolicy))
	mux.Handle("POST /ui/workloads/{id}/policy/save", u.page(admin, u.savePolicy))
	mux.Handle("GET /ui/models", u.page(viewer, u.modelsPage))
	mux.Handle("GET /ui/calls/{id}", u.page(viewer, u.call))
	mux.Handle("GET /ui/login", http.HandlerFunc(u.loginForm))
	mux.Handle("POST /ui/login", http.HandlerFunc(u.login))
	mux.Handle("GET /ui/logout", u.page(viewer, u.logoutForm))
	mux.Handle("POST /ui/logout", u.page(viewer, u.logout))
	mux.HandleFunc("GET /ui/static/ui.css", u.stylesheet)
	mux.Handle("/ui/", u.page(viewer, func(http.ResponseWriter, *http.Request, *session) error {
		return &pageError{status: http.StatusNotFound, msg: "There is no such page."}
	}))
	return mux
}

// stylesheet serves the embedded stylesheet, to anyone: it holds nothing private.
// Pages link it with a hash of its content in the URL, so it may be cached.
func (u *UI) stylesheet(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("Content-Length", strconv.Itoa(len(u.css)))
	_, _ = w.Write(u.css)
}

// maxForm caps the body of a POSTed form.
const maxForm = 64 << 10

// handler serves one request of a logged-in person.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// page checks the session (a page asked without one goes to the login page, a POST
// without one is refused), the CSRF token of a POST and the role, then runs h and
// turns its error into an error page.
func (u *UI) page(role store.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		start := time.Now()
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		s, ok := u.sessions.read(r, u.keys)
		var err error
		switch {
		case !ok && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		case !ok:
			err = &pageError{status: http.StatusForbidden, msg: "Your session has ended: log in again, then repeat what you were doing."}
		case r.Method == http.MethodPost && !u.sessions.checkCSRF(s, r.PostFormValue("csrf")):
			err = &pageError{status: http.StatusForbidden, msg: "This form is out of date or did not come from this dashboard: open the page again and resubmit."}
		case !s.principal.Can(role):
			err = &pageError{status: http.StatusForbidden, msg: fmt.Sprintf("Your key's role is %s; this needs %s.", s.principal.Role, role)}
		default:
			err = h(&timed{ResponseWriter: w, start: start}, r, s)
		}
		if err != nil {
			u.fail(w, r, s, err)
		}
	})
}

// timed adds a Server-Timing header to the page's response, so that browser tests can
// read how long the server took.
type timed struct {
	http.ResponseWriter
	start time.Time
}

func (t *timed) WriteHeader(status int) {
	t.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%.1f", float64(time.Since(t.start).Microseconds())/1000))
	t.ResponseWriter.WriteHeader(status)
}

// pageError is an error with the page a person should see: msg holds no secret;
// cause is for the log only.
type pageError struct {
	status int
	msg    string
	cause  error
}

func (e *pageError) Error() string { return e.msg }
func (e *pageError) Unwrap() error { return e.cause }

func badRequest(msg string) *pageError { return &pageError{status: http.StatusBadRequest, msg: msg} }

// fail answers with err's page and logs it, with the key's id but never its secret.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	pe, ok := errors.AsType[*pageError](err)
	if !ok {
		pe = &pageError{status: http.StatusInternalServerError, msg: "Something went wrong on the server; it is in the server's log.", cause: err}
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", pe.status, "remote", r.RemoteAddr}
	if s != nil {
		attrs = append(attrs, "key", s.principal.KeyID)
	}
	if pe.cause != nil {
		attrs = append(attrs, "err", pe.cause)
	}
	if pe.status >= 500 {
		u.log.Error("dashboard request failed", attrs...)
	} else {
		u.log.Info("dashboard request refused", attrs...)
	}
	v := errorView{common: u.common(r, s, "Error", ""), Status: pe.status, StatusText: http.StatusText(pe.status), Message: pe.msg}
	if err := u.render(w, pe.status, "error", v); err != nil {
		u.log.Error("dashboard error page failed", "err", err)
	}
}

type errorView struct {
	common
	Status     int
	StatusText string
	Message    string
}

// common is what every page's layout shows.
type common struct {
	Title     string
	Nav       string // the current section: overview, workloads, models
	Principal *auth.Principal
	CSRF      string
	CSS       string
	Path      string // the page's path, escaped, for the period selector's links
	Window    window // the period shown; zero on pages without one
	Periods   []period
	Notice    string // a note above the content (no rollups, a saved version)
}

func (u *UI) common(r *http.Request, s *session, title, nav string) common {
	c := common{Title: title, Nav: nav, CSS: u.cssPath, Path: r.URL.EscapedPath(), Periods: periods}
	if s != nil {
		c.Principal, c.CSRF = s.principal, u.sessions.csrf(s)
	}
	return c
}

// IsAdmin reports whether the person may change policies.
func (c common) IsAdmin() bool { return c.Principal != nil && c.Principal.Can(store.RoleAdmin) }

// render executes page into a buffer and sends it, so that a template error becomes
// an error page rather than half a page.
func (u *UI) render(w http.ResponseWriter, status int, page string, data any) error {
	t := u.pages[page]
	if t == nil {
		return fmt.Errorf("ui: no page %q", page)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", data); err != nil {
		return fmt.Errorf("ui: render %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes()) // a client gone is no error of the page's
	return nil
}

// noRollups is the notice of a store that keeps no rollups.
const noRollups = "This store keeps no rollups, so the figures over time cannot be shown."
