package openai

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads every event of s and the error that ended the stream.
func readAll(r io.Reader) ([]Event, error) {
	sr := NewSSEReader(r)
	var evs []Event
	for {
		ev, err := sr.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
		end  error
	}{
		{"one event", "data: {\"a\":1}\n\n", []Event{{Data: []byte(`{"a":1}`)}}, io.EOF},
		{"no space after colon", "data:x\n\n", []Event{{Data: []byte("x")}}, io.EOF},
		{"only one space dropped", "data:  x \n\n", []Event{{Data: []byte(" x ")}}, io.EOF},
		{"multi-line data joined", "data: a\ndata: b\ndata:\n\n", []Event{{Data: []byte("a\nb\n")}}, io.EOF},
		{"comments skipped", ": keep-alive\ndata: a\n: more\n\n:\n\n", []Event{{Data: []byte("a")}}, io.EOF},
		{"event name and id", "event: error\nid: 7\ndata: x\n\ndata: y\n\n",
			[]Event{{Name: "error", ID: "7", Data: []byte("x")}, {ID: "7", Data: []byte("y")}}, io.EOF},
		{"empty id resets", "id: 7\ndata: x\n\nid\ndata: y\n\n",
			[]Event{{ID: "7", Data: []byte("x")}, {Data: []byte("y")}}, io.EOF},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []Event{{Data: []byte("x")}}, io.EOF},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []Event{{Data: []byte("a")}, {Data: []byte("b")}}, io.EOF},
		{"CR", "data: a\r\rdata: b\rdata: c\r\r", []Event{{Data: []byte("a")}, {Data: []byte("b\nc")}}, io.EOF},
		{"mixed line ends", "data: a\r\ndata: b\ndata: c\r\n\n", []Event{{Data: []byte("a\nb\nc")}}, io.EOF},
		{"field without colon", "data\n\n", []Event{{Data: []byte("")}}, io.EOF},
		{"no data, no event", "event: x\n\nretry: 10\nfoo: bar\n\n", nil, io.EOF},
		{"event name does not leak", "event: x\n\ndata: y\n\n", []Event{{Data: []byte("y")}}, io.EOF},
		{"BOM skipped", "\xEF\xBB\xBFdata: a\n\n", []Event{{Data: []byte("a")}}, io.EOF},
		{"colon in value kept", "data: {\"a\":\"b:c\"}\n\n", []Event{{Data: []byte(`{"a":"b:c"}`)}}, io.EOF},
		{"empty stream", "", nil, io.EOF},
		{"incomplete event discarded", "data: a\n\ndata: b\n", []Event{{Data: []byte("a")}}, io.ErrUnexpectedEOF},
		{"unterminated last line", "data: a\n\ndata: b", []Event{{Data: []byte("a")}}, io.ErrUnexpectedEOF},
		{"done", "data: [DONE]\n\n", []Event{{Data: []byte("[DONE]")}}, io.EOF},
	}
	readers := map[string]func(string) io.Reader{
		"whole":        func(s string) io.Reader { return strings.NewReader(s) },
		"byte by byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				evs, err := readAll(mk(tt.in))
				if !errors.Is(err, tt.end) {
					t.Errorf("ended with %v, want %v", err, tt.end)
				}
				if len(evs) != len(tt.want) {
					t.Fatalf("got %d events %q, want %d", len(evs), evs, len(tt.want))
				}
				for i := range evs {
					g, w := evs[i], tt.want[i]
					if g.Name != w.Name || g.ID != w.ID || !bytes.Equal(g.Data, w.Data) {
						t.Errorf("event %d = {%q %q %q}, want {%q %q %q}", i, g.Name, g.Data, g.ID, w.Name, w.Data, w.ID)
					}
				}
			})
		}
	}
}

func TestSSEReaderLongLines(t *testing.T) {
	big := strings.Repeat(`{\"arguments\":\"x\"}`, 300_000) // ~5.7 MB, far past bufio.Scanner's 64 KiB
	evs, err := readAll(strings.NewReader("data: " + big + "\r\n\r\ndata: after\n\n"))
	if err != io.EOF {
		t.Fatal(err)
	}
	if len(evs) != 2 || string(evs[0].Data) != big || string(evs[1].Data) != "after" {
		t.Fatalf("got %d events", len(evs))
	}
}

func TestSSEReaderEventDataIsTheCallersToKeep(t *testing.T) {
	sr := NewSSEReader(strings.NewReader("data: first\n\ndata: second\n\n"))
	a, _ := sr.Next()
	b, _ := sr.Next()
	if string(a.Data) != "first" || string(b.Data) != "second" {
		t.Errorf("got %q %q", a.Data, b.Data)
	}
}

func TestSSEReaderReturnsReadErrorsAndKeepsThem(t *testing.T) {
	boom := errors.New("boom")
	sr := NewSSEReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom)))
	if ev, err := sr.Next(); err != nil || string(ev.Data) != "a" {
		t.Fatalf("first: %q %v", ev.Data, err)
	}
	for range 2 {
		if _, err := sr.Next(); !errors.Is(err, boom) {
			t.Fatalf("got %v, want boom", err)
		}
	}
}

func TestWriteEvent(t *testing.T) {
	var b bytes.Buffer
	if err := WriteEvent(&b, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := WriteDone(&b); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "data: {\"a\":1}\n\ndata: [DONE]\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	evs, err := readAll(&b)
	if err != io.EOF || len(evs) != 2 || string(evs[0].Data) != `{"a":1}` || !IsDone(evs[1]) || IsDone(evs[0]) {
		t.Errorf("read back %q, %v", evs, err)
	}
	for _, bad := range []string{"a\nb", "a\rb"} {
		if err := WriteEvent(&b, []byte(bad)); !errors.Is(err, ErrNewlineInData) {
			t.Errorf("WriteEvent(%q) = %v, want ErrNewlineInData", bad, err)
		}
	}
}

func TestWriteEventUsesOneWrite(t *testing.T) {
	w := &countingWriter{}
	if err := WriteEvent(w, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if w.n != 1 {
		t.Errorf("%d writes, want 1", w.n)
	}
}

type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n++; return len(p), nil }
