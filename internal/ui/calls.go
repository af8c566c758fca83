package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/downshift-dev/downshift/internal/store"
)

type callView struct {
	common
	Call     store.Call
	Request  string // the redacted request, indented JSON (or as stored when not JSON)
	Response string
}

// call answers GET /ui/calls/{id}: one call with its redacted request and response.
// The read is written to the audit trail, as the admin API writes it, before the page
// is sent; when that fails, nothing is shown.
func (u *UI) call(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id := r.PathValue("id")
	c, err := u.store.GetCall(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return &pageError{status: http.StatusNotFound, msg: "There is no call with this id."}
	}
	if err != nil {
		return err
	}
	if u.openCall != nil {
		if err := u.openCall(&c); err != nil {
			return &pageError{status: http.StatusInternalServerError, msg: "The call's payloads could not be opened.", cause: err}
		}
	}
	err = u.store.AppendAudit(ctx, store.AuditEntry{
		At: u.now().UTC(), Actor: s.principal.KeyID, ActorName: s.principal.Name, Action: store.AuditReadPayload,
		Target: id, Remote: r.RemoteAddr,
	})
	if err != nil {
		return &pageError{status: http.StatusInternalServerError, msg: "The audit trail could not be written, so the call is not shown.", cause: err}
	}
	v := callView{common: u.common(r, s, "Call "+id, "workloads"), Call: c,
		Request: indent(c.Request), Response: indent(c.Response)}
	return u.render(w, http.StatusOK, "call", v)
}

// indent writes a payload as indented JSON, or as it is when it is not JSON.
func indent(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}
