package openai

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Event is one server-sent event.
type Event struct {
	// Name is the event type from an "event:" field; empty means "message".
	Name string
	// Data is the event's data: its "data:" lines joined by "\n". It is the
	// caller's to keep.
	Data []byte
	// ID is the last event ID seen in the stream so far, as the SSE specification
	// defines it: it carries over to later events until an "id:" field changes it.
	ID string
}

// SSEReader reads server-sent events as the WHATWG HTML specification
// ("Interpreting an event stream") parses them: lines end in CRLF, LF or CR; a
// leading byte-order mark is skipped; lines starting with ':' are comments; one
// space after the field's colon is dropped; "data:" lines join with "\n"; a blank
// line dispatches the event; an event with no data is not dispatched; "retry:" and
// unknown fields are ignored. Lines may be of any length.
type SSEReader struct {
	r       *bufio.Reader
	line    []byte
	data    []byte
	hasData bool
	name    string
	lastID  string
	started bool
	skipLF  bool // the previous line ended in CR, so a leading LF is that line's
	err     error
}

// NewSSEReader returns a reader of the events in r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 32<<10)}
}

// Next returns the next event. At the end of the stream it returns io.EOF when the
// stream ended cleanly, and io.ErrUnexpectedEOF when it ended inside an event (data
// received but no blank line after it, or a last line with no line end); as the
// specification says, that incomplete event is discarded, never returned. Any other
// error is the underlying reader's. After an error, Next returns it again.
func (s *SSEReader) Next() (Event, error) {
	if s.err != nil {
		return Event{}, s.err
	}
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && (s.hasData || len(line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			s.err = err
			s.data, s.hasData, s.name = nil, false, ""
			return Event{}, err
		}
		if len(line) == 0 {
			if !s.hasData {
				s.name = ""
				continue
			}
			data := s.data
			if len(data) > 0 && data[len(data)-1] == '\n' {
				data = data[:len(data)-1]
			}
			ev := Event{Name: s.name, Data: data, ID: s.lastID}
			s.data, s.hasData, s.name = nil, false, ""
			return ev, nil
		}
		s.field(line)
	}
}

// field applies one non-blank line to the event being built.
func (s *SSEReader) field(line []byte) {
	if line[0] == ':' {
		return
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		s.data = append(s.data, value...)
		s.data = append(s.data, '\n')
		s.hasData = true
	case "event":
		s.name = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			s.lastID = string(value)
		}
	}
}

// readLine returns the next line without its line end; the slice is valid until
// the next call. At the end of the stream it returns io.EOF with whatever partial
// line was left.
func (s *SSEReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	if !s.started {
		s.started = true
		if b, err := s.r.Peek(3); err == nil && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
			s.r.Discard(3)
		}
	}
	for {
		n := s.r.Buffered()
		if n == 0 {
			if _, err := s.r.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.EOF
				}
				return s.line, err
			}
			n = s.r.Buffered()
		}
		buf, _ := s.r.Peek(n)
		if s.skipLF {
			s.skipLF = false
			if buf[0] == '\n' {
				s.r.Discard(1)
				continue
			}
		}
		end := bytes.IndexByte(buf, '\n')
		limit := buf
		if end >= 0 {
			limit = buf[:end]
		}
		if cr := bytes.IndexByte(limit, '\r'); cr >= 0 {
			end = cr
			s.skipLF = true
		}
		if end < 0 {
			s.line = append(s.line, buf...)
			s.r.Discard(len(buf))
			continue
		}
		s.line = append(s.line, buf[:end]...)
		s.r.Discard(end + 1)
		return s.line, nil
	}
}

// ErrNewlineInData is returned by WriteEvent for data that holds a line end, which
// would split the event.
var ErrNewlineInData = errors.New("openai: SSE data holds a line end")

// WriteEvent writes one event, "data: <data>\n\n", in a single Write. data must be
// one line (JSON chunks are). The caller flushes.
func WriteEvent(w io.Writer, data []byte) error {
	if bytes.IndexByte(data, '\n') >= 0 || bytes.IndexByte(data, '\r') >= 0 {
		return ErrNewlineInData
	}
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	_, err := w.Write(buf)
	return err
}

// WriteDone writes the "data: [DONE]" event that ends an OpenAI stream.
func WriteDone(w io.Writer) error {
	_, err := io.WriteString(w, "data: [DONE]\n\n")
	return err
}

// IsDone reports whether e is the "[DONE]" event that ends an OpenAI stream.
func IsDone(e Event) bool {
	return string(bytes.TrimSpace(e.Data)) == "[DONE]"
}

// EventBuffered reports whether a whole next event has already been read from the
// underlying reader, so that Next will return it without waiting. A relay uses it to
// flush once per burst instead of once per event.
func (s *SSEReader) EventBuffered() bool {
	n := s.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.r.Peek(n)
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\r\r"))
}
