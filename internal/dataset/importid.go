package dataset

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/downshift-dev/downshift/internal/store"
)

// importEpochs are the times given to the records of a format that carry no timestamp
// of their own: the record at index i starts i seconds after its format's epoch. Each
// is near the date the dataset or format was published, so that imported calls sort
// before anything a gateway recorded since. They must never change: they are part of
// every such call's ID.
var importEpochs = map[string]time.Time{
	store.SourceOpenAI:   time.Date(2023, 3, 1, 0, 0, 0, 0, time.UTC),  // the chat-completions API
	store.SourceFlywheel: time.Date(2025, 3, 18, 0, 0, 0, 0, time.UTC), // the Data Flywheel Blueprint
	store.SourceTauBench: time.Date(2024, 6, 17, 0, 0, 0, 0, time.UTC), // tau-bench
	store.SourceBFCL:     time.Date(2024, 2, 26, 0, 0, 0, 0, time.UTC), // BFCL
}

// ImportTime is the time of the record at index (0-based) of a file of the given
// source when the record has no timestamp: the source's fixed epoch plus index seconds.
func ImportTime(source string, index int) time.Time {
	epoch, ok := importEpochs[source]
	if !ok {
		epoch = importEpochs[store.SourceOpenAI]
	}
	return epoch.Add(time.Duration(index) * time.Second)
}

// ImportID returns the ID of an imported call: a ULID whose time part is at (the
// record's own timestamp, or ImportTime) and whose 80 random bits are the first bytes
// of SHA-256(source, key). key names the record independently of the file it came in:
// a dataset's own id (BFCL "simple_python_3", tau-bench task/trial/turn) or the
// record's compacted request and response bytes. The same record imported twice
// therefore gets the same ID, which is what lets store.ImportCalls add nothing the
// second time, while IDs still sort by time.
//
// It fails only when at is outside the times a ULID can hold (before 1970, or after
// the year 10889).
func ImportID(source string, at time.Time, key []byte) (string, error) {
	if at.Before(time.Unix(0, 0)) || at.UnixMilli() > int64(ulid.MaxTime()) {
		return "", fmt.Errorf("dataset: time %s is outside what a call id can hold (1970 to 10889)", at.Format(time.RFC3339))
	}
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(key)
	sum := h.Sum(nil)
	var id ulid.ULID
	if err := id.SetTime(uint64(at.UnixMilli())); err != nil {
		return "", fmt.Errorf("dataset: %w", err)
	}
	copy(id[6:], sum[:10])
	return id.String(), nil
}
