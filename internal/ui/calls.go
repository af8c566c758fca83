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
	// Answers is set when the call has a second answer with a body: the two answers,
	// shown side by side in place of Response alone.
	Answers *answers
}

// answers are a call's two answers to the same request: the one the client got and the
// second one (a shadow's or a verification's), each with the model that gave it and
// the part that model plays in the policy.
type answers struct {
	ClientModel, ClientRole string
	SecondTitle             string // what the second answer was for
	SecondModel, SecondRole string
	Second                  *store.SecondAnswer
	SecondResponse          string // indented, as Response
	Refused                 string // the guard checks that refused the candidate's answer
}

// newAnswers returns the answers of c, or nil when it has no second answer's body.
func newAnswers(c *store.Call) *answers {
	s := c.Second
	if s == nil || len(s.Response) == 0 {
		return nil
	}
	a := &answers{ClientModel: c.ServedModel, SecondModel: s.Model, Second: s, SecondResponse: indent(s.Response)}
	switch s.Kind {
	case store.SecondShadow:
		a.ClientRole, a.SecondRole = "reference", "candidate"
		a.SecondTitle = "Shadow answer, not sent"
	case store.SecondVerify:
		a.ClientRole, a.SecondRole = "candidate", "reference"
		a.SecondTitle = "Verification answer, asked after the client had its answer"
	case store.SecondRejected:
		a.ClientRole, a.SecondRole = "reference", "candidate"
		a.SecondTitle = "Candidate's answer, refused"
		a.Refused = c.Guard
	default:
		a.SecondTitle = "Second answer (" + s.Kind + "), not sent"
	}
	return a
}

// call answers GET /ui/calls/{id}: one call with its redacted request and response,
// and its second answer's beside the response when it has one.
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
		Request: indent(c.Request), Response: indent(c.Response), Answers: newAnswers(&c)}
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
