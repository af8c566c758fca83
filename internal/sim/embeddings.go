package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"slices"
	"strings"
	"unicode"

	"github.com/downshift-dev/downshift/internal/openai"
)

const (
	defaultEmbeddingDims = 256
	maxEmbeddingDims     = 8192
)

// embeddingRequest is the part of POST /v1/embeddings the simulator reads.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     int             `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

type embeddingList struct {
	Object    string      `json:"object"`
	Data      []embedding `json:"data"`
	Model     string      `json:"model"`
	Usage     embedUsage  `json:"usage"`
	Simulated bool        `json:"simulated"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embedUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddings answers with deterministic hashed vectors: each lower-cased word adds
// ±1 at a position its hash picks, and the vector is scaled to unit length, so texts
// that share words point the same way. They are marked simulated; no model made them.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req embeddingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, msg: openai.MessageParseBody}
	}
	if req.Model == "" {
		return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, param: "model",
			code: openai.CodeMissingRequired, msg: "you must provide a model parameter"}
	}
	inputs, err := embeddingInputs(req.Input)
	if err != nil {
		return err
	}
	dims := req.Dimensions
	if dims == 0 {
		dims = s.opts.EmbeddingDims
	}
	if dims == 0 {
		dims = defaultEmbeddingDims
	}
	if dims < 1 || dims > maxEmbeddingDims {
		return badParam("dimensions", fmt.Sprintf("dimensions must be in 1..%d", maxEmbeddingDims))
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return badParam("encoding_format", "encoding_format must be float or base64")
	}
	out := embeddingList{Object: "list", Model: req.Model, Simulated: true, Data: make([]embedding, len(inputs))}
	for i, in := range inputs {
		vec := hashedVector(in, dims)
		var e any = vec
		if req.EncodingFormat == "base64" {
			e = base64Floats(vec)
		}
		out.Data[i] = embedding{Object: "embedding", Index: i, Embedding: e}
		out.Usage.PromptTokens += s.counter.Text(in)
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	b, err := marshal(out)
	if err != nil {
		return fmt.Errorf("sim: encode embeddings: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderSimulated, "true")
	_, _ = w.Write(b)
	return nil
}

func embeddingInputs(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err == nil && len(many) > 0 {
		return many, nil
	}
	return nil, badParam("input", "input must be a string or a non-empty array of strings (token arrays are not simulated)")
}

func hashedVector(text string, dims int) []float32 {
	vec := make([]float32, dims)
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	for _, word := range words {
		h := fnv.New64a()
		_, _ = h.Write([]byte(word))
		sum := h.Sum64()
		sign := float32(1)
		if sum>>63 == 1 {
			sign = -1
		}
		vec[sum%uint64(dims)] += sign
	}
	var norm float64
	for _, v := range vec {
		norm += float64(v) * float64(v)
	}
	if norm > 0 {
		scale := float32(1 / math.Sqrt(norm))
		for i := range vec {
			vec[i] *= scale
		}
	}
	return vec
}

// base64Floats encodes vec as OpenAI's encoding_format=base64 does: little-endian
// float32s.
func base64Floats(vec []float32) string {
	b := make([]byte, 0, 4*len(vec))
	for _, v := range vec {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// listModels lists the recorded models and every name Models maps.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) error {
	names := slices.Clone(s.replay.models)
	for name := range s.models {
		names = append(names, name)
	}
	if len(names) == 0 {
		names = append(names, "downshift-sim")
	}
	slices.Sort(names)
	names = slices.Compact(names)
	list := openai.ModelList{Object: "list", Data: make([]openai.Model, len(names))}
	for i, n := range names {
		list.Data[i] = openai.Model{ID: n, Object: "model", Created: 0, OwnedBy: "downshift-sim"}
	}
	b, err := marshal(list)
	if err != nil {
		return fmt.Errorf("sim: encode models: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	return nil
}
