package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// UnmarshalJSON decodes content from a JSON string, null, or an array of parts.
func (c *Content) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	*c = Content{}
	if len(data) == 0 {
		return errors.New("openai: empty content")
	}
	switch data[0] {
	case 'n':
		if !bytes.Equal(data, []byte("null")) {
			return fmt.Errorf("openai: invalid content %.20q", data)
		}
		c.IsNull = true
		return nil
	case '"':
		return json.Unmarshal(data, &c.Text)
	case '[':
		var parts []ContentPart
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		if parts == nil {
			parts = []ContentPart{}
		}
		c.Parts, c.IsParts = parts, true
		return nil
	}
	return fmt.Errorf("openai: content must be a string, an array of parts or null, not %s", jsonKind(data))
}

// MarshalJSON encodes content in the form it was decoded from: null, a string, or an
// array of parts.
func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.IsNull:
		return []byte("null"), nil
	case c.IsParts:
		if c.Parts == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(c.Parts)
	}
	return marshalNoEscape(c.Text)
}

// textPart is the shape of a plain text part, the one part kind decoded into fields.
type textPart struct {
	Type *string `json:"type"`
	Text *string `json:"text"`
}

// UnmarshalJSON decodes one content part. A part that holds anything other than
// "type" and "text" keeps its whole object in Other.
func (p *ContentPart) UnmarshalJSON(data []byte) error {
	*p = ContentPart{}
	if !json.Valid(data) {
		return errors.New("openai: content part is not valid JSON")
	}
	if err := decodePart(bytes.TrimSpace(data), "content part", p); err != nil {
		return fmt.Errorf("openai: %w", err)
	}
	return nil
}

// isPlainText reports whether a part is a text part with no other fields, the one
// kind of part decoded wholly into ContentPart's fields.
func isPlainText(typ string, fields []member) bool {
	if typ != "text" {
		return false
	}
	for _, f := range fields {
		if f.key != "type" && f.key != "text" {
			return false
		}
	}
	return true
}

// MarshalJSON encodes a part. A part decoded with Other is written back verbatim
// unless its Type or Text were changed since, in which case the changed fields are
// written over the kept ones.
func (p ContentPart) MarshalJSON() ([]byte, error) {
	if len(p.Other) == 0 {
		tp := textPart{Type: &p.Type}
		if p.Type == "text" || p.Text != "" {
			tp.Text = &p.Text
		}
		return marshalNoEscape(tp)
	}
	if p.Type == p.origType && p.Text == p.origText && json.Valid(p.Other) {
		return p.Other, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(p.Other, &fields); err != nil {
		return nil, fmt.Errorf("openai: content part Other: %w", err)
	}
	if fields == nil {
		return nil, errors.New("openai: content part Other is not an object")
	}
	t, err := marshalNoEscape(p.Type)
	if err != nil {
		return nil, err
	}
	fields["type"] = t
	if p.Type == "text" {
		s, err := marshalNoEscape(p.Text)
		if err != nil {
			return nil, err
		}
		fields["text"] = s
	}
	return json.Marshal(fields)
}

// marshalNoEscape encodes v without escaping <, > and &, as OpenAI itself writes JSON.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// jsonKind names the kind of a JSON value the way OpenAI's error messages do.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(raw, ".eE") {
		return "a decimal"
	}
	return "an integer"
}

// UnmarshalJSON decodes a message; absent content decodes as null content, so that
// an assistant message with only tool calls re-encodes with "content": null.
func (m *Message) UnmarshalJSON(data []byte) error {
	type plain Message
	v := plain{Content: Content{IsNull: true}}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*m = Message(v)
	return nil
}
