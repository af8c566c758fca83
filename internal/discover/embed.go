package discover

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/downshift-dev/downshift/internal/workload"
)

// HTTPEmbedder embeds texts through an OpenAI-compatible POST /v1/embeddings endpoint.
type HTTPEmbedder struct {
	// BaseURL is the API root, e.g. "http://127.0.0.1:8000/v1".
	BaseURL string
	// Model is the embedding model's name.
	Model string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Client is the HTTP client (default http.DefaultClient).
	Client *http.Client
}

var _ Embedder = (*HTTPEmbedder)(nil)

// Embed returns one embedding per text, in order.
func (e *HTTPEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	body, err := json.Marshal(map[string]any{"model": e.Model, "input": texts})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(e.BaseURL, "/")+"/embeddings", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("discover: embeddings: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if e.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.APIKey)
	}
	client := e.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discover: embeddings: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("discover: embeddings: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discover: embeddings: status %d: %.200s", resp.StatusCode, raw)
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("discover: embeddings: decode: %w", err)
	}
	embs := make([][]float32, len(texts))
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(texts) {
			return nil, fmt.Errorf("discover: embeddings: index %d out of range", d.Index)
		}
		embs[d.Index] = d.Embedding
	}
	for i, e := range embs {
		if e == nil {
			return nil, fmt.Errorf("discover: embeddings: no embedding for input %d", i)
		}
	}
	return embs, nil
}

// embedBatch is how many texts go in one embeddings request.
const embedBatch = 128

// embedAll embeds the last message of every call (an empty text for a request that
// cannot be read).
func embedAll(ctx context.Context, calls []Call, opts Options) ([][]float32, error) {
	texts := make([]string, len(calls))
	for i := range calls {
		if c, err := workload.ReadConversation(calls[i].Request); err == nil {
			texts[i] = c.LastText
		}
		if texts[i] == "" {
			texts[i] = " "
		}
	}
	out := make([][]float32, 0, len(calls))
	for lo := 0; lo < len(texts); lo += embedBatch {
		embs, err := opts.Embedder.Embed(ctx, texts[lo:min(lo+embedBatch, len(texts))])
		if err != nil {
			return nil, err
		}
		if len(embs) != min(embedBatch, len(texts)-lo) {
			return nil, fmt.Errorf("discover: embedder returned %d embeddings for %d texts", len(embs), min(embedBatch, len(texts)-lo))
		}
		out = append(out, embs...)
	}
	return out, nil
}

// embeddingVector turns an embedding into a sparse vector of norm 1 whose indexes lie
// outside the hashed feature space, so the projector keeps it apart from them.
func embeddingVector(e []float32) workload.Vector {
	v := workload.Vector{Idx: make([]uint32, len(e)), Val: make([]float32, len(e))}
	for i, x := range e {
		v.Idx[i] = 1<<31 | uint32(i)
		v.Val[i] = x
	}
	scale(v, 1)
	return v
}
