// Package workload names the workload a call belongs to, on the hot path: from the
// client's explicit tag, or from a fingerprint of the call's template (system prompt with
// its volatile parts masked, tool names, response format).
//
// It is for cheap, deterministic identification of one call, in microseconds and without
// I/O. It is not for discovering workloads across many recorded calls (clustering,
// labels, readiness): that is internal/discover, on the cold path.
package workload

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/downshift-dev/downshift/internal/openai"
)

// TagHeader is the request header in which a client names the workload of a call. It
// takes precedence over metadata.workload in the request body.
const TagHeader = "X-Downshift-Workload"

// TagMetadataKey is the key of the request body's metadata map that names the workload.
const TagMetadataKey = "workload"

// MaxTagLen is the most characters (runes) a workload tag may have.
const MaxTagLen = 128

// Tag returns the workload tag of a call: the value of the X-Downshift-Workload header
// (passed as header, "" when absent) or else the request's metadata.workload, with
// surrounding whitespace trimmed. A tag that is longer than MaxTagLen characters, not
// valid UTF-8, or holds a character that is not printable yields "", as if the client
// had named no workload: a tag ends up in response headers, metric labels and the
// store, so it must be safe in all three. req may be nil.
func Tag(header string, req *openai.ChatRequest) string {
	var meta string
	if req != nil {
		meta = req.Metadata[TagMetadataKey]
	}
	return TagValue(header, meta)
}

// TagValue is Tag given the header and the metadata value themselves.
func TagValue(header, metadata string) string {
	t := strings.TrimSpace(header)
	if t == "" {
		t = strings.TrimSpace(metadata)
	}
	if !validTag(t) {
		return ""
	}
	return t
}

func validTag(t string) bool {
	if len(t) > MaxTagLen*utf8.UTFMax {
		return false
	}
	n := 0
	for _, r := range t {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false // RuneError also stands for invalid UTF-8
		}
		n++
	}
	return n <= MaxTagLen
}
