package workload

import (
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func TestTag(t *testing.T) {
	withMeta := func(v string) *openai.ChatRequest {
		return &openai.ChatRequest{Metadata: map[string]string{"workload": v}}
	}
	tests := []struct {
		name   string
		header string
		req    *openai.ChatRequest
		want   string
	}{
		{"header", "route-ticket", nil, "route-ticket"},
		{"header trimmed", "  route-ticket\t", nil, "route-ticket"},
		{"header wins over metadata", "route-ticket", withMeta("extract-order"), "route-ticket"},
		{"metadata when no header", "", withMeta("extract-order"), "extract-order"},
		{"metadata when header blank", "   ", withMeta(" extract-order "), "extract-order"},
		{"neither", "", &openai.ChatRequest{}, ""},
		{"nil request", "", nil, ""},
		{"other metadata keys ignored", "", &openai.ChatRequest{Metadata: map[string]string{"user": "x"}}, ""},
		{"inner spaces and punctuation kept", "airline / book flight (v2)", nil, "airline / book flight (v2)"},
		{"unicode", "réservation-vol", nil, "réservation-vol"},
		{"exactly the maximum", strings.Repeat("a", MaxTagLen), nil, strings.Repeat("a", MaxTagLen)},
		{"maximum counted in characters", strings.Repeat("é", MaxTagLen), nil, strings.Repeat("é", MaxTagLen)},
		{"too long", strings.Repeat("a", MaxTagLen+1), nil, ""},
		{"too long in characters", strings.Repeat("é", MaxTagLen+1), nil, ""},
		{"control character", "route\nticket", nil, ""},
		{"escape sequence", "route\x1b[31mticket", nil, ""},
		{"NUL", "route\x00", nil, ""},
		{"invalid UTF-8", "route\xffticket", nil, ""},
		{"invalid header does not fall back to metadata", "bad\x01", withMeta("extract-order"), ""},
		{"invalid metadata", "", withMeta("a\tb"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Tag(tt.header, tt.req); got != tt.want {
				t.Errorf("Tag(%q) = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

func BenchmarkTag(b *testing.B) {
	req := &openai.ChatRequest{Metadata: map[string]string{"workload": "airline/book-reservation"}}
	b.ReportAllocs()
	for b.Loop() {
		Tag("", req)
	}
}
