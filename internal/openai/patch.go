package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Merge is a PatchRequest value that merges its keys into the existing object value
// of the key it is set on, instead of replacing it: every field of the existing
// object it does not name keeps its bytes. An absent, null or non-object existing
// value is replaced by an object of Merge's keys. A nil value in Merge deletes that
// key.
type Merge map[string]any

// IncludeUsage is the stream_options patch that makes an upstream end a stream with
// a usage chunk, keeping any other stream_options the client sent:
//
//	PatchRequest(body, map[string]any{"stream_options": IncludeUsage()})
func IncludeUsage() Merge { return Merge{"include_usage": true} }

// ErrNotObject is returned by PatchRequest for a body that is not a JSON object.
var ErrNotObject = errors.New("openai: request body is not a JSON object")

// PatchRequest returns body with the top-level keys in set given new values: a nil
// value deletes the key, a json.RawMessage is written as it is, a Merge merges into
// the existing object, and anything else is encoded with encoding/json. Every other
// member keeps its key and value bytes exactly and its place; keys set anew are
// appended in sorted order. Whitespace between members is not kept. When a key
// appears more than once, the first is replaced and the rest are dropped. body is
// not modified.
func PatchRequest(body []byte, set map[string]any) ([]byte, error) {
	if !json.Valid(body) {
		return nil, ErrNotObject
	}
	members, ok := splitObject(body)
	if !ok {
		return nil, ErrNotObject
	}
	return patchMembers(members, len(body), set)
}

// member is one key/value pair of a JSON object, as slices of the original bytes.
type member struct {
	rawKey []byte // with its quotes, as written
	key    string // unescaped
	value  []byte
}

func patchMembers(members []member, sizeHint int, set map[string]any) ([]byte, error) {
	out := make([]byte, 0, sizeHint+64)
	out = append(out, '{')
	done := make(map[string]bool, len(set))
	first := true
	sep := func() {
		if !first {
			out = append(out, ',')
		}
		first = false
	}
	for _, m := range members {
		v, patched := set[m.key]
		if !patched {
			sep()
			out = append(out, m.rawKey...)
			out = append(out, ':')
			out = append(out, m.value...)
			continue
		}
		if done[m.key] {
			continue
		}
		done[m.key] = true
		enc, err := encodePatchValue(m.key, v, m.value)
		if err != nil {
			return nil, err
		}
		if enc == nil {
			continue
		}
		sep()
		out = append(out, m.rawKey...)
		out = append(out, ':')
		out = append(out, enc...)
	}
	var added []string
	for k := range set {
		if !done[k] {
			added = append(added, k)
		}
	}
	slices.Sort(added)
	for _, k := range added {
		enc, err := encodePatchValue(k, set[k], nil)
		if err != nil {
			return nil, err
		}
		if enc == nil {
			continue
		}
		sep()
		key, err := marshalNoEscape(k)
		if err != nil {
			return nil, err
		}
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, enc...)
	}
	return append(out, '}'), nil
}

// encodePatchValue encodes the new value of key; old is the existing value or nil.
// It returns nil bytes when the key is to be deleted.
func encodePatchValue(key string, v any, old []byte) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if v == nil {
			return nil, nil
		}
		if !json.Valid(v) {
			return nil, fmt.Errorf("openai: patch %q: invalid raw JSON", key)
		}
		return v, nil
	case Merge:
		var members []member
		if old != nil {
			members, _ = splitObject(old) // not an object: replaced whole
		}
		enc, err := patchMembers(members, len(old), map[string]any(v))
		if err != nil {
			return nil, fmt.Errorf("openai: patch %q: %w", key, err)
		}
		return enc, nil
	}
	enc, err := marshalNoEscape(v)
	if err != nil {
		return nil, fmt.Errorf("openai: patch %q: %w", key, err)
	}
	return enc, nil
}

// splitObject splits valid JSON into the members of its top-level object. It
// reports false when the value is not an object. It relies on the input being
// valid JSON, so it only has to track strings and nesting.
func splitObject(b []byte) ([]member, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	members := make([]member, 0, 16)
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case '}':
			return members, true
		case ',':
			i = skipSpace(b, i+1)
		}
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		keyEnd := skipString(b, i)
		rawKey := b[i:keyEnd]
		key, ok := unquoteKey(rawKey)
		if !ok {
			return nil, false
		}
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		end := skipValue(b, i)
		if end <= i {
			return nil, false
		}
		members = append(members, member{rawKey: rawKey, key: key, value: b[i:end]})
		i = end
	}
}

// splitArray splits valid JSON into the elements of its top-level array. It reports
// false when the value is not an array.
func splitArray(b []byte) ([][]byte, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i++
	var elems [][]byte
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ']':
			if elems == nil {
				elems = [][]byte{}
			}
			return elems, true
		case ',':
			i = skipSpace(b, i+1)
		}
		end := skipValue(b, i)
		if end <= i {
			return nil, false
		}
		elems = append(elems, b[i:end])
		i = end
	}
}

// unquoteKey unescapes a quoted key; keys without escapes cost one string copy.
func unquoteKey(raw []byte) (string, bool) {
	if len(raw) < 2 {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i] == '"'.
// A quote is the end unless an odd run of backslashes escapes it.
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
	return len(b)
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
