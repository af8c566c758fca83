package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"

	"github.com/downshift-dev/downshift/internal/openai"
)

// listModels serves GET /v1/models: every configured model and every alias.
func (g *Gateway) listModels(w http.ResponseWriter, r *http.Request) error {
	client, err := g.authenticate(r)
	if err != nil {
		return err
	}
	list := openai.ModelList{Object: "list", Data: []openai.Model{}}
	for _, m := range g.catalog.Models() {
		if allowed(client, m.Name, m.Name) == nil {
			list.Data = append(list.Data, openai.Model{ID: m.Name, Object: "model", OwnedBy: m.Backend.Name()})
		}
	}
	aliases := g.catalog.Aliases()
	names := make([]string, 0, len(aliases))
	for a := range aliases {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		m, _ := g.catalog.Resolve(a)
		if allowed(client, a, m.Name) == nil {
			list.Data = append(list.Data, openai.Model{ID: a, Object: "model", OwnedBy: m.Backend.Name()})
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

// embeddings serves POST /v1/embeddings by passing the request to the backend of the
// named model (with its upstream name) and its answer back unchanged.
func (g *Gateway) embeddings(w http.ResponseWriter, r *http.Request) error {
	client, err := g.authenticate(r)
	if err != nil {
		return err
	}
	body, err := g.readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		Model *string         `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			msg: "We could not parse the JSON body of your request."}
	}
	if req.Model == nil || *req.Model == "" {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, param: "model", msg: "you must provide a model parameter"}
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, param: "input", msg: "you must provide an input parameter"}
	}
	m, ok := g.catalog.Resolve(*req.Model)
	if !ok {
		return &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "model",
			msg: fmt.Sprintf("The model `%s` does not exist or is not served by this gateway.", *req.Model)}
	}
	if err := allowed(client, *req.Model, m.Name); err != nil {
		return err
	}
	up, err := openai.PatchRequest(body, map[string]any{"model": m.UpstreamName})
	if err != nil {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, msg: "Invalid request body.", cause: err}
	}
	resp, err := m.Backend.Post(r.Context(), "/embeddings", up, "application/json")
	if err != nil {
		g.countUpstreamError(m.Backend.Name(), err)
		return g.upstreamError(r.Context(), err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return &apiError{status: http.StatusBadGateway, typ: typeServer, code: "upstream_unreachable",
			msg: fmt.Sprintf("Backend %q broke the connection.", m.Backend.Name()), cause: err}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set(HeaderModel, m.Name)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}
