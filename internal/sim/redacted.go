package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/redact"
)

// redactedIndex finds a recording by its conversation as redaction left it: what an
// evaluation replays from a store that redacted calls before writing them. Only
// recordings whose conversation redaction changed are in it; the others are found by
// the plain keys.
type redactedIndex struct {
	calls map[key]*redactedRecording
	// withoutSystem is as index.withoutSystem, for redacted conversations. A nil
	// value marks a key shared by recordings with different redacted answers.
	withoutSystem map[key]*redactedRecording
	changed       int // recordings whose conversation redaction changed
	ambiguous     int // keys shared by recordings with different redacted answers
	failed        int // recordings that could not be redacted, and so are not in it
}

// redactedRecording is a recording as a store with redaction on holds it.
type redactedRecording struct {
	rec *recording
	// answers are the call's answers, each redacted together with its request as the
	// gateway's recorder redacts a call (placeholders numbered across the request and
	// the response). An answer is nil when its redaction left the conversation
	// otherwise: a value found in that answer only is replaced in the request too.
	answers []*dataset.Answer
}

func (ri *redactedIndex) exact(k key) *redactedRecording {
	if ri == nil {
		return nil
	}
	return ri.calls[k]
}

func (ri *redactedIndex) withoutSys(k key) *redactedRecording {
	if ri == nil {
		return nil
	}
	return ri.withoutSystem[k]
}

// redactedForm is one redacted conversation of a recording, with the answers whose
// redaction gave it.
type redactedForm struct {
	key, withoutSystem key
	answers            []*dataset.Answer
}

// newRedactedIndex redacts every recording, on every CPU, and indexes those whose
// conversation changed. Recordings are merged in their order, so which of two
// recordings sharing a key wins does not depend on scheduling.
func newRedactedIndex(r *redact.Redactor, recs []*recording) *redactedIndex {
	forms := make([][]redactedForm, len(recs))
	errs := make([]error, len(recs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(recs)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(recs); i = int(next.Add(1) - 1) {
				forms[i], errs[i] = redactRecording(r, recs[i])
			}
		})
	}
	wg.Wait()

	ri := &redactedIndex{calls: map[key]*redactedRecording{}, withoutSystem: map[key]*redactedRecording{}}
	for i, fs := range forms {
		if errs[i] != nil {
			ri.failed++
			continue
		}
		if len(fs) > 0 {
			ri.changed++
		}
		plainWithout := withoutSystemKey(recs[i].call.Request.Messages)
		for _, f := range fs {
			rr := &redactedRecording{rec: recs[i], answers: f.answers}
			ri.add(ri.calls, f.key, rr)
			// A conversation whose redaction changed its system messages only is
			// found without them by the plain key, and the plain index decides.
			if f.withoutSystem != plainWithout {
				ri.add(ri.withoutSystem, f.withoutSystem, rr)
			}
		}
	}
	return ri
}

// add indexes rr under k, unless k is taken: by a recording with the same answers,
// which keeps it, or with other answers, which makes k ambiguous (nil).
func (ri *redactedIndex) add(m map[key]*redactedRecording, k key, rr *redactedRecording) {
	other, taken := m[k]
	switch {
	case !taken:
		m[k] = rr
	case other == nil, sameAnswers(other.answers, rr.answers):
	default:
		m[k] = nil
		ri.ambiguous++
	}
}

func sameAnswers(a, b []*dataset.Answer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch {
		case a[i] == nil || b[i] == nil:
			if a[i] != b[i] {
				return false
			}
		case a[i].Model != b[i].Model || a[i].FinishReason != b[i].FinishReason ||
			!reflect.DeepEqual(a[i].Message, b[i].Message):
			return false
		}
	}
	return true
}

// redactRecording redacts rec's call once per answer, as the gateway's recorder
// redacts a call: the request as a client sends it (Call.RequestJSON, what the demo
// and agents replaying a dataset send) together with the answer as one
// chat.completion. It returns the redacted conversations that differ from the
// recorded one, with their redacted answers; none when redaction found nothing in
// the conversation.
func redactRecording(r *redact.Redactor, rec *recording) ([]redactedForm, error) {
	c := rec.call
	body, err := requestJSON(c)
	if err != nil {
		return nil, err
	}
	var forms []redactedForm
	for i, a := range c.Answers {
		resp, err := marshal(openai.ChatCompletion{Object: "chat.completion", Model: a.Model,
			Choices: []openai.Choice{{Index: 0, Message: a.Message, FinishReason: a.FinishReason}}})
		if err != nil {
			return nil, err
		}
		req2, resp2, _, err := r.RedactCall(body, resp)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(req2, body) {
			continue // the plain keys find it
		}
		red, err := openai.DecodeChatRequest(req2)
		if err != nil {
			return nil, fmt.Errorf("sim: redacted request of call %s: %w", c.ID, err)
		}
		k := conversationKey(red.Messages)
		if k == rec.key {
			continue // redaction changed no text the key holds
		}
		if !bytes.Equal(resp2, resp) {
			var cc openai.ChatCompletion
			if err := json.Unmarshal(resp2, &cc); err != nil {
				return nil, fmt.Errorf("sim: redacted answer of call %s: %w", c.ID, err)
			}
			if len(cc.Choices) != 1 {
				return nil, errors.New("sim: redacted answer without its choice")
			}
			a.Message = cc.Choices[0].Message
		}
		j := 0
		for j < len(forms) && forms[j].key != k {
			j++
		}
		if j == len(forms) {
			forms = append(forms, redactedForm{key: k, withoutSystem: withoutSystemKey(red.Messages),
				answers: make([]*dataset.Answer, len(c.Answers))})
		}
		forms[j].answers[i] = &a
	}
	return forms, nil
}

// requestJSON returns the request of c as a client replaying it sends it: its
// recorded bytes (Call.RequestJSON), or, for a call built in code, which has none,
// the request encoded.
func requestJSON(c *dataset.Call) ([]byte, error) {
	body, err := c.RequestJSON()
	if err != nil {
		return nil, err
	}
	model, err := json.Marshal(c.Request.Model)
	if err != nil {
		return nil, err
	}
	// RequestJSON writes the model first, then the messages it was loaded with.
	if bytes.HasPrefix(body, fmt.Appendf(nil, `{"model":%s,"messages":null`, model)) {
		return json.Marshal(openai.ChatRequest{Model: c.Request.Model, Messages: c.Request.Messages, Tools: c.Request.Tools})
	}
	return body, nil
}
