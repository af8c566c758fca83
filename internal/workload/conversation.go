package workload

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// Conversation is what the request-side featuriser reads from a chat-completion
// request: what the call asks (the last user or tool message) and where in the
// conversation it stands. ReadConversation fills it from the raw body without decoding
// the whole request.
type Conversation struct {
	Messages  int // messages in the request
	UserTurns int // user messages
	// Steps counts the assistant messages since the last user message: 0 when the
	// agent answers the user afresh, 1 after its first tool call, and so on.
	Steps int
	// LastRole is the role of the last message.
	LastRole string
	// LastText is the text of the last user or tool message (of the last message when
	// there is neither), cut to MaxTextBytes.
	LastText string
	// LastTool is the name of the tool whose result is the last message: the tool
	// message's name, or else the name of the assistant's tool call it answers.
	LastTool string
}

// MaxTextBytes is the most bytes of the last message that ReadConversation keeps: what a
// call asks shows in its first kilobytes, and the featuriser's cost grows with the text.
const MaxTextBytes = 2048

// ErrNotChatRequest is returned by ReadConversation for a body that is not a JSON
// object with a messages array.
var ErrNotChatRequest = errors.New("workload: not a chat-completion request")

// ReadConversation reads a Conversation from a chat-completion request body. It is a
// lenient single pass for bodies the gateway has already validated: it skips strings
// with bytes.IndexByte, so a 20 KB tau-bench request takes a few microseconds, and it
// unescapes only the last message's text; it stops at the end of the messages array.
// Malformed JSON before that point gives ErrNotChatRequest.
func ReadConversation(body []byte) (Conversation, error) {
	var c Conversation
	s := jscan{b: body}
	if s.peek() != '{' {
		return c, ErrNotChatRequest
	}
	sawMessages := false
	// Spans of the chosen message and of the last assistant message with tool calls.
	var textMsg, lastRoleMsg, callsMsg msgSpan
	s.object(func(key []byte) {
		switch string(key) {
		case "messages":
			if s.peek() != '[' {
				s.fail()
				return
			}
			sawMessages = true
			s.array(func() {
				m := s.message()
				c.Messages++
				lastRoleMsg = m
				switch m.role {
				case "user":
					c.UserTurns++
					c.Steps = 0
					textMsg = m
				case "tool", "function":
					textMsg = m
				case "assistant":
					c.Steps++
					if m.calls.start >= 0 {
						callsMsg = m
					}
				}
			})
			// Nothing after the messages is needed: stop, sparing the scan of the tools
			// that usually follow them.
			s.done = true
		default:
			s.skip()
		}
	})
	if s.bad || !sawMessages {
		return Conversation{}, ErrNotChatRequest
	}
	c.LastRole = lastRoleMsg.role
	if textMsg.role == "" {
		textMsg = lastRoleMsg
	}
	c.LastText = s.content(textMsg.content)
	if textMsg.role == "tool" || textMsg.role == "function" {
		c.LastTool = textMsg.name
		if c.LastTool == "" && textMsg.callID != "" && callsMsg.calls.start >= 0 {
			c.LastTool = s.toolCallName(callsMsg.calls, textMsg.callID)
		}
	}
	return c, nil
}

type span struct{ start, end int }

// msgSpan is one message as ReadConversation saw it: short fields decoded, the content
// and the tool calls as byte spans to be read only when needed.
type msgSpan struct {
	role, name, callID string
	content            span
	calls              span
}

// jscan is a lenient JSON reader over a byte slice. It trusts that the body is valid
// (the gateway validated it) and checks only enough to never read out of bounds or
// loop: any surprise sets bad. It is kept apart from openai's validating scanner
// (openai/jsonscan.go), which checks every byte of untrusted client input: skipping
// without validating is what keeps Assign within its budget.
type jscan struct {
	b    []byte
	i    int
	bad  bool
	done bool // the reader has what it wants: object returns after the current member
}

func (s *jscan) fail() { s.bad, s.i = true, len(s.b) }

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jscan) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// str reads a string and returns the span of its raw contents (without quotes) and
// whether it holds escapes.
func (s *jscan) str() (span, bool) {
	if s.peek() != '"' {
		s.fail()
		return span{}, false
	}
	start := s.i + 1
	esc := false
	j := start
	for {
		k := bytes.IndexByte(s.b[j:], '"')
		if k < 0 {
			s.fail()
			return span{}, false
		}
		j += k
		// A quote preceded by an odd number of backslashes is escaped.
		n := 0
		for p := j - 1; p >= start && s.b[p] == '\\'; p-- {
			n++
		}
		if n > 0 {
			esc = true
		}
		if n%2 == 0 {
			break
		}
		j++
	}
	if !esc {
		esc = bytes.IndexByte(s.b[start:j], '\\') >= 0
	}
	s.i = j + 1
	return span{start, j}, esc
}

// skipString passes over a string whose opening quote is at s.i, without looking for
// escapes inside it.
func (s *jscan) skipString() {
	j := s.i + 1
	for {
		// Most strings in a request (keys, types, names) are short: look at a few
		// bytes by hand before paying for a call to IndexByte.
		k, end := -1, min(j+16, len(s.b))
		for p := j; p < end; p++ {
			if s.b[p] == '"' {
				k = p
				break
			}
		}
		if k < 0 {
			k = bytes.IndexByte(s.b[end:], '"')
			if k < 0 {
				s.fail()
				return
			}
			k += end
		}
		j = k
		n := 0
		for p := j - 1; p > s.i && s.b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			s.i = j + 1
			return
		}
		j++
	}
}

// skip passes over one value of any kind.
func (s *jscan) skip() {
	switch s.peek() {
	case '"':
		s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		s.fail()
	case 0:
		s.fail()
	default: // number, true, false, null
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// object reads an object, calling member with each raw key; member must read the value.
func (s *jscan) object(member func(key []byte)) {
	if s.peek() != '{' {
		s.fail()
		return
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return
	}
	for !s.bad {
		k, _ := s.str()
		if s.peek() != ':' {
			s.fail()
			return
		}
		s.i++
		member(s.b[k.start:k.end])
		if s.done {
			return
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// array reads an array, calling elem for each element; elem must read it.
func (s *jscan) array(elem func()) {
	if s.peek() != '[' {
		s.fail()
		return
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return
	}
	for !s.bad {
		elem()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// message reads one message object.
func (s *jscan) message() msgSpan {
	m := msgSpan{content: span{-1, -1}, calls: span{-1, -1}}
	if s.peek() != '{' {
		s.skip()
		return m
	}
	s.object(func(key []byte) {
		switch string(key) {
		case "role":
			m.role = s.shortString()
		case "name":
			m.name = s.shortString()
		case "tool_call_id":
			m.callID = s.shortString()
		case "content":
			start := s.i
			s.skip()
			m.content = span{start, s.i}
		case "tool_calls":
			start := s.i
			s.skip()
			m.calls = span{start, s.i}
		default:
			s.skip()
		}
	})
	return m
}

// shortString reads a string value; anything else is skipped and gives "".
func (s *jscan) shortString() string {
	if s.peek() != '"' {
		s.skip()
		return ""
	}
	sp, esc := s.str()
	if s.bad {
		return ""
	}
	return unquote(s.b[sp.start:sp.end], esc, MaxTextBytes)
}

// content returns the text of a content value (a string, or the text parts of an
// array joined by newlines), cut to MaxTextBytes.
func (s *jscan) content(sp span) string {
	if sp.start < 0 {
		return ""
	}
	sub := jscan{b: s.b[:sp.end], i: sp.start}
	switch sub.peek() {
	case '"':
		r, esc := sub.str()
		if sub.bad {
			return ""
		}
		return unquote(s.b[r.start:r.end], esc, MaxTextBytes)
	case '[':
		var out []byte
		sub.array(func() {
			var typ, text string
			if sub.peek() != '{' {
				sub.skip()
				return
			}
			sub.object(func(key []byte) {
				switch string(key) {
				case "type":
					typ = sub.shortString()
				case "text":
					text = sub.shortString()
				default:
					sub.skip()
				}
			})
			if typ == "text" && len(out) < MaxTextBytes {
				if len(out) > 0 {
					out = append(out, '\n')
				}
				out = append(out, text...)
			}
		})
		return cut(string(out), MaxTextBytes)
	}
	return ""
}

// toolCallName finds the name of the tool call with the given id in a tool_calls array.
func (s *jscan) toolCallName(sp span, id string) string {
	sub := jscan{b: s.b[:sp.end], i: sp.start}
	found := ""
	sub.array(func() {
		var callID, name string
		if sub.peek() != '{' {
			sub.skip()
			return
		}
		sub.object(func(key []byte) {
			switch string(key) {
			case "id":
				callID = sub.shortString()
			case "function":
				if sub.peek() != '{' {
					sub.skip()
					return
				}
				sub.object(func(key []byte) {
					if string(key) == "name" {
						name = sub.shortString()
					} else {
						sub.skip()
					}
				})
			default:
				sub.skip()
			}
		})
		if callID == id && found == "" {
			found = name
		}
	})
	return found
}

// unquote decodes the raw contents of a JSON string, keeping at most max bytes. A bad
// escape is kept as written: the text only feeds features.
func unquote(raw []byte, esc bool, max int) string {
	if !esc {
		return cut(string(raw[:min(len(raw), max+utf8.UTFMax)]), max)
	}
	out := make([]byte, 0, min(len(raw), max+utf8.UTFMax))
	for i := 0; i < len(raw) && len(out) < max; i++ {
		c := raw[i]
		if c != '\\' || i+1 == len(raw) {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			if i+4 < len(raw) {
				r, ok := hex4(raw[i+1 : i+5])
				if ok {
					i += 4
					if utf8.ValidRune(r) && (r < 0xd800 || r > 0xdfff) {
						out = utf8.AppendRune(out, r)
						continue
					}
					// A surrogate pair.
					if r >= 0xd800 && r < 0xdc00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
						if lo, ok := hex4(raw[i+3 : i+7]); ok && lo >= 0xdc00 && lo <= 0xdfff {
							out = utf8.AppendRune(out, 0x10000+(r-0xd800)<<10+(lo-0xdc00))
							i += 6
							continue
						}
					}
					out = utf8.AppendRune(out, utf8.RuneError)
					continue
				}
			}
			out = append(out, '\\', 'u')
		default: // " \ / and anything unexpected
			out = append(out, raw[i])
		}
	}
	return cut(string(out), max)
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// cut shortens s to at most max bytes without splitting a UTF-8 sequence.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
