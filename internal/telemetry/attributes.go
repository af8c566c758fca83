package telemetry

import (
	"strconv"
	"time"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/downshift-dev/downshift/internal/store"
)

// operationChat is gen_ai.operation.name, and the first word of the span's name.
const operationChat = "chat"

// providerOpenAI is gen_ai.provider.name for every call. downshift speaks the OpenAI
// chat-completions API to OpenAI-compatible backends (vLLM, NIM, OpenAI itself) and
// cannot know who hosts a model; the conventions let the provider name the API flavour
// ("may proxy or host models from different providers"), leaving gen_ai.request.model,
// gen_ai.response.model and server.address to identify the system. downshift.backend
// names the configured backend.
var providerOpenAI = semconv.GenAIProviderNameOpenAI

// downshift's own attributes.
const (
	keyCallID           = attribute.Key("downshift.call_id")
	keyClientID         = attribute.Key("downshift.client_id")
	keyWorkload         = attribute.Key("downshift.workload")
	keyRoute            = attribute.Key("downshift.route")
	keyEscalated        = attribute.Key("downshift.escalated")
	keyBackend          = attribute.Key("downshift.backend")
	keyMode             = attribute.Key("downshift.mode")
	keyPolicyVersion    = attribute.Key("downshift.policy_version")
	keyCandidate        = attribute.Key("downshift.candidate")
	keyGuard            = attribute.Key("downshift.guard")
	keyCostUSD          = attribute.Key("downshift.cost_usd")
	keyReferenceCostUSD = attribute.Key("downshift.reference_cost_usd")
	keyReferenceCostEst = attribute.Key("downshift.reference_cost_estimated")
	keyTokensEstimated  = attribute.Key("downshift.tokens_estimated")
	keySimulated        = attribute.Key("downshift.simulated")
	keyTTFTMillis       = attribute.Key("downshift.ttft_ms")
	keySecondKind       = attribute.Key("downshift.second.kind")
	keySecondModel      = attribute.Key("downshift.second.model")
	keySecondAgreement  = attribute.Key("downshift.second.agreement")
	keySecondPass       = attribute.Key("downshift.second.pass")
	keySecondCostUSD    = attribute.Key("downshift.second.cost_usd")
	keySecondError      = attribute.Key("downshift.second.error")
)

// callAttributes appends to a the attributes of c's span besides those given at its start
// (gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model). Only what the
// record holds as metadata goes in: never the request, the answer or a key. srv is
// the backend's address when known.
func callAttributes(a []attribute.KeyValue, c *store.Call, srv server, known bool) []attribute.KeyValue {
	a = append(a,
		semconv.GenAIRequestStream(c.Stream),
		semconv.HTTPResponseStatusCode(c.Status),
		keyCallID.String(c.ID),
		keyRoute.String(string(c.Route)),
		keyEscalated.Bool(c.Route == store.RouteEscalated),
		keyCostUSD.Float64(c.CostUSD),
		keyReferenceCostUSD.Float64(c.ReferenceCostUSD),
		keySimulated.Bool(c.Simulated),
	)
	if c.ServedModel != "" {
		a = append(a, semconv.GenAIResponseModel(c.ServedModel))
	}
	if c.Status < 400 || c.PromptTokens+c.CompletionTokens > 0 {
		a = append(a,
			semconv.GenAIUsageInputTokens(c.PromptTokens),
			semconv.GenAIUsageOutputTokens(c.CompletionTokens))
	}
	if c.CachedTokens > 0 {
		a = append(a, semconv.GenAIUsageCacheReadInputTokens(c.CachedTokens))
	}
	if c.TokensEstimated {
		a = append(a, keyTokensEstimated.Bool(true))
	}
	if c.Status < 400 {
		a = appendResponse(a, c.Response)
	} else {
		a = append(a, semconv.ErrorTypeKey.String(errorType(c)))
	}
	if c.TTFT > 0 {
		a = append(a, keyTTFTMillis.Float64(millis(c.TTFT)))
		if c.Stream {
			a = append(a, semconv.GenAIResponseTimeToFirstChunk(c.TTFT.Seconds()))
		}
	}
	if c.Backend != "" {
		a = append(a, keyBackend.String(c.Backend))
		if known {
			a = append(a, semconv.ServerAddress(srv.address))
			if srv.port > 0 {
				a = append(a, semconv.ServerPort(srv.port))
			}
		}
	}
	if c.ClientID != "" {
		a = append(a, keyClientID.String(c.ClientID))
	}
	if w := c.Workload; w != "" {
		a = append(a, keyWorkload.String(w))
	} else if c.WorkloadID != "" {
		a = append(a, keyWorkload.String(c.WorkloadID))
	}
	if c.Mode != "" {
		a = append(a, keyMode.String(c.Mode), keyPolicyVersion.Int(c.PolicyVersion), keyCandidate.String(c.Candidate))
	}
	if c.Guard != "" {
		a = append(a, keyGuard.String(c.Guard))
	}
	if c.ReferenceCostEstimated {
		a = append(a, keyReferenceCostEst.Bool(true))
	}
	if s := c.Second; s != nil {
		a = append(a, keySecondKind.String(s.Kind), keySecondModel.String(s.Model), keySecondCostUSD.Float64(s.CostUSD))
		if s.Compared {
			a = append(a, keySecondAgreement.Float64(s.Agreement), keySecondPass.Bool(s.Pass))
		}
		if s.Error != "" {
			a = append(a, keySecondError.String(s.Error))
		}
	}
	return a
}

// errorType is error.type of a failed call: the OpenAI error type the client got
// ("invalid_request_error", "server_error", "client_closed_request"), else its status.
func errorType(c *store.Call) string {
	if c.ErrorType != "" {
		return c.ErrorType
	}
	return strconv.Itoa(c.Status)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Bounds on what is read from an upstream's answer, so that an odd upstream cannot
// put its text in a span through them.
const (
	maxResponseIDLen   = 128
	maxFinishReasons   = 16
	maxFinishReasonLen = 32
)

// appendResponse adds gen_ai.response.id and gen_ai.response.finish_reasons, read
// from the answer (one chat.completion, a stream reassembled): the answer is already
// in memory, and these are two short lookups. Finish reasons are kept only when they
// look like one (a short lowercase word), so no answer text can pass as one.
func appendResponse(a []attribute.KeyValue, response []byte) []attribute.KeyValue {
	if len(response) == 0 {
		return a
	}
	if id := gjson.GetBytes(response, "id"); id.Type == gjson.String && id.Str != "" && len(id.Str) <= maxResponseIDLen {
		a = append(a, semconv.GenAIResponseID(id.Str))
	}
	var reasons []string
	gjson.GetBytes(response, "choices").ForEach(func(_, choice gjson.Result) bool {
		if r := choice.Get("finish_reason"); r.Type == gjson.String && isWord(r.Str) {
			reasons = append(reasons, r.Str)
		}
		return len(reasons) < maxFinishReasons
	})
	if len(reasons) > 0 {
		a = append(a, semconv.GenAIResponseFinishReasons(reasons...))
	}
	return a
}

// isWord reports whether s is a short word of lowercase letters and underscores, as
// every finish reason is ("stop", "tool_calls", "content_filter").
func isWord(s string) bool {
	if s == "" || len(s) > maxFinishReasonLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
