package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// ModelStore is what RunModels tests: the models added to the catalog at run time.
type ModelStore interface {
	store.ModelStore
	Close() error
}

// RunModels runs the conformance suite for the run-time model catalog against the
// stores open makes. open must return a new, empty store each time; RunModels closes it.
func RunModels(t *testing.T, open func(t *testing.T) ModelStore) {
	tests := []testCase[ModelStore]{
		{"NoModelsOnANewStore", testNoModels},
		{"ModelsRoundTripOrderedByName", testModelsRoundTrip},
		{"PutReplacesTheModelOfTheSameName", testPutReplaces},
		{"InvalidModelIsRefused", testInvalidModel},
		{"DeleteRemovesAndUnknownIsNotFound", testDeleteModel},
		{"ConcurrentPutsAllLand", testConcurrentPuts},
	}
	runEach(t, open, tests)
}

// catalogModel returns a model with every field set; its spec keeps spacing and key
// order that a store must not rewrite.
func catalogModel(name string) store.CatalogModel {
	return store.CatalogModel{
		Name: name,
		Spec: json.RawMessage(`{"name": "` + name + `", "backend":"vllm", "upstream_name":"Qwen/Qwen2.5-7B-Instruct",` +
			` "price": {"gpu_hour_usd": 2.5, "throughput_tps": 1800}, "licence": "Apache-2.0 — libre"}`),
		AddedAt: base.In(time.FixedZone("UTC-7", -7*3600)), // sub-µs digits and a zone
		AddedBy: "cli:alice",
	}
}

// storedModel is what a store gives back for m: microsecond time in UTC.
func storedModel(m store.CatalogModel) store.CatalogModel {
	m.AddedAt = m.AddedAt.Truncate(time.Microsecond).UTC()
	return m
}

func modelDiff(got, want store.CatalogModel) string {
	if !got.AddedAt.Equal(want.AddedAt) || got.AddedAt.Location() != time.UTC {
		return fmt.Sprintf("AddedAt %v, want %v (UTC)", got.AddedAt, want.AddedAt)
	}
	if string(got.Spec) != string(want.Spec) {
		return fmt.Sprintf("Spec %s, want it as given: %s", got.Spec, want.Spec)
	}
	got.AddedAt, got.Spec = want.AddedAt, want.Spec
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("\n got %+v\nwant %+v", got, want)
	}
	return ""
}

func listModels(t *testing.T, s ModelStore) []store.CatalogModel {
	t.Helper()
	ms, err := s.ListModels(context.Background())
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	return ms
}

func modelNames(ms []store.CatalogModel) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func putModel(t *testing.T, s ModelStore, m store.CatalogModel) {
	t.Helper()
	if err := s.PutModel(context.Background(), m); err != nil {
		t.Fatalf("PutModel %s: %v", m.Name, err)
	}
}

func testNoModels(t *testing.T, s ModelStore) {
	if ms := listModels(t, s); len(ms) != 0 {
		t.Errorf("new store lists models %v", modelNames(ms))
	}
	if err := s.DeleteModel(context.Background(), "qwen"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteModel on a new store: err = %v, want ErrNotFound", err)
	}
}

func testModelsRoundTrip(t *testing.T, s ModelStore) {
	c, a := catalogModel("qwen2.5-7b"), catalogModel("Llama-3.1-8B")
	b := store.CatalogModel{Name: "mistral/7b", Spec: json.RawMessage(`{}`)} // nothing else set
	for _, m := range []store.CatalogModel{c, a, b} {
		putModel(t, s, m)
	}
	got := listModels(t, s)
	want := []store.CatalogModel{storedModel(a), storedModel(b), storedModel(c)} // byte order of names
	if len(got) != len(want) {
		t.Fatalf("ListModels = %v, want %v", modelNames(got), modelNames(want))
	}
	for i := range want {
		if d := modelDiff(got[i], want[i]); d != "" {
			t.Errorf("model %s: %s", want[i].Name, d)
		}
	}
}

func testPutReplaces(t *testing.T, s ModelStore) {
	first, other := catalogModel("qwen"), catalogModel("phi")
	putModel(t, s, first)
	putModel(t, s, other)
	second := store.CatalogModel{Name: "qwen", Spec: json.RawMessage(`{"backend":"nim"}`),
		AddedAt: base.Add(time.Hour), AddedBy: "key_ad01"}
	putModel(t, s, second)
	got := listModels(t, s)
	if len(got) != 2 {
		t.Fatalf("after replacing qwen: %v, want [phi qwen]", modelNames(got))
	}
	if d := modelDiff(got[1], storedModel(second)); d != "" {
		t.Errorf("qwen after PutModel again: %s", d)
	}
	if d := modelDiff(got[0], storedModel(other)); d != "" {
		t.Errorf("phi changed by replacing qwen: %s", d)
	}
}

func testInvalidModel(t *testing.T, s ModelStore) {
	ctx := context.Background()
	good := catalogModel("qwen")
	putModel(t, s, good)
	for name, m := range map[string]store.CatalogModel{
		"no name":           {Spec: json.RawMessage(`{}`)},
		"spec not JSON":     {Name: "phi", Spec: json.RawMessage(`{"backend":`)},
		"no spec":           {Name: "phi"},
		"replace, not JSON": {Name: "qwen", Spec: json.RawMessage(`nope`)},
	} {
		if err := s.PutModel(ctx, m); err == nil {
			t.Errorf("%s: PutModel succeeded", name)
		}
	}
	got := listModels(t, s)
	if len(got) != 1 {
		t.Fatalf("after refused puts: %v, want [qwen]", modelNames(got))
	}
	if d := modelDiff(got[0], storedModel(good)); d != "" {
		t.Errorf("qwen after refused puts: %s", d)
	}
}

func testDeleteModel(t *testing.T, s ModelStore) {
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		putModel(t, s, catalogModel(n))
	}
	if err := s.DeleteModel(ctx, "b"); err != nil {
		t.Fatalf("DeleteModel b: %v", err)
	}
	if got := modelNames(listModels(t, s)); !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Errorf("after deleting b: %v, want [a c]", got)
	}
	if err := s.DeleteModel(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting b twice: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteModel(ctx, "B"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting B (names are case-sensitive): err = %v, want ErrNotFound", err)
	}
	// A deleted name can be added again.
	putModel(t, s, catalogModel("b"))
	if got := modelNames(listModels(t, s)); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("after adding b again: %v, want [a b c]", got)
	}
}

func testConcurrentPuts(t *testing.T, s ModelStore) {
	const writers, each = 8, 10
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each+writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.PutModel(ctx, catalogModel(fmt.Sprintf("m%02d-%02d", w, i))); err != nil {
					errs <- err
				}
			}
			if _, err := s.ListModels(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	if n := len(listModels(t, s)); n != writers*each {
		t.Errorf("ListModels has %d models, want %d", n, writers*each)
	}
}
