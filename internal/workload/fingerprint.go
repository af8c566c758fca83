package workload

import (
	"encoding/binary"
	"math/bits"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Fingerprint returns a 16-hex-digit name for the template a call was made from, so that
// calls from the same agent node share it while calls from different nodes do not.
//
// It hashes three things:
//   - the text of the first system or developer message, with whitespace runs collapsed
//     and volatile parts masked: every word that holds a digit (numbers, dates, times,
//     UUIDs, hex and other ids such as user_3668 or 8JX2KQ, versions, URLs with ids)
//     or an @ (e-mail addresses), and month, weekday, AM/PM and time-zone names;
//   - the names of the tools, sorted, so their order does not matter;
//   - the response_format type.
//
// A comma between digits joins them (1,200.00 is one word).
// So "The current time is 2024-05-15 15:00:00 EST." and "... 2024-06-01 09:30:00 EDT."
// give one fingerprint, while a different tool set, response format or prompt text gives
// another. Names and other variable words without digits are not masked (a prompt that
// embeds the user's name differs per user); clients that need a stable name for such a
// node should tag it. The fingerprint is stable across processes and releases: changing
// what is hashed would split every recorded workload, so such a change must be made as
// a new version (see fingerprintVersion). req may be nil.
func Fingerprint(req *openai.ChatRequest) string {
	h := newHasher()
	if req != nil {
		m := masker{h: &h}
		if msg := systemMessage(req.Messages); msg != nil {
			if msg.Content.IsParts {
				for _, p := range msg.Content.Parts {
					if p.Type == "text" {
						m.write(p.Text)
						m.space = true // parts are joined by a newline
					}
				}
			} else {
				m.write(msg.Content.Text)
			}
		}
		h.writeByte(separator)
		writeToolNames(&h, req.Tools)
		h.writeByte(separator)
		if req.ResponseFormat != nil {
			h.writeString(req.ResponseFormat.Type)
		}
	}
	var out [16]byte
	const digits = "0123456789abcdef"
	sum := h.sum()
	for i := 15; i >= 0; i-- {
		out[i] = digits[sum&0xf]
		sum >>= 4
	}
	return string(out[:])
}

// fingerprintVersion seeds the hash. Bump it whenever a change to masking or to what is
// hashed would change fingerprints, so old and new ones never collide by accident.
const fingerprintVersion = 1

// Bytes that never occur in valid UTF-8, so they cannot be confused with prompt text
// (encoding/json turns invalid UTF-8 in a request into U+FFFD).
const (
	placeholder = 0xff // stands for a masked word
	separator   = 0xfe // ends one part of the fingerprint and each tool name
)

func systemMessage(msgs []openai.Message) *openai.Message {
	for i := range msgs {
		if r := msgs[i].Role; r == "system" || r == "developer" {
			return &msgs[i]
		}
	}
	return nil
}

// writeToolNames hashes the tool names in sorted order. Sorting happens in a fixed array
// on the stack for the usual tool counts, so it does not allocate.
func writeToolNames(h *hasher, tools []openai.Tool) {
	var stack [64]string
	names := stack[:0]
	if len(tools) > len(stack) {
		names = make([]string, 0, len(tools))
	}
	for i := range tools {
		name := tools[i].Function.Name
		if name == "" {
			name = tools[i].Type
		}
		// Insertion sort: tool lists are short, and this keeps names on the stack.
		j := len(names)
		names = append(names, name)
		for ; j > 0 && names[j-1] > name; j-- {
			names[j] = names[j-1]
		}
		names[j] = name
	}
	for _, n := range names {
		h.writeString(n)
		h.writeByte(separator)
	}
}

// Byte classes for the masker.
const (
	other = iota
	space
	letter // ASCII letters, '_' and every byte of a multi-byte UTF-8 sequence
	digit
	joiner // joins two word characters into one word: 2024-05-15, 15:00, a@b.c, x/y, +1
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			t[c] = space
		case c >= '0' && c <= '9':
			t[c] = digit
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c >= 0x80:
			t[c] = letter
		case c == '-' || c == '.' || c == ':' || c == '@' || c == '/' || c == '+':
			t[c] = joiner
		}
	}
	return t
}()

// masker feeds text to a hasher with whitespace collapsed and volatile words masked.
// Most of a prompt passes through unchanged, so it hands the hasher whole spans of the
// input and only breaks a span where the output differs: at a masked word or at
// whitespace other than one plain space.
type masker struct {
	h       *hasher
	space   bool // whitespace seen since the last byte written
	written bool // something has been written (leading whitespace is dropped)
}

func (m *masker) write(s string) {
	lit := 0 // s[lit:i] is output not yet written, identical to the input
	for i := 0; i < len(s); {
		switch class[s[i]] {
		case space:
			j := i + 1
			for j < len(s) && class[s[j]] == space {
				j++
			}
			// One plain space inside a span, or right after written output with no
			// whitespace pending, is output as is.
			if j == i+1 && s[i] == ' ' && j < len(s) && (i > lit || (m.written && !m.space)) {
				i = j
				continue
			}
			m.flush(s[lit:i])
			m.space = true
			i, lit = j, j
		case letter, digit:
			// A word runs over word characters and over joiners that sit between two of
			// them; a joiner at its end (the full stop in "on 2024-05-15.") is not part of it.
			// key packs the word's first 8 bytes, lower-cased (c|0x20 lower-cases ASCII
			// letters and maps nothing else onto one), for the volatile word lookup.
			j, volatile, key := i, false, uint64(0)
		scan:
			for ; j < len(s); j++ {
				switch class[s[j]] {
				case letter:
				case digit:
					volatile = true
				case joiner:
					if j+1 == len(s) || (class[s[j+1]] != letter && class[s[j+1]] != digit) {
						break scan
					}
					if s[j] == '@' {
						volatile = true
					}
				default:
					// A comma between digits is a thousands separator: 1,200.00 is one word.
					if s[j] == ',' && j > i && class[s[j-1]] == digit && j+1 < len(s) && class[s[j+1]] == digit {
						continue
					}
					break scan
				}
				if j-i < 8 {
					key |= uint64(s[j]|0x20) << (8 * (j - i))
				}
			}
			if volatile || volatileWord(s[i:j], key) {
				if j-i == 3 && s[i+1] == '.' && j < len(s) && s[j] == '.' {
					j++ // the final dot of a.m. and p.m. belongs to the word
				}
				m.flush(s[lit:i])
				m.sep()
				m.h.writeByte(placeholder)
				lit = j
			}
			i = j
		default:
			i++
		}
	}
	m.flush(s[lit:])
}

// flush writes out a span of unchanged input.
func (m *masker) flush(span string) {
	if span != "" {
		m.sep()
		m.h.writeString(span)
	}
}

// sep writes the single space that stands for any whitespace before the next output.
func (m *masker) sep() {
	if m.space && m.written {
		m.h.writeByte(' ')
	}
	m.space, m.written = false, true
}

// volatileWord reports whether w is a word that changes with the date or time of a call
// while the template stays the same: month and weekday names, AM/PM, time-zone names.
// key is w packed by packLower. It is called for every word of a prompt, so it looks
// the packed word up in a small hash table instead of comparing strings.
func volatileWord(w string, key uint64) bool {
	switch {
	case len(w) < 2 || len(w) > 9:
		return false
	case len(w) == 9:
		return strings.EqualFold(w, "september") || strings.EqualFold(w, "wednesday")
	}
	for i := slot(key); volatileTable[i] != 0; i = (i + 1) % uint64(len(volatileTable)) {
		if volatileTable[i] == key {
			return true
		}
	}
	return false
}

// volatileWords are masked wherever they appear as a whole word, in any case. Masking a
// word that only looks like a date ("may", "sun", "west") costs nothing: it is masked
// the same way in every call.
var volatileWords = []string{
	"january", "february", "march", "april", "may", "june", "july", "august",
	"october", "november", "december", // september: in volatileWord
	"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
	"monday", "tuesday", "thursday", "friday", "saturday", "sunday", // wednesday: in volatileWord
	"mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
	"am", "pm", "a.m", "p.m",
	"utc", "gmt", "est", "edt", "cst", "cdt", "mst", "mdt", "pst", "pdt", "akst", "akdt",
	"hst", "wet", "west", "cet", "cest", "eet", "eest", "bst", "ist", "msk", "jst", "kst",
	"aest", "aedt", "acst", "acdt", "awst", "nzst", "nzdt",
}

// volatileTable is an open-addressing set of volatileWords packed by packLower; 0 marks
// an empty slot. It is built once and only read.
var volatileTable = func() (t [256]uint64) {
	for _, w := range volatileWords {
		if len(w) > 8 || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz.") != "" {
			panic("workload: volatile word " + w + " is not up to 8 lower-case letters and dots")
		}
		key := packLower(w)
		i := slot(key)
		for t[i] != 0 {
			i = (i + 1) % uint64(len(t))
		}
		t[i] = key
	}
	return t
}()

// packLower packs the first 8 bytes of w into an integer, each byte ORed with 0x20:
// that lower-cases ASCII letters and leaves dots alone, and as no other byte becomes a
// lower-case letter or a dot, words of letters and dots get a key of their own.
func packLower(w string) uint64 {
	var key uint64
	for i := range min(len(w), 8) {
		key |= uint64(w[i]|0x20) << (8 * i)
	}
	return key
}

func slot(key uint64) uint64 { return (key * 0x9e3779b97f4a7c15) >> 56 }

// hasher is a streaming 64-bit hash in the style of wyhash: 16 bytes at a time through a
// folded 64x64->128-bit multiply. It is not cryptographic; it only has to keep distinct
// templates apart, and it is about three times faster than SHA-256 here (see
// BenchmarkHash). It lives on the caller's stack.
type hasher struct {
	buf   [64]byte
	n     int
	total uint64
	state uint64
}

const (
	k0 = 0xa0761d6478bd642f
	k1 = 0xe7037ed1a0b428db
	k2 = 0x8ebc6af09c88c6e3
	k3 = 0x589965cc75374cc3
)

func newHasher() hasher {
	return hasher{state: mix(fingerprintVersion^k0, k1)}
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (h *hasher) writeByte(c byte) {
	h.buf[h.n] = c
	h.n++
	if h.n == len(h.buf) {
		h.block()
	}
}

func (h *hasher) writeString(s string) {
	for len(s) > 0 {
		k := copy(h.buf[h.n:], s)
		h.n += k
		s = s[k:]
		if h.n == len(h.buf) {
			h.block()
		}
	}
}

// block absorbs h.buf[:h.n], zero-padded to a multiple of 16 bytes.
func (h *hasher) block() {
	clear(h.buf[h.n:])
	for i := 0; i < h.n; i += 16 {
		a := binary.LittleEndian.Uint64(h.buf[i:])
		b := binary.LittleEndian.Uint64(h.buf[i+8:])
		h.state = mix(a^k1, b^h.state)
	}
	h.total += uint64(h.n)
	h.n = 0
}

func (h *hasher) sum() uint64 {
	if h.n > 0 {
		h.block()
	}
	// The length tells apart inputs that differ only in zero padding.
	return mix(h.state^k2, h.total^k3)
}
