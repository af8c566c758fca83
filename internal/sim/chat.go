package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/downshift-dev/downshift/internal/openai"
)

// reply is the answer the server is about to send.
type reply struct {
	id            string
	model         string // the model field: the name the client asked for
	msg           openai.Message
	finish        string
	usage         openai.Usage
	simulated     bool   // see HeaderSimulated
	replayedModel string // whose recorded answer this is or was made from; empty when invented
	match         string // how the recording was found: MatchExact, MatchWithoutSystem, ...
	degraded      string // the degradation applied to a candidate's answer, if any
}

// chatOptions are request fields that openai.ChatRequest does not model.
type chatOptions struct {
	ParallelToolCalls *bool `json:"parallel_tool_calls"`
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	req, err := openai.DecodeChatRequest(body)
	if err != nil {
		var re *openai.RequestError
		if errors.As(err, &re) {
			return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, param: re.Param, msg: re.Message}
		}
		return err
	}
	f := s.drawFault()
	if f != faultNone && f != faultCut {
		s.log.Debug("sim: fault", "fault", f, "model", req.Model)
		return s.injectFault(w, r, f)
	}
	rep, err := s.reply(req, body)
	if err != nil {
		return err
	}
	s.log.Debug("sim: answer", "model", req.Model, "replayed", rep.replayedModel, "match", rep.match,
		"simulated", rep.simulated, "degraded", rep.degraded, "stream", req.Stream, "cut", f == faultCut)

	h := w.Header()
	if rep.simulated {
		h.Set(HeaderSimulated, "true")
	} else {
		h.Set(HeaderReplayed, "true")
	}
	if rep.replayedModel != "" {
		h.Set(HeaderReplayedModel, rep.replayedModel)
		h.Set(HeaderReplayedMatch, rep.match)
	}
	if rep.degraded != "" {
		h.Set(HeaderDegraded, rep.degraded)
	}
	if f == faultCut {
		h.Set(HeaderFault, f.String())
		h.Set(HeaderSimulated, "true")
	}
	if req.Stream {
		return s.stream(w, r, req, rep, f == faultCut)
	}
	return s.complete(w, r, rep, f == faultCut)
}

// reply finds or invents the answer to req, whose JSON is body.
func (s *Server) reply(req *openai.ChatRequest, body []byte) (*reply, error) {
	rep := &reply{id: s.newID("chatcmpl-sim-"), model: req.Model}
	if s.opts.Mode != ModeSynthetic {
		if h := s.replay.lookup(req.Messages, s.redacted); h.rec != nil {
			rep.match = h.match
			if d, ok := s.opts.Candidates[req.Model]; ok {
				s.candidateReply(rep, req, h, d)
			} else {
				model := req.Model
				if m, ok := s.models[model]; ok {
					model = m
				}
				a, i := h.answer(model)
				rep.msg, rep.finish, rep.replayedModel = a.Message, a.FinishReason, a.Model
				// Another model's answer, or one recorded for another conversation (its
				// system prompt changed, or before redaction), is not what this model
				// answered to this one.
				rep.simulated = a.Model != model || h.match != MatchExact
				if h.redacted == nil {
					rep.usage = h.rec.usage(s, i)
				} else {
					rep.usage = makeUsage(0, s.completionTokens(a.Message))
				}
			}
			if h.match != MatchExact {
				// The recorded prompt is not the one sent: count the one sent.
				rep.usage = makeUsage(s.counter.Prompt(req), rep.usage.CompletionTokens)
			}
			return rep, nil
		}
		if s.opts.Unknown != UnknownSynthetic {
			return nil, &apiError{status: http.StatusNotFound, typ: openai.TypeInvalidRequest, code: CodeNoRecordedAnswer,
				msg: "no recorded answer for this conversation (the simulator replays recorded calls only; " +
					"run it with unknown=synthetic to invent answers)"}
		}
	}
	msg, finish, err := s.invent(req, parallelToolCalls(body))
	if err != nil {
		return nil, err
	}
	rep.msg, rep.finish, rep.simulated = msg, finish, true
	rep.usage = makeUsage(s.counter.Prompt(req), s.completionTokens(msg))
	return rep, nil
}

// candidateReply answers a candidate model with the recorded reference answer (as
// redacted, for a redacted match), degraded at the candidate's rate. The answer is
// never the candidate's own, so it is always marked simulated. The draw is keyed by
// the recording, not the request, so a request that found it another way (without its
// system messages, as an in-context variant does, or redacted) degrades exactly as the
// recorded conversation does.
func (s *Server) candidateReply(rep *reply, req *openai.ChatRequest, h hit, d Degrade) {
	a := h.reference()
	rep.msg, rep.finish, rep.replayedModel = a.Message, a.FinishReason, a.Model
	if h.redacted == nil {
		rep.usage = h.rec.usage(s, 0)
	} else {
		rep.usage = makeUsage(0, s.completionTokens(a.Message))
	}
	rep.simulated = true
	u, pick := degradeDraw(s.opts.Seed, req.Model, h.rec.key)
	if u >= d.Rate {
		return
	}
	rep.msg, rep.finish, rep.degraded = degrade(a.Message, req.Tools, d.Kinds, pick)
	rep.usage = makeUsage(rep.usage.PromptTokens, s.completionTokens(rep.msg))
}

// parallelToolCalls reports whether the request allows parallel tool calls (it does
// unless parallel_tool_calls is false). Only invented answers need to know, so the
// body is decoded a second time only for them.
func parallelToolCalls(body []byte) bool {
	if !bytes.Contains(body, []byte(`"parallel_tool_calls"`)) {
		return true
	}
	var extra chatOptions
	if err := json.Unmarshal(body, &extra); err != nil {
		return true // a mistyped optional field keeps its default
	}
	return extra.ParallelToolCalls == nil || *extra.ParallelToolCalls
}

// complete writes a non-streamed chat.completion after the modelled latency.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, rep *reply, cut bool) error {
	delay := s.jitter(s.opts.Latency.TTFT)
	if tps := s.opts.Latency.TokensPerSecond; tps > 0 {
		delay += s.jitter(time.Duration(float64(rep.usage.CompletionTokens) / tps * float64(time.Second)))
	}
	if err := s.sleep(r.Context(), delay); err != nil {
		return errHandled // the client is gone
	}
	usage := rep.usage
	body, err := marshal(openai.ChatCompletion{
		ID:      rep.id,
		Object:  "chat.completion",
		Created: s.now().Unix(),
		Model:   rep.model,
		Choices: []openai.Choice{{Index: 0, Message: rep.msg, FinishReason: rep.finish}},
		Usage:   &usage,
		// Simulated marks what HeaderSimulated marks (see there).
		Simulated: rep.simulated,
	})
	if err != nil {
		return fmt.Errorf("sim: encode completion: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	if cut {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:1+s.rng.IntN(len(body)-1)])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(body)
	return nil
}

// jitter scales d by a seeded factor in [1-Jitter, 1+Jitter].
func (s *Server) jitter(d time.Duration) time.Duration {
	j := s.opts.Latency.Jitter
	if d <= 0 || j == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + j*(2*s.rng.Float64()-1)))
}

func (s *Server) newID(prefix string) string {
	return fmt.Sprintf("%s%016x", prefix, s.rng.Uint64())
}

// marshal encodes v as one line of JSON without HTML escaping, as OpenAI writes it.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
