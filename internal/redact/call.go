package redact

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// ErrNotJSON is wrapped by RedactCall's error when a payload is not valid JSON. The
// payload was then redacted as plain text, and what RedactCall returned is still safe
// to store.
var ErrNotJSON = errors.New("redact: payload is not JSON")

// field is one string in a call's JSON that holds content: raw is the token doc[a:b]
// (quotes included) and text the string it encodes.
type field struct {
	a, b int
	raw  string
	text string
	// whole is set when the payload was not JSON and the field is all of it.
	whole bool

	spans []span    // when text is free text
	plan  *jsonPlan // when text is itself a JSON document
}

// RedactCall redacts one recorded call: the request as the client sent it and the
// response as one chat.completion or an OpenAI error body. It redacts the content of
// every message (strings and text parts; system prompts and tool results included),
// the names of participants, the request's user and metadata values (but the workload
// tag), refusals, and tool-call arguments (a JSON string that
// holds JSON: its string values are redacted and it stays valid JSON), in the request's
// messages and in the response's choices, and an error's message. Keys, roles, ids,
// model and tool names, tools and every other field are left as they are, byte for
// byte. Placeholders are numbered across the request and the response.
//
// When nothing is found, the inputs are returned as they are. A payload that is not
// JSON is redacted as text and err wraps ErrNotJSON.
func (r *Redactor) RedactCall(request, response []byte) (req2, resp2 []byte, sum Summary, err error) {
	st := &State{}
	req2, resp2, err = r.redactCall(request, response, st)
	return req2, resp2, st.Summary(), err
}

// RedactCallWithSecond is RedactCall for a call that also holds a second answer's body
// (store.SecondAnswer.Response: another model's chat.completion for the same request).
// The three payloads are redacted together, as one call: a value found in any of them
// is replaced in all three by the same placeholder, and sum counts all three. An empty
// second is returned as it is; with it, the result is RedactCall's.
func (r *Redactor) RedactCallWithSecond(request, response, second []byte) (req2, resp2, second2 []byte, sum Summary, err error) {
	st := &State{}
	out, err := r.redactPayloads([]payload{{request, requestPayload}, {response, responsePayload}, {second, secondPayload}}, st)
	return out[0], out[1], out[2], st.Summary(), err
}

func (r *Redactor) redactCall(request, response []byte, st *State) (req2, resp2 []byte, err error) {
	out, err := r.redactPayloads([]payload{{request, requestPayload}, {response, responsePayload}}, st)
	return out[0], out[1], err
}

// payloadKind says which fields of a payload hold content, and names it in errors.
type payloadKind string

const (
	requestPayload  payloadKind = "request"
	responsePayload payloadKind = "response"
	secondPayload   payloadKind = "second response" // read as a response
)

// payload is one JSON document of a call.
type payload struct {
	raw  []byte
	kind payloadKind
}

// redactPayloads redacts the payloads of one call under st and returns them in the
// same order, each as it was when nothing in it changed.
func (r *Redactor) redactPayloads(in []payload, st *State) (out [][]byte, err error) {
	docs := make([]string, len(in))
	fields := make([][]field, len(in))
	var errs []error
	for d, p := range in {
		if len(strings.TrimSpace(string(p.raw))) == 0 {
			continue
		}
		docs[d] = string(p.raw)
		switch {
		case !gjson.Valid(docs[d]):
			fields[d] = []field{{a: 0, b: len(p.raw), raw: docs[d], whole: true}}
			errs = append(errs, fmt.Errorf("%w: %s", ErrNotJSON, p.kind))
		case p.kind == requestPayload:
			fields[d] = requestFields(docs[d])
		default:
			fields[d] = responseFields(docs[d])
		}
	}
	// Find first, everywhere, so that a value found in one field (a phone number after
	// "call me at") is replaced in every other field too.
	var values []typedValue
	for d := range fields {
		for i := range fields[d] {
			f := &fields[d][i]
			r.planField(f)
			f.raw = ""
			values = f.values(values)
		}
	}
	err = errors.Join(errs...)
	out = make([][]byte, len(in))
	for d, p := range in {
		out[d] = p.raw
	}
	if len(values) == 0 {
		return out, err
	}
	for d := range fields {
		var buf []byte
		last := 0
		changed := false
		for i := range fields[d] {
			f := &fields[d][i]
			text, ok := r.applyField(f, values, st)
			if !ok {
				continue
			}
			if !changed {
				buf = make([]byte, 0, len(docs[d])+len(docs[d])/16)
				changed = true
			}
			buf = append(buf, docs[d][last:f.a]...)
			if f.whole {
				buf = append(buf, text...)
			} else {
				buf = appendQuoted(buf, text)
			}
			last = f.b
		}
		if changed {
			out[d] = append(buf, docs[d][last:]...)
		}
	}
	return out, err
}

// planField finds what to replace in a field, as free text or, when the text is a JSON
// object or array (tool results, tool-call arguments), value by value. Plans are cached
// by the field's JSON token, so a repeated system prompt or turn is neither decoded nor
// scanned again.
func (r *Redactor) planField(f *field) {
	if e, ok := r.cache.lookup(cacheField, f.raw); ok {
		f.text, f.spans, f.plan = e.text, e.spans, e.plan
		return
	}
	f.text = f.raw
	if !f.whole {
		f.text = unquote(f.raw)
	}
	t := strings.TrimSpace(f.text)
	if len(t) >= 2 && (t[0] == '{' || t[0] == '[') && gjson.Valid(f.text) {
		f.plan = r.planJSON(f.text)
	} else {
		f.spans = r.scanText(f.text)
	}
	if r.cache != nil && len(f.raw) >= cacheMin {
		// A copy, so that the cache does not keep the whole payload alive; text was
		// either cut from the payload (no escapes) or decoded into a string of its own.
		raw := strings.Clone(f.raw)
		switch {
		case f.whole:
			f.text = raw
		case strings.IndexByte(f.raw, '\\') < 0:
			f.text = raw[1 : len(raw)-1]
		}
		text := f.text
		r.cache.add(cacheField, raw, cacheEntry{text: text, spans: f.spans, plan: f.plan})
	}
}

// values appends the values found in the field.
func (f *field) values(out []typedValue) []typedValue {
	for _, sp := range f.spans {
		out = append(out, typedValue{sp.typ, f.text[sp.start:sp.end]})
	}
	if f.plan != nil {
		for _, e := range f.plan.edits {
			for _, sp := range e.spans {
				out = append(out, typedValue{sp.typ, e.value[sp.start:sp.end]})
			}
		}
	}
	return out
}

// applyField returns the field's redacted text, or false when nothing changed.
func (r *Redactor) applyField(f *field, values []typedValue, st *State) (string, bool) {
	if f.plan != nil {
		return r.applyPlan(f.text, f.plan, values, st)
	}
	spans := sweep(f.text, f.spans, placeholders(f.text), values)
	if len(spans) == 0 {
		return "", false
	}
	return r.apply(f.text, spans, st), true
}

// requestFields returns the content-bearing strings of a chat-completion request.
func requestFields(doc string) []field {
	var out []field
	p := &jr{s: doc}
	p.object(func(key string) {
		switch key {
		case "messages":
			p.array(func() { out = messageFields(p, out) })
		case "user":
			// OpenAI's end-user identifier: often an e-mail address or a name.
			out = stringField(p, out)
		case "metadata":
			// Free-form strings the client attaches; the workload tag stays as it is,
			// since it names what the call is for and is stored beside it anyway.
			p.object(func(key string) {
				if key == "workload" {
					p.skipValue()
					return
				}
				out = stringField(p, out)
			})
		default:
			p.skipValue()
		}
	})
	return out
}

// responseFields returns the content-bearing strings of a chat.completion (or chunk)
// or an error body.
func responseFields(doc string) []field {
	var out []field
	p := &jr{s: doc}
	p.object(func(key string) {
		switch key {
		case "choices":
			p.array(func() {
				p.object(func(key string) {
					if key == "message" || key == "delta" {
						out = messageFields(p, out)
						return
					}
					p.skipValue()
				})
			})
		case "error":
			p.object(func(key string) {
				if key == "message" {
					out = stringField(p, out)
					return
				}
				p.skipValue()
			})
		default:
			p.skipValue()
		}
	})
	return out
}

// stringField appends the string at p.i as a field (and skips any other value).
func stringField(p *jr, out []field) []field {
	if p.peek() != '"' {
		p.skipValue()
		return out
	}
	a, b := p.str()
	return append(out, field{a: a, b: b, raw: p.s[a:b]})
}

// messageFields appends the fields of the message object at p.i.
func messageFields(p *jr, out []field) []field {
	var role string
	var name []field
	p.object(func(key string) {
		switch key {
		case "role":
			if p.peek() == '"' {
				a, b := p.str()
				role = unquote(p.s[a:b])
			} else {
				p.skipValue()
			}
		case "content":
			switch p.peek() {
			case '"':
				out = stringField(p, out)
			case '[':
				p.array(func() {
					p.object(func(key string) {
						if key == "text" || key == "refusal" {
							out = stringField(p, out)
							return
						}
						p.skipValue()
					})
				})
			default:
				p.skipValue()
			}
		case "refusal":
			out = stringField(p, out)
		case "name":
			name = stringField(p, name)
		case "tool_calls":
			p.array(func() {
				p.object(func(key string) {
					if key == "function" {
						out = argumentsField(p, out)
						return
					}
					p.skipValue()
				})
			})
		case "function_call":
			out = argumentsField(p, out)
		default:
			p.skipValue()
		}
	})
	// The name of a tool message is the tool's; a user's or an assistant's may be a
	// person's.
	if role != "tool" && role != "function" {
		out = mergeByPosition(out, name)
	}
	return out
}

func argumentsField(p *jr, out []field) []field {
	p.object(func(key string) {
		if key == "arguments" {
			out = stringField(p, out)
			return
		}
		p.skipValue()
	})
	return out
}

// mergeByPosition inserts extra into out keeping document order (extra holds at most
// the one name of a message, which may come before its content).
func mergeByPosition(out, extra []field) []field {
	for _, f := range extra {
		i := len(out)
		for i > 0 && out[i-1].a > f.a {
			i--
		}
		out = append(out, field{})
		copy(out[i+1:], out[i:])
		out[i] = f
	}
	return out
}
