package web

import (
	"net/http"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// audit appends an entry for what principal p did through request r. Its error is
// the client's 500: an action that must be audited does not happen without its entry.
func (a *API) audit(r *http.Request, p *auth.Principal, action store.AuditAction, target, detail string) error {
	err := a.store.AppendAudit(r.Context(), store.AuditEntry{
		At: a.now().UTC(), Actor: p.KeyID, ActorName: p.Name, Action: action,
		Target: target, Detail: detail, Remote: r.RemoteAddr,
	})
	if err != nil {
		return &apiError{status: http.StatusInternalServerError, typ: openai.TypeServer,
			msg: "The audit trail could not be written, so this was not done.", cause: err}
	}
	return nil
}

// auditJSON is an audit entry as the API shows it.
type auditJSON struct {
	ID        int64             `json:"id"`
	At        time.Time         `json:"at"`
	Actor     string            `json:"actor"`
	ActorName string            `json:"actor_name"`
	Action    store.AuditAction `json:"action"`
	Target    string            `json:"target"`
	Detail    string            `json:"detail,omitempty"`
	Remote    string            `json:"remote,omitempty"`
}

// listAudit answers GET /api/audit, newest first. Query: actor, action, target,
// since and until (RFC 3339), before (an entry id, for paging back), limit (1-1000,
// default 100).
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Action: store.AuditAction(q.Get("action")), Target: q.Get("target")}
	var err error
	if f.Limit, err = queryInt(r, "limit", 100, 1, maxLimit); err != nil {
		return err
	}
	before, err := queryInt(r, "before", 0, 1, int(^uint(0)>>1))
	if err != nil {
		return err
	}
	f.BeforeID = int64(before)
	if f.Since, err = queryTime(r, "since"); err != nil {
		return err
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
		return err
	}
	entries, err := a.store.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Entries []auditJSON `json:"entries"`
	}{Entries: make([]auditJSON, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, auditJSON(e))
	}
	return writeJSON(w, http.StatusOK, out)
}
