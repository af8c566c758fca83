package dataset

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
	"github.com/downshift-dev/downshift/internal/workload"
)

// ModelUnknown is the model of calls whose data names none (fine-tuning lines imported
// without Importer.Model).
const ModelUnknown = "unknown"

// BadRecord is a record an importer skipped, and why.
type BadRecord struct {
	// Line is the 1-based line of the record in its file (JSON Lines formats), or 0.
	Line int
	// Key names the record when the data names it (a BFCL id), or is empty.
	Key string
	// Err says what is wrong with it.
	Err error
}

// Error says where the record is and what is wrong with it.
func (b BadRecord) Error() string {
	var where []string
	if b.Line > 0 {
		where = append(where, fmt.Sprintf("line %d", b.Line))
	}
	if b.Key != "" {
		where = append(where, b.Key)
	}
	if len(where) == 0 {
		return b.Err.Error()
	}
	return strings.Join(where, " ") + ": " + b.Err.Error()
}

// Unwrap returns the cause.
func (b BadRecord) Unwrap() error { return b.Err }

// Importer turns the records of a dataset or log file into store.Calls, as they would
// have been recorded by the gateway but with Source set: status 200, the request and
// response as JSON, the fingerprint of the request, tokens from the data's usage or
// else counted (and flagged as estimated), times from the record's timestamp or else
// ImportTime, and an ID from ImportID, so that importing the same file twice yields
// the same calls. Payloads are neither redacted nor sealed here: the caller runs each
// call through the same privacy step as recorded calls before writing it.
//
// An Importer is not safe for concurrent use.
type Importer struct {
	// Call receives each call built, in file order. An error stops the import and is
	// returned. Required.
	Call func(store.Call) error
	// Bad receives each record that is skipped, with why; an error it returns stops
	// the import and is returned. Nil: the first bad record stops the import with its
	// BadRecord as the error, so nothing is ever skipped silently.
	Bad func(BadRecord) error
	// Tokens counts the tokens of calls whose data reports no usage. Nil: the o200k
	// vocabulary is loaded on first use.
	Tokens *tokens.Counter
	// Model is the model of records that name none (OpenAI fine-tuning lines).
	// Empty: ModelUnknown.
	Model string
}

// record is what a format yields for one call, before it becomes a store.Call.
type record struct {
	source string
	key    []byte    // names the record for ImportID
	at     time.Time // the record's timestamp; zero: ImportTime(source, index)
	index  int

	req      *openai.ChatRequest
	reqJSON  []byte
	resp     *openai.ChatCompletion
	respJSON []byte

	workload, clientID string
	servedModel        string // "" : the response's model, else the request's
	groundTruth        bool
}

// emit builds the call of r and hands it to im.Call.
func (im *Importer) emit(r record) error {
	if im.Call == nil {
		return errors.New("dataset: Importer.Call is nil")
	}
	c, err := im.build(r)
	if err != nil {
		return err
	}
	return im.Call(c)
}

func (im *Importer) build(r record) (store.Call, error) {
	at := r.at
	if at.IsZero() {
		at = ImportTime(r.source, r.index)
	}
	id, err := ImportID(r.source, at, r.key)
	if err != nil {
		return store.Call{}, err
	}
	served := r.servedModel
	if served == "" {
		served = r.resp.Model
	}
	if served == "" {
		served = r.req.Model
	}
	c := store.Call{
		ID:             id,
		StartedAt:      at,
		FinishedAt:     at,
		ClientID:       r.clientID,
		Workload:       r.workload,
		Fingerprint:    workload.Fingerprint(r.req),
		RequestedModel: r.req.Model,
		ServedModel:    served,
		Status:         200,
		Source:         r.source,
		GroundTruth:    r.groundTruth,
		Request:        r.reqJSON,
		Response:       r.respJSON,
	}
	if !r.groundTruth {
		c.Route = store.RouteReference
	}
	if u := r.resp.Usage; u != nil {
		c.PromptTokens, c.CompletionTokens = u.PromptTokens, u.CompletionTokens
		if u.PromptTokensDetails != nil {
			c.CachedTokens = u.PromptTokensDetails.CachedTokens
		}
	} else {
		counter, err := im.counter()
		if err != nil {
			return store.Call{}, err
		}
		c.PromptTokens, c.CompletionTokens = counter.Prompt(r.req), counter.Completion(r.resp)
		c.TokensEstimated = true
	}
	return c, nil
}

func (im *Importer) counter() (*tokens.Counter, error) {
	if im.Tokens == nil {
		t, err := tokens.New()
		if err != nil {
			return nil, err
		}
		im.Tokens = t
	}
	return im.Tokens, nil
}

// bad reports a skipped record.
func (im *Importer) bad(b BadRecord) error {
	if im.Bad == nil {
		return b
	}
	return im.Bad(b)
}

// eachLine calls fn with every non-blank line of r and its 1-based number; a line
// fn finds bad goes to im.Bad. Lines may be of any length.
func (im *Importer) eachLine(r io.Reader, fn func(line []byte, n int) (record, error)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			rec, berr := fn(line, n)
			if berr != nil {
				if err := im.bad(BadRecord{Line: n, Err: berr}); err != nil {
					return err
				}
			} else if err := im.emit(rec); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dataset: reading line %d: %w", n, err)
		}
	}
}

// OpenAI imports OpenAI chat JSON Lines (Source store.SourceOpenAI). Each line is
// either a request/response pair, {"request": {chat request}, "response":
// {chat.completion}}, as a client or proxy logs them, or a line of OpenAI's chat
// fine-tuning format, {"messages": [...], "tools": [...]}, whose last message is the
// assistant's answer and becomes the response (with model Importer.Model).
//
// A pair's time is its response's "created" when set; a fine-tuning line's is
// ImportTime. The workload tag is the request's metadata.workload. A line that is not
// valid JSON, whose request is not a valid chat request, or whose response has no
// assistant choice goes to Importer.Bad.
func (im *Importer) OpenAI(r io.Reader) error {
	return im.eachLine(r, im.openAILine)
}

func (im *Importer) openAILine(line []byte, n int) (record, error) {
	var l struct {
		Request  json.RawMessage `json:"request"`
		Response json.RawMessage `json:"response"`
		Messages json.RawMessage `json:"messages"`
		Tools    json.RawMessage `json:"tools"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return record{}, fmt.Errorf("not a JSON object: %w", err)
	}
	switch {
	case !isAbsent(l.Request) || !isAbsent(l.Response):
		rec, err := pairRecord(l.Request, l.Response)
		if err != nil {
			return record{}, err
		}
		rec.source, rec.index = store.SourceOpenAI, n-1
		if rec.resp.Created > 0 {
			rec.at = time.Unix(rec.resp.Created, 0).UTC()
		}
		rec.workload = workload.Tag("", rec.req)
		return rec, nil
	case !isAbsent(l.Messages):
		return im.fineTuningRecord(l.Messages, l.Tools, n-1)
	default:
		return record{}, errors.New(`want {"request": ..., "response": ...} or {"messages": [...]}`)
	}
}

// pairRecord checks a request and its response and returns them compacted; key is
// both, so that two identical exchanges are one call.
func pairRecord(rawReq, rawResp json.RawMessage) (record, error) {
	if isAbsent(rawReq) {
		return record{}, errors.New("no request")
	}
	if isAbsent(rawResp) {
		return record{}, errors.New("no response")
	}
	reqJSON, err := compact(rawReq)
	if err != nil {
		return record{}, fmt.Errorf("request: %w", err)
	}
	req, err := openai.DecodeChatRequest(reqJSON)
	if err != nil {
		return record{}, fmt.Errorf("request: %w", err)
	}
	respJSON, err := compact(rawResp)
	if err != nil {
		return record{}, fmt.Errorf("response: %w", err)
	}
	resp, err := decodeCompletion(respJSON)
	if err != nil {
		return record{}, fmt.Errorf("response: %w", err)
	}
	return record{
		key:      joinKey(reqJSON, respJSON),
		req:      req,
		reqJSON:  reqJSON,
		resp:     resp,
		respJSON: respJSON,
	}, nil
}

// decodeCompletion checks that b is a chat.completion with at least one assistant
// choice; an error body or a stream chunk is not.
func decodeCompletion(b []byte) (*openai.ChatCompletion, error) {
	var cc openai.ChatCompletion
	if err := json.Unmarshal(b, &cc); err != nil {
		return nil, fmt.Errorf("not a chat.completion: %w", err)
	}
	if cc.Object != "" && cc.Object != "chat.completion" {
		return nil, fmt.Errorf("object is %q, want chat.completion", cc.Object)
	}
	if len(cc.Choices) == 0 {
		return nil, errors.New("no choices (an error body is not an answer)")
	}
	for i, ch := range cc.Choices {
		if ch.Message.Role != "assistant" {
			return nil, fmt.Errorf("choices[%d].message.role is %q, want assistant", i, ch.Message.Role)
		}
	}
	return &cc, nil
}

// fineTuningRecord turns {"messages": [..., assistant], "tools": [...]} into a request
// (every message but the last, and the tools) and a chat.completion of the last.
func (im *Importer) fineTuningRecord(rawMsgs, rawTools json.RawMessage, index int) (record, error) {
	var msgs []json.RawMessage
	if err := json.Unmarshal(rawMsgs, &msgs); err != nil {
		return record{}, fmt.Errorf("messages: want an array: %w", err)
	}
	if len(msgs) < 2 {
		return record{}, errors.New("messages: want at least one prompt message and the assistant's answer")
	}
	var last openai.Message
	if err := json.Unmarshal(msgs[len(msgs)-1], &last); err != nil {
		return record{}, fmt.Errorf("messages[%d]: %w", len(msgs)-1, err)
	}
	if last.Role != "assistant" {
		return record{}, fmt.Errorf("messages[%d].role is %q: the last message must be the assistant's answer", len(msgs)-1, last.Role)
	}
	model := im.Model
	if model == "" {
		model = ModelUnknown
	}
	body := struct {
		Model    string            `json:"model"`
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools,omitempty"`
	}{model, msgs[:len(msgs)-1], nil}
	if !isAbsent(rawTools) {
		body.Tools = rawTools
	}
	reqJSON, err := marshalCompact(body)
	if err != nil {
		return record{}, err
	}
	req, err := openai.DecodeChatRequest(reqJSON)
	if err != nil {
		return record{}, err
	}
	toolsJSON, _ := compact(rawTools)
	msgsJSON, err := compact(rawMsgs)
	if err != nil {
		return record{}, err
	}
	// The model is left out of the key: naming it with --model must not make the same
	// lines new calls.
	key := joinKey(msgsJSON, toolsJSON)
	at := ImportTime(store.SourceOpenAI, index)
	resp, respJSON, err := completion(key, at, model, last)
	if err != nil {
		return record{}, err
	}
	return record{
		source: store.SourceOpenAI, key: key, index: index,
		req: req, reqJSON: reqJSON, resp: resp, respJSON: respJSON,
		workload: workload.Tag("", req),
	}, nil
}

// completion wraps an assistant message into a chat.completion whose id derives from
// key, so that it is the same on every import.
func completion(key []byte, at time.Time, model string, m openai.Message) (*openai.ChatCompletion, []byte, error) {
	sum := sha256.Sum256(key)
	cc := &openai.ChatCompletion{
		ID:      "chatcmpl-" + hex.EncodeToString(sum[:12]),
		Object:  "chat.completion",
		Created: at.Unix(),
		Model:   model,
		Choices: []openai.Choice{{Message: m, FinishReason: finishReason(m)}},
	}
	b, err := marshalCompact(cc)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: encode response: %w", err)
	}
	return cc, b, nil
}

// Flywheel imports NVIDIA Data Flywheel log JSON Lines (Source store.SourceFlywheel):
// one {"timestamp", "workload_id", "client_id", "request", "response"} object a line.
// timestamp is unix seconds (a number, fractions allowed) or an RFC 3339 string and is
// required; workload_id becomes the call's Workload (the client's tag; when empty, the
// request's metadata.workload) and client_id its ClientID. A line without a valid
// timestamp, request or response, or whose workload_id is not a valid tag (printable,
// at most 128 characters), goes to Importer.Bad.
func (im *Importer) Flywheel(r io.Reader) error {
	return im.eachLine(r, flywheelLine)
}

func flywheelLine(line []byte, n int) (record, error) {
	var l struct {
		Timestamp  json.RawMessage `json:"timestamp"`
		WorkloadID string          `json:"workload_id"`
		ClientID   string          `json:"client_id"`
		Request    json.RawMessage `json:"request"`
		Response   json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return record{}, fmt.Errorf("not a flywheel log record: %w", err)
	}
	at, err := parseTimestamp(l.Timestamp)
	if err != nil {
		return record{}, err
	}
	rec, err := pairRecord(l.Request, l.Response)
	if err != nil {
		return record{}, err
	}
	rec.source, rec.index, rec.at = store.SourceFlywheel, n-1, at
	rec.workload = workload.Tag(l.WorkloadID, rec.req)
	if strings.TrimSpace(l.WorkloadID) != "" && rec.workload == "" {
		return record{}, fmt.Errorf("workload_id %q is not a valid workload tag (printable, at most %d characters)", l.WorkloadID, workload.MaxTagLen)
	}
	rec.clientID = l.ClientID
	rec.key = joinKey([]byte(l.WorkloadID), []byte(l.ClientID), rec.key)
	return rec, nil
}

// parseTimestamp reads unix seconds (integer or fractional) or an RFC 3339 string.
func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	if isAbsent(raw) {
		return time.Time{}, errors.New("no timestamp")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339 or unix seconds", s)
		}
		if t.Before(time.Unix(0, 0)) {
			return time.Time{}, fmt.Errorf("timestamp %q is before 1970", s)
		}
		return t.UTC(), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, fmt.Errorf("timestamp %s: want RFC 3339 or unix seconds", raw)
	}
	// Up to the year 9999: anything larger is milliseconds or nonsense.
	if f < 0 || f > 253402300799 || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("timestamp %s: want unix seconds between 1970 and 9999", raw)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
}

// TauBench imports the calls TauCalls made of tau-bench trajectories (Source
// store.SourceTauBench): each assistant turn is one call whose request is the
// conversation before it and whose response is the message GPT-4o gave, as a
// chat.completion. Trajectories carry no timestamps, so the call at index i has time
// ImportTime(SourceTauBench, i); its ID hashes the turn's task, trial and message
// index (Call.ID).
func (im *Importer) TauBench(calls []Call) error {
	for i := range calls {
		c := &calls[i]
		if len(c.Answers) == 0 {
			if err := im.bad(BadRecord{Key: c.ID, Err: errors.New("no recorded answer")}); err != nil {
				return err
			}
			continue
		}
		reqJSON, err := c.RequestJSON()
		if err != nil {
			return err
		}
		key := []byte(c.ID)
		at := ImportTime(store.SourceTauBench, i)
		a := c.Answers[0]
		resp, respJSON, err := completion(key, at, a.Model, a.Message)
		if err != nil {
			return err
		}
		req := c.Request
		err = im.emit(record{
			source: store.SourceTauBench, key: key, index: i,
			req: &req, reqJSON: reqJSON, resp: resp, respJSON: respJSON,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// isAbsent reports whether a member was missing or null.
func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func compact(raw json.RawMessage) ([]byte, error) {
	if isAbsent(raw) {
		return nil, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// marshalCompact encodes v without HTML escaping, as the datasets write their text.
func marshalCompact(v any) ([]byte, error) {
	return marshalValue(v)
}

// joinKey joins the parts of a record key with NUL bytes, which JSON text never holds.
func joinKey(parts ...[]byte) []byte {
	return bytes.Join(parts, []byte{0})
}
