package openai

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// decodeChunk decodes a stream chunk. Chunks are small and many (one per token or
// two), and encoding/json's reflection cost ~4µs each, more than the rest of the relay;
// decodeChunkFast reads the fields a chunk has in one pass of jsonScanner, and hands
// anything unusual (an error event, a key in another case, an escaped key, a number
// that is not a plain integer) to encoding/json, whose result is the reference:
// FuzzChunkDecode holds the two to the same output.
func decodeChunk(data []byte, c *ChatCompletionChunk) error {
	if decodeChunkFast(data, c) {
		return nil
	}
	*c = ChatCompletionChunk{}
	return json.Unmarshal(data, c)
}

func decodeChunkFast(data []byte, c *ChatCompletionChunk) bool {
	s := &jsonScanner{b: data}
	if s.peek() != '{' {
		return false
	}
	s.object(func(ks, ke int) {
		switch {
		case s.keyEscaped:
			s.fail()
		case s.key(ks, ke, "id"):
			s.nullableString(&c.ID)
		case s.key(ks, ke, "object"):
			s.nullableString(&c.Object)
		case s.key(ks, ke, "model"):
			s.nullableString(&c.Model)
		case s.key(ks, ke, "system_fingerprint"):
			s.nullableString(&c.SystemFingerprint)
		case s.key(ks, ke, "service_tier"):
			s.nullableString(&c.ServiceTier)
		case s.key(ks, ke, "created"):
			s.intValue64(&c.Created)
		case s.key(ks, ke, "simulated"):
			s.nullableBool(&c.Simulated)
		case s.key(ks, ke, "choices"):
			if s.peek() == 'n' {
				s.value()
				c.Choices = nil
				return
			}
			c.Choices = make([]ChunkChoice, 0, 1) // [] decodes to empty, not nil
			s.arrayOrNull(func() {
				c.Choices = append(c.Choices, ChunkChoice{})
				s.chunkChoice(&c.Choices[len(c.Choices)-1])
			})
		case s.key(ks, ke, "usage"):
			vs, ve, kind := s.value()
			switch kind {
			case 'n':
				c.Usage = nil
			case '{':
				c.Usage = &Usage{}
				if json.Unmarshal(s.b[vs:ve], c.Usage) != nil {
					s.fail()
				}
			default:
				s.fail()
			}
		default:
			s.unknownKey(ks, ke, "id", "object", "model", "system_fingerprint", "service_tier", "created",
				"simulated", "choices", "usage", "error")
		}
	})
	return !s.bad && s.atEnd()
}

func (s *jsonScanner) chunkChoice(ch *ChunkChoice) {
	s.objectOnly(func(ks, ke int) {
		switch {
		case s.keyEscaped:
			s.fail()
		case s.key(ks, ke, "index"):
			s.intValue(&ch.Index)
		case s.key(ks, ke, "finish_reason"):
			s.stringPtr(&ch.FinishReason)
		case s.key(ks, ke, "logprobs"):
			vs, ve, _ := s.value()
			ch.Logprobs = bytes.Clone(s.b[vs:ve])
		case s.key(ks, ke, "delta"):
			if s.peek() == 'n' {
				s.value() // null leaves the zero Delta, as encoding/json does
				return
			}
			s.objectOnly(func(ks, ke int) { s.delta(ks, ke, &ch.Delta) })
		default:
			s.unknownKey(ks, ke, "index", "finish_reason", "logprobs", "delta")
		}
	})
}

func (s *jsonScanner) delta(ks, ke int, d *Delta) {
	switch {
	case s.keyEscaped:
		s.fail()
	case s.key(ks, ke, "role"):
		s.nullableString(&d.Role)
	case s.key(ks, ke, "content"):
		s.stringPtr(&d.Content)
	case s.key(ks, ke, "refusal"):
		s.stringPtr(&d.Refusal)
	case s.key(ks, ke, "tool_calls"):
		if s.peek() == 'n' {
			s.value()
			d.ToolCalls = nil
			return
		}
		d.ToolCalls = make([]ToolCallDelta, 0, 1)
		s.arrayOrNull(func() {
			d.ToolCalls = append(d.ToolCalls, ToolCallDelta{})
			tc := &d.ToolCalls[len(d.ToolCalls)-1]
			s.objectOnly(func(ks, ke int) {
				switch {
				case s.keyEscaped:
					s.fail()
				case s.key(ks, ke, "index"):
					s.intValue(&tc.Index)
				case s.key(ks, ke, "id"):
					s.nullableString(&tc.ID)
				case s.key(ks, ke, "type"):
					s.nullableString(&tc.Type)
				case s.key(ks, ke, "function"):
					if s.peek() == 'n' {
						s.value()
						return
					}
					s.objectOnly(func(ks, ke int) {
						switch {
						case s.keyEscaped:
							s.fail()
						case s.key(ks, ke, "name"):
							s.nullableString(&tc.Function.Name)
						case s.key(ks, ke, "arguments"):
							s.nullableString(&tc.Function.Arguments)
						default:
							s.unknownKey(ks, ke, "name", "arguments")
						}
					})
				default:
					s.unknownKey(ks, ke, "index", "id", "type", "function")
				}
			})
		})
	default:
		s.unknownKey(ks, ke, "role", "content", "refusal", "tool_calls")
	}
}

// unknownKey skips the value of a key the fast path does not read. A key that names a
// field only when case is ignored (which encoding/json would fill) fails the scan.
func (s *jsonScanner) unknownKey(ks, ke int, known ...string) {
	key := string(s.b[ks:ke])
	for _, k := range known {
		if strings.EqualFold(key, k) {
			s.fail()
			return
		}
	}
	s.value()
}

// nullableString reads a string into dst; null leaves dst as it is (encoding/json).
func (s *jsonScanner) nullableString(dst *string) {
	if s.peek() == 'n' {
		s.value()
		return
	}
	s.stringValue(dst)
}

// stringPtr reads a string into a new *string; null sets nil.
func (s *jsonScanner) stringPtr(dst **string) {
	if s.peek() == 'n' {
		s.value()
		*dst = nil
		return
	}
	var v string
	s.stringValue(&v)
	*dst = &v
}

// nullableBool reads true or false; null leaves dst as it is.
func (s *jsonScanner) nullableBool(dst *bool) {
	switch _, _, kind := s.value(); kind {
	case 't':
		*dst = true
	case 'f':
		*dst = false
	case 'n':
	default:
		s.fail()
	}
}

// intValue64 reads a plain integer (no fraction or exponent); null leaves dst as it
// is; anything else fails the scan.
func (s *jsonScanner) intValue64(dst *int64) {
	vs, ve, kind := s.value()
	if kind == 'n' {
		return
	}
	n, err := strconv.ParseInt(string(s.b[vs:ve]), 10, 64)
	if err != nil {
		s.fail()
		return
	}
	*dst = n
}

func (s *jsonScanner) intValue(dst *int) {
	var n int64
	s.intValue64(&n)
	if !s.bad {
		*dst = int(n)
	}
}
