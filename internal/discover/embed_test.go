package discover

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeEmbeddings serves /v1/embeddings with a bag-of-words embedding: each word of the
// input adds 1 to one of 64 coordinates chosen by its hash.
func fakeEmbeddings(t *testing.T, requests *int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/embeddings" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"error":{"message":"no"}}`, http.StatusUnauthorized)
			return
		}
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "embed-small" {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		*requests++
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var out struct {
			Data []item `json:"data"`
		}
		for i, text := range req.Input {
			e := make([]float32, 64)
			for _, word := range strings.Fields(strings.ToLower(text)) {
				h := fnv.New32a()
				h.Write([]byte(strings.Trim(word, ".,?!")))
				e[h.Sum32()%64]++
			}
			out.Data = append(out.Data, item{Index: i, Embedding: e})
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDiscoverWithAnEmbeddingsEndpoint(t *testing.T) {
	calls, tasks := splitFixture(fixtureCalls(t, 80, 6))
	requests := 0
	srv := fakeEmbeddings(t, &requests)
	emb := &HTTPEmbedder{BaseURL: srv.URL + "/v1", Model: "embed-small", APIKey: "k", Client: srv.Client()}
	res, err := Discover(context.Background(), calls, Options{Seed: 1, Embedder: emb})
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(calls) + embedBatch - 1) / embedBatch; requests != want {
		t.Errorf("%d embeddings requests for %d calls, want %d", requests, len(calls), want)
	}
	ag, err := Compare(tasks, clustersOf(res, calls))
	if err != nil {
		t.Fatal(err)
	}
	if ag.ARI != 1 || len(res.Workloads) != 4 {
		t.Errorf("with embeddings: %d workloads, %s; want the 4 tasks", len(res.Workloads), fmtAgreement(ag))
	}
}

func TestDiscoverReportsEmbeddingsErrors(t *testing.T) {
	calls, _ := splitFixture(fixtureCalls(t, 5, 6))
	requests := 0
	srv := fakeEmbeddings(t, &requests)
	emb := &HTTPEmbedder{BaseURL: srv.URL + "/v1", Model: "embed-small", APIKey: "wrong", Client: srv.Client()}
	_, err := Discover(context.Background(), calls, Options{Seed: 1, Embedder: emb})
	if err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("error %v, want the endpoint's 401", err)
	}
}
