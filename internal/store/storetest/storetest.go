// Package storetest is the conformance suite every store.Store implementation passes,
// so that SQLite and PostgreSQL behave the same to the rest of downshift. It is for the
// tests of store implementations only; nothing outside a _test.go file imports it.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/downshift-dev/downshift/internal/store"
)

// Run runs the conformance suite against the stores open makes. open must return a new,
// empty store each time it is called; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"RoundTripEveryField", testRoundTrip},
		{"ListLeavesPayloadsOutUnlessAsked", testListPayloads},
		{"GetMissingIsErrNotFound", testNotFound},
		{"FiltersSelectAndCount", testFilters},
		{"InvalidStatusFilterIsError", testInvalidStatus},
		{"OrderIsNewestFirstUnlessAscending", testOrder},
		{"LimitCapsAndDefaultsTo100", testLimit},
		{"AfterIDFollowsInOrder", testFollow},
		{"InsertIsAllOrNothing", testAtomic},
		{"InsertWithoutIDFails", testMissingID},
		{"InsertEmptyBatchIsNoop", testEmptyBatch},
		{"ConcurrentInsertsAllLand", testConcurrent},
		{"CheckWritable", testCheck},
		{"UpdatePayloadsReplacesOnlyPayloadsAndKey", testUpdatePayloads},
		{"UpdatePayloadsIsAllOrNothing", testUpdateAtomic},
		{"UpdatePayloadsWithoutIDFails", testUpdateMissingID},
		{"UpdatePayloadsEmptyBatchIsNoop", testUpdateEmptyBatch},
		{"ImportSkipsStoredAndRepeatedIDs", testImportIdempotent},
		{"ImportIsAllOrNothingOnOtherErrors", testImportAtomic},
		{"ImportEmptyBatchIsNoop", testImportEmptyBatch},
	}
	runEach(t, open, tests)
}

// base is the start of the suite's calls, with sub-microsecond digits that stores drop.
var base = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

// newID returns a ULID for t; IDs of calls made in order sort in order.
func newID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}

// fullCall returns a call with every field set to something other than its zero value.
func fullCall(i int) store.Call {
	start := base.Add(time.Duration(i) * time.Second)
	return store.Call{
		ID:               newID(start),
		StartedAt:        start,
		FinishedAt:       start.Add(1234567891 * time.Nanosecond),
		ClientID:         "client-a",
		Workload:         "route-ticket",
		Fingerprint:      "fp-0123abcd",
		RequestedModel:   "gpt-4o",
		ServedModel:      "meta/llama-3.3-70b-instruct",
		Backend:          "nim",
		Route:            store.RouteEscalated,
		Stream:           true,
		Status:           502,
		ErrorType:        "upstream_error",
		ErrorMessage:     "upstream said no — ошибка 上游",
		PromptTokens:     1200,
		CompletionTokens: 345,
		CachedTokens:     1024,
		TokensEstimated:  true,
		Latency:          1234567891 * time.Nanosecond,
		TTFT:             98765 * time.Nanosecond,
		CostUSD:          0.00123456789,
		Simulated:        true,
		Redactions:       map[string]int{"EMAIL": 2, "CREDIT_CARD": 1},
		KeyID:            "k1",
		Source:           store.SourceFlywheel,
		GroundTruth:      true,
		WorkloadID:       "wl-01",
		Mode:             store.ModeCanary,
		PolicyVersion:    7,
		Candidate:        "llama-3.1-8b",
		Guard:            "tool_known,schema_valid",
		Second: &store.SecondAnswer{Kind: store.SecondVerify, Model: "gpt-4o", Status: 200,
			Error: "not an error, but kept", PromptTokens: 1201, CompletionTokens: 40,
			Latency: 2345678 * time.Nanosecond, CostUSD: 0.0042, Simulated: true,
			Compared: true, Agreement: 0.625, Pass: true,
			Response: []byte(`{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"second — 二"}}]}`)},
		ReferenceCostUSD:       0.0042,
		ReferenceCostEstimated: true,
		Request:                []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"héllo 👋"}]}`),
		Response:               []byte(`{"error":{"message":"no","type":"upstream_error"}}`),
	}
}

// stored is what a store gives back for c: microsecond resolution, UTC, nil for empty.
func stored(c store.Call) store.Call {
	c.StartedAt = c.StartedAt.Truncate(time.Microsecond).UTC()
	c.FinishedAt = c.FinishedAt.Truncate(time.Microsecond).UTC()
	c.Latency = c.Latency.Truncate(time.Microsecond)
	c.TTFT = c.TTFT.Truncate(time.Microsecond)
	if c.Second != nil {
		sec := *c.Second
		sec.Latency = sec.Latency.Truncate(time.Microsecond)
		if len(sec.Response) == 0 {
			sec.Response = nil
		}
		c.Second = &sec
	}
	if len(c.Request) == 0 {
		c.Request = nil
	}
	if len(c.Response) == 0 {
		c.Response = nil
	}
	if len(c.Redactions) == 0 {
		c.Redactions = nil
	}
	return c
}

// diff describes how got differs from want, or returns "".
func diff(got, want store.Call) string {
	var d []string
	if !got.StartedAt.Equal(want.StartedAt) || got.StartedAt.Location() != time.UTC {
		d = append(d, fmt.Sprintf("StartedAt %v, want %v (UTC)", got.StartedAt, want.StartedAt))
	}
	if !got.FinishedAt.Equal(want.FinishedAt) || got.FinishedAt.Location() != time.UTC {
		d = append(d, fmt.Sprintf("FinishedAt %v, want %v (UTC)", got.FinishedAt, want.FinishedAt))
	}
	if !bytes.Equal(got.Request, want.Request) || (got.Request == nil) != (want.Request == nil) {
		d = append(d, fmt.Sprintf("Request %d bytes (nil %t), want %d (nil %t)",
			len(got.Request), got.Request == nil, len(want.Request), want.Request == nil))
	}
	if !bytes.Equal(got.Response, want.Response) || (got.Response == nil) != (want.Response == nil) {
		d = append(d, fmt.Sprintf("Response %d bytes (nil %t), want %d (nil %t)",
			len(got.Response), got.Response == nil, len(want.Response), want.Response == nil))
	}
	if gs, ws := got.SecondResponse(), want.SecondResponse(); !bytes.Equal(gs, ws) || (gs == nil) != (ws == nil) {
		d = append(d, fmt.Sprintf("Second.Response %d bytes (nil %t), want %d (nil %t)",
			len(gs), gs == nil, len(ws), ws == nil))
	}
	g, w := got, want
	g.StartedAt, g.FinishedAt, g.Request, g.Response = time.Time{}, time.Time{}, nil, nil
	w.StartedAt, w.FinishedAt, w.Request, w.Response = time.Time{}, time.Time{}, nil, nil
	// Compared above; the pointers are copied so that got and want are left as they are.
	for _, c := range []*store.Call{&g, &w} {
		if c.Second != nil {
			sec := *c.Second
			sec.Response = nil
			c.Second = &sec
		}
	}
	if !reflect.DeepEqual(g, w) {
		d = append(d, fmt.Sprintf("fields\n got %+v\nwant %+v", g, w))
	}
	return strings.Join(d, "; ")
}

func insert(t *testing.T, s store.Store, calls ...store.Call) {
	t.Helper()
	if err := s.InsertCalls(context.Background(), calls); err != nil {
		t.Fatalf("InsertCalls: %v", err)
	}
}

func ids(calls []store.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.ID
	}
	return out
}

func testRoundTrip(t *testing.T, s store.Store) {
	big := bytes.Repeat([]byte(`{"k":"ünïcödé ✓ 0123456789"}`), 1<<16) // ~2 MB
	local := time.FixedZone("UTC+5:30", 5*3600+1800)

	full := fullCall(0)
	zero := store.Call{ID: newID(base.Add(time.Second))}
	emptyPayloads := fullCall(2)
	emptyPayloads.Request, emptyPayloads.Response = []byte{}, []byte{}
	bigPayloads := fullCall(3)
	bigPayloads.Request, bigPayloads.Response = big, big[:len(big)-7]
	inZone := fullCall(4)
	inZone.StartedAt, inZone.FinishedAt = inZone.StartedAt.In(local), inZone.FinishedAt.In(local)
	binary := fullCall(5)
	binary.Request = []byte{0, 1, 2, 0xff, 0xfe, 0}
	okCall := fullCall(6)
	okCall.Status, okCall.ErrorType, okCall.ErrorMessage = 200, "", ""
	okCall.Route, okCall.Stream, okCall.Simulated, okCall.TokensEstimated = store.RouteCandidate, false, false, false
	okCall.CostUSD = 0
	noRedactions := fullCall(7)
	noRedactions.Redactions, noRedactions.KeyID = map[string]int{}, ""
	noRedactions.Source, noRedactions.GroundTruth, noRedactions.WorkloadID = "", false, ""
	// A second answer that could not be compared: agreement 0 is not "compared, 0".
	uncompared := fullCall(9)
	uncompared.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: "llama-3.1-8b", Error: "timeout"}
	compared0 := fullCall(10)
	compared0.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: "llama-3.1-8b", Status: 200, Compared: true}
	// An empty second answer's body comes back as nil, like the other payloads.
	emptySecond := fullCall(11)
	emptySecond.Second.Response = []byte{}
	// Sealed payloads are random-looking bytes, NULs and invalid UTF-8 included, and
	// must come back exactly.
	sealed := fullCall(8)
	sealed.Request, sealed.Response = randomBytes(t, 20<<10), randomBytes(t, 1<<10)
	sealed.Request[0], sealed.Response[len(sealed.Response)-1] = 0, 0
	sealed.Second.Response = randomBytes(t, 3<<10)
	sealed.Second.Response[0] = 0
	bigPayloads.Second.Response = big[:len(big)-3]

	cases := map[string]store.Call{
		"full": full, "zero": zero, "empty payloads": emptyPayloads, "big payloads": bigPayloads,
		"local time zone": inZone, "binary payload": binary, "ok call": okCall,
		"empty redactions, plaintext": noRedactions, "sealed payloads": sealed,
		"second answer not compared": uncompared, "second answer compared, agreement 0": compared0,
		"second answer with an empty body": emptySecond,
	}
	var all []store.Call
	for _, c := range cases {
		all = append(all, c)
	}
	insert(t, s, all...)
	for name, c := range cases {
		got, err := s.GetCall(context.Background(), c.ID)
		if err != nil {
			t.Fatalf("%s: GetCall: %v", name, err)
		}
		if d := diff(got, stored(c)); d != "" {
			t.Errorf("%s: round trip: %s", name, d)
		}
	}
	if !zeroTimeRoundTrips(t, s, zero.ID) {
		t.Errorf("zero StartedAt did not come back as the zero time")
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func zeroTimeRoundTrips(t *testing.T, s store.Store, id string) bool {
	got, err := s.GetCall(context.Background(), id)
	if err != nil {
		t.Fatalf("GetCall: %v", err)
	}
	return got.StartedAt.IsZero() && got.FinishedAt.IsZero()
}

func testListPayloads(t *testing.T, s store.Store) {
	c := fullCall(0)
	insert(t, s, c)
	ctx := context.Background()

	got, err := s.ListCalls(ctx, store.Filter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListCalls = %d calls, %v; want 1", len(got), err)
	}
	want := withoutPayloads(stored(c))
	if want.Second == nil || want.Second.Kind == "" {
		t.Fatal("the call has no second answer; the test proves nothing")
	}
	if d := diff(got[0], want); d != "" {
		t.Errorf("ListCalls without payloads: %s", d)
	}

	got, err = s.ListCalls(ctx, store.Filter{WithPayloads: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListCalls = %d calls, %v; want 1", len(got), err)
	}
	if d := diff(got[0], stored(c)); d != "" {
		t.Errorf("ListCalls with payloads: %s", d)
	}
}

// withoutPayloads is c as a listing without payloads returns it: its second answer's
// metadata, but no body.
func withoutPayloads(c store.Call) store.Call {
	c.Request, c.Response = nil, nil
	if c.Second != nil {
		sec := *c.Second
		sec.Response = nil
		c.Second = &sec
	}
	return c
}

func testNotFound(t *testing.T, s store.Store) {
	insert(t, s, fullCall(0))
	_, err := s.GetCall(context.Background(), newID(base.Add(time.Hour)))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCall(missing) error = %v, want store.ErrNotFound", err)
	}
}

// filterFixture inserts calls that differ in every filtered field and returns them by name.
func filterFixture(t *testing.T, s store.Store) map[string]store.Call {
	t.Helper()
	mk := func(i int, workload, requested, served string, status int, keyID, source, workloadID string) store.Call {
		c := fullCall(i)
		c.Workload, c.RequestedModel, c.ServedModel, c.Status = workload, requested, served, status
		c.KeyID, c.Source, c.WorkloadID = keyID, source, workloadID
		return c
	}
	calls := map[string]store.Call{
		"a": mk(0, "route", "gpt-4o", "llama-70b", 200, "k1", "", "w1"),
		"b": mk(1, "route", "gpt-4o", "nano-9b", 200, "k2", store.SourceBFCL, "w2"),
		"c": mk(2, "extract", "gpt-4o", "llama-70b", 502, "", store.SourceOpenAI, ""),
		"d": mk(3, "extract", "claude", "claude", 429, "k1", "", "w1"),
		"e": mk(4, "", "nano-9b", "nano-9b", 201, "", store.SourceBFCL, "w2"),
		"f": mk(5, "route", "gpt-4o", "llama-70b", 399, "k2", "", ""),
		"g": mk(6, "route", "gpt-4o", "llama-70b", 400, "k1", store.SourceOpenAI, "w1"),
	}
	var all []store.Call
	for _, c := range calls {
		all = append(all, c)
	}
	insert(t, s, all...)
	return calls
}

func testFilters(t *testing.T, s store.Store) {
	calls := filterFixture(t, s)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name string
		f    store.Filter
		want string // names of the matching calls, oldest first
	}{
		{"all", store.Filter{}, "abcdefg"},
		{"workload", store.Filter{Workload: "route"}, "abfg"},
		{"workload none", store.Filter{Workload: "nope"}, ""},
		{"model requested", store.Filter{Model: "gpt-4o"}, "abcfg"},
		{"model served", store.Filter{Model: "llama-70b"}, "acfg"},
		{"model either", store.Filter{Model: "nano-9b"}, "be"},
		{"status code", store.Filter{Status: 429}, "d"},
		{"status ok", store.Filter{Status: store.StatusOK}, "abef"},
		{"status error", store.Filter{Status: store.StatusError}, "cdg"},
		{"since inclusive", store.Filter{Since: at(4)}, "efg"},
		{"since truncated", store.Filter{Since: at(4).Truncate(time.Microsecond)}, "efg"},
		{"until exclusive", store.Filter{Until: at(2)}, "ab"},
		{"since until", store.Filter{Since: at(1), Until: at(3)}, "bc"},
		{"after id", store.Filter{AfterID: calls["d"].ID}, "efg"},
		{"combined", store.Filter{Workload: "route", Model: "llama-70b", Status: store.StatusOK, Since: at(0), Until: at(6)}, "af"},
		{"combined after id", store.Filter{Workload: "route", Status: store.StatusError, AfterID: calls["a"].ID}, "g"},
		{"sealed under", store.Filter{SealedUnder: "k1"}, "adg"},
		{"sealed under unknown key", store.Filter{SealedUnder: "k9"}, ""},
		{"not sealed under includes plaintext", store.Filter{NotSealedUnder: "k1"}, "bcef"},
		{"not sealed under other key", store.Filter{NotSealedUnder: "k2"}, "acdeg"},
		{"not sealed under unknown key", store.Filter{NotSealedUnder: "k9"}, "abcdefg"},
		{"not sealed under after id", store.Filter{NotSealedUnder: "k2", AfterID: calls["c"].ID}, "deg"},
		{"sealed under and workload", store.Filter{SealedUnder: "k1", Workload: "extract"}, "d"},
		{"source", store.Filter{Source: store.SourceBFCL}, "be"},
		{"source none", store.Filter{Source: store.SourceFlywheel}, ""},
		{"workload id", store.Filter{WorkloadID: "w1"}, "adg"},
		{"workload id is not the tag", store.Filter{WorkloadID: "route"}, ""},
		{"source and workload id", store.Filter{Source: store.SourceOpenAI, WorkloadID: "w1"}, "g"},
		{"workload id and status", store.Filter{WorkloadID: "w2", Status: 201}, "e"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, r := range tt.want {
				want = append(want, calls[string(r)].ID)
			}
			f := tt.f
			f.Ascending = true
			got, err := s.ListCalls(ctx, f)
			if err != nil {
				t.Fatalf("ListCalls: %v", err)
			}
			if !slices.Equal(ids(got), want) {
				t.Errorf("ListCalls(%+v) = %v, want %v", f, ids(got), want)
			}
			f.Limit = 1 // CountCalls ignores the limit
			n, err := s.CountCalls(ctx, f)
			if err != nil {
				t.Fatalf("CountCalls: %v", err)
			}
			if n != len(want) {
				t.Errorf("CountCalls(%+v) = %d, want %d", f, n, len(want))
			}
		})
	}
}

func testInvalidStatus(t *testing.T, s store.Store) {
	insert(t, s, fullCall(0))
	ctx := context.Background()
	if _, err := s.ListCalls(ctx, store.Filter{Status: -7}); err == nil {
		t.Error("ListCalls with Status -7: no error")
	}
	if _, err := s.CountCalls(ctx, store.Filter{Status: -7}); err == nil {
		t.Error("CountCalls with Status -7: no error")
	}
}

func testOrder(t *testing.T, s store.Store) {
	var want []string
	var batch []store.Call
	for i := range 10 {
		c := fullCall(i)
		want = append(want, c.ID)
		batch = append(batch, c)
	}
	// Insertion order must not matter.
	slices.Reverse(batch)
	insert(t, s, batch[:5]...)
	insert(t, s, batch[5:]...)

	ctx := context.Background()
	got, err := s.ListCalls(ctx, store.Filter{Ascending: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), want) {
		t.Errorf("ascending = %v, want %v", ids(got), want)
	}
	got, err = s.ListCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want)
	if !slices.Equal(ids(got), want) {
		t.Errorf("default order = %v, want newest first %v", ids(got), want)
	}
}

func testLimit(t *testing.T, s store.Store) {
	var batch []store.Call
	for i := range 105 {
		batch = append(batch, fullCall(i))
	}
	insert(t, s, batch...)
	ctx := context.Background()

	got, err := s.ListCalls(ctx, store.Filter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{batch[104].ID, batch[103].ID, batch[102].ID}
	if !slices.Equal(ids(got), want) {
		t.Errorf("Limit 3 = %v, want the 3 newest %v", ids(got), want)
	}
	got, err = s.ListCalls(ctx, store.Filter{Limit: 3, Ascending: true})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{batch[0].ID, batch[1].ID, batch[2].ID}
	if !slices.Equal(ids(got), want) {
		t.Errorf("Limit 3 ascending = %v, want the 3 oldest %v", ids(got), want)
	}
	got, err = s.ListCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Errorf("no limit returned %d calls, want the default 100", len(got))
	}
	got, err = s.ListCalls(ctx, store.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 105 {
		t.Errorf("Limit 1000 returned %d calls, want all 105", len(got))
	}
	if n, err := s.CountCalls(ctx, store.Filter{}); err != nil || n != 105 {
		t.Errorf("CountCalls = %d, %v; want 105", n, err)
	}
}

func testFollow(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []string
	after := ""
	var got []string
	page := func() {
		for {
			calls, err := s.ListCalls(ctx, store.Filter{AfterID: after, Ascending: true, Limit: 4})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ids(calls)...)
			if len(calls) == 0 {
				return
			}
			after = calls[len(calls)-1].ID
		}
	}
	for round := range 3 {
		var batch []store.Call
		for i := range 7 {
			c := fullCall(round*100 + i)
			batch = append(batch, c)
			want = append(want, c.ID)
		}
		insert(t, s, batch...)
		page()
	}
	if !slices.Equal(got, want) {
		t.Errorf("following with AfterID saw %v, want %v", got, want)
	}
}

func testAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	existing := fullCall(0)
	insert(t, s, existing)

	fresh := fullCall(1)
	if err := s.InsertCalls(ctx, []store.Call{fresh, existing}); err == nil {
		t.Fatal("InsertCalls with an id already stored: no error")
	}
	other := fullCall(2)
	if err := s.InsertCalls(ctx, []store.Call{other, fullCall(3), other}); err == nil {
		t.Fatal("InsertCalls with a duplicate id in the batch: no error")
	}
	n, err := s.CountCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("after two failed batches, %d calls stored, want 1", n)
	}
	for _, id := range []string{fresh.ID, other.ID} {
		if _, err := s.GetCall(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("call %s of a failed batch: GetCall error = %v, want ErrNotFound", id, err)
		}
	}
	// The store is still usable after a failed batch.
	insert(t, s, fresh, other)
}

func testMissingID(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.InsertCalls(ctx, []store.Call{fullCall(0), {}}); err == nil {
		t.Fatal("InsertCalls with a call without id: no error")
	}
	if n, err := s.CountCalls(ctx, store.Filter{}); err != nil || n != 0 {
		t.Errorf("CountCalls = %d, %v; want 0", n, err)
	}
}

func testEmptyBatch(t *testing.T, s store.Store) {
	if err := s.InsertCalls(context.Background(), nil); err != nil {
		t.Errorf("InsertCalls(nil) = %v", err)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	const writers, batches, size = 16, 10, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				batch := make([]store.Call, size)
				for i := range batch {
					c := fullCall(((w*batches)+b)*size + i)
					c.Request = fmt.Appendf(nil, `{"writer":%d,"batch":%d,"i":%d}`, w, b, i)
					batch[i] = c
				}
				if err := s.InsertCalls(ctx, batch); err != nil {
					errs <- err
				}
			}
		})
	}
	// Reads go on while the writers write.
	wg.Go(func() {
		for range 20 {
			if _, err := s.ListCalls(ctx, store.Filter{Limit: 10}); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	n, err := s.CountCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if n != writers*batches*size {
		t.Errorf("CountCalls = %d, want %d", n, writers*batches*size)
	}
}

func testCheck(t *testing.T, s store.Store) {
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check = %v", err)
	}
}

// testCase is one subtest of a suite, run on a new store.
type testCase[S any] struct {
	name string
	fn   func(t *testing.T, s S)
}

// runEach runs every test on a new store from open, closing it after.
func runEach[S interface{ Close() error }](t *testing.T, open func(t *testing.T) S, tests []testCase[S]) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}
