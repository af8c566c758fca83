package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// CallView is a call as the API and the command line show it: durations in
// milliseconds and payloads embedded as JSON rather than base64.
type CallView struct {
	ID               string          `json:"id"`
	StartedAt        time.Time       `json:"started_at"`
	FinishedAt       time.Time       `json:"finished_at"`
	ClientID         string          `json:"client_id"`
	Workload         string          `json:"workload"`
	WorkloadID       string          `json:"workload_id"`
	Source           string          `json:"source,omitempty"`
	GroundTruth      bool            `json:"ground_truth,omitempty"`
	Fingerprint      string          `json:"fingerprint"`
	RequestedModel   string          `json:"requested_model"`
	ServedModel      string          `json:"served_model"`
	Backend          string          `json:"backend"`
	Route            store.Route     `json:"route"`
	Stream           bool            `json:"stream"`
	Status           int             `json:"status"`
	ErrorType        string          `json:"error_type,omitempty"`
	ErrorMessage     string          `json:"error_message,omitempty"`
	PromptTokens     int             `json:"prompt_tokens"`
	CompletionTokens int             `json:"completion_tokens"`
	CachedTokens     int             `json:"cached_tokens"`
	TokensEstimated  bool            `json:"tokens_estimated"`
	LatencyMS        float64         `json:"latency_ms"`
	TTFTMS           float64         `json:"ttft_ms"`
	CostUSD          float64         `json:"cost_usd"`
	Simulated        bool            `json:"simulated"`
	Redactions       map[string]int  `json:"redactions,omitempty"`
	KeyID            string          `json:"key_id,omitempty"`
	Second           *SecondView     `json:"second,omitempty"`
	Request          json.RawMessage `json:"request,omitempty"`
	Response         json.RawMessage `json:"response,omitempty"`
}

// SecondView is a call's second answer (see store.SecondAnswer) as the API shows it:
// the model that did not answer the client, how it compared, and its answer embedded
// as JSON when the view has payloads.
type SecondView struct {
	Kind             string  `json:"kind"`
	Model            string  `json:"model"`
	Status           int     `json:"status"`
	Error            string  `json:"error,omitempty"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	LatencyMS        float64 `json:"latency_ms"`
	CostUSD          float64 `json:"cost_usd"`
	Simulated        bool    `json:"simulated"`
	Compared         bool    `json:"compared"`
	// Agreement and Pass are compare's score of the candidate's answer against the
	// reference's; absent when nothing was compared.
	Agreement *float64        `json:"agreement,omitempty"`
	Pass      *bool           `json:"pass,omitempty"`
	Response  json.RawMessage `json:"response,omitempty"`
}

// NewCallView returns the view of c; payloads are shown as stored (open sealed ones
// first).
func NewCallView(c *store.Call) CallView {
	var second *SecondView
	if s := c.Second; s != nil {
		second = &SecondView{Kind: s.Kind, Model: s.Model, Status: s.Status, Error: s.Error,
			PromptTokens: s.PromptTokens, CompletionTokens: s.CompletionTokens,
			LatencyMS: ms(s.Latency), CostUSD: s.CostUSD, Simulated: s.Simulated,
			Compared: s.Compared, Response: payload(s.Response)}
		if s.Compared {
			agreement, pass := s.Agreement, s.Pass
			second.Agreement, second.Pass = &agreement, &pass
		}
	}
	return CallView{
		ID: c.ID, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt,
		ClientID: c.ClientID, Workload: c.Workload, WorkloadID: c.WorkloadID, Source: c.Source,
		GroundTruth: c.GroundTruth, Fingerprint: c.Fingerprint,
		RequestedModel: c.RequestedModel, ServedModel: c.ServedModel, Backend: c.Backend,
		Route: c.Route, Stream: c.Stream, Status: c.Status,
		ErrorType: c.ErrorType, ErrorMessage: c.ErrorMessage,
		PromptTokens: c.PromptTokens, CompletionTokens: c.CompletionTokens,
		CachedTokens: c.CachedTokens, TokensEstimated: c.TokensEstimated,
		LatencyMS: ms(c.Latency), TTFTMS: ms(c.TTFT), CostUSD: c.CostUSD, Simulated: c.Simulated,
		Redactions: c.Redactions, KeyID: c.KeyID, Second: second,
		Request: payload(c.Request), Response: payload(c.Response),
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// payload embeds b as JSON when it is JSON, and as a JSON string when it is not (a
// truncated or still sealed body), so that a call can always be shown.
func payload(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// callFilter reads GET /api/calls's query: workload, model, status (ok, error or a
// code), since and until (RFC 3339), after (a call id, for paging oldest first with
// order=asc), limit (1-1000, default 100) and order (desc or asc).
func callFilter(r *http.Request) (store.Filter, error) {
	q := r.URL.Query()
	f := store.Filter{Workload: q.Get("workload"), Model: q.Get("model"), AfterID: q.Get("after")}
	var err error
	if f.Limit, err = queryInt(r, "limit", 100, 1, maxLimit); err != nil {
		return f, err
	}
	switch s := strings.ToLower(q.Get("status")); s {
	case "":
	case "ok":
		f.Status = store.StatusOK
	case "error":
		f.Status = store.StatusError
	default:
		code, err := strconv.Atoi(s)
		if err != nil || code < 100 || code > 599 {
			return f, badRequest("status=%q: want ok, error or an HTTP status code.", s)
		}
		f.Status = code
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		f.Ascending = true
	default:
		return f, badRequest("order=%q: want asc or desc.", q.Get("order"))
	}
	if f.Since, err = queryTime(r, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
		return f, err
	}
	return f, nil
}

// listCalls answers GET /api/calls: call metadata, never payloads, and how many calls
// match in all. Listing is not audited: it shows no payload.
func (a *API) listCalls(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	f, err := callFilter(r)
	if err != nil {
		return err
	}
	calls, err := a.store.ListCalls(r.Context(), f)
	if err != nil {
		return err
	}
	total, err := a.store.CountCalls(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Calls []CallView `json:"calls"`
		Total int        `json:"total"`
	}{Calls: make([]CallView, 0, len(calls)), Total: total}
	for i := range calls {
		c := &calls[i]
		c.Request, c.Response = nil, nil
		if c.Second != nil {
			sec := *c.Second
			sec.Response = nil
			c.Second = &sec
		}
		out.Calls = append(out.Calls, NewCallView(c))
	}
	return writeJSON(w, http.StatusOK, out)
}

// getCall answers GET /api/calls/{id}: one call with its payloads. The read is written
// to the audit trail before anything is sent; when that fails, nothing is.
func (a *API) getCall(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	c, err := a.store.GetCall(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{status: http.StatusNotFound, typ: openai.TypeNotFound, code: "call_not_found",
			msg: "No call with this id."}
	}
	if err != nil {
		return err
	}
	if a.openCall != nil {
		if err := a.openCall(&c); err != nil {
			return &apiError{status: http.StatusInternalServerError, typ: openai.TypeServer,
				msg: "The call's payloads could not be opened.", cause: err}
		}
	}
	if err := a.audit(r, p, store.AuditReadPayload, id, ""); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewCallView(&c))
}
