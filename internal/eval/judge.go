package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/openai"
)

// Judge grades a candidate's free-text answer against the reference's with a model
// (usually the reference model itself) and a rubric: a score from 1 to 10 and a
// pass/fail verdict, with the judge's reasoning kept. It is for text answers, where
// token overlap (ROUGE-L) says little about whether an answer is right; tool calls
// and JSON are scored exactly by package compare.
type Judge struct {
	Model *backend.Model
	// Rubric is the judge's system prompt; empty means DefaultRubric.
	Rubric string
	// PassScore is the lowest score that passes when the judge gives a score but no
	// verdict. Default 7.
	PassScore int
}

// DefaultRubric asks for a strict comparison with the reference and a JSON verdict.
const DefaultRubric = `You grade an AI assistant's answer against a reference answer to the same conversation.
The reference answer is correct. Judge whether the candidate answer would serve the user as well:
the same facts, the same decision or next step, nothing wrong or missing that matters. Wording,
length and style do not matter. Reply with one JSON object and nothing else:
{"score": <integer 1-10, 10 = as good as the reference>, "pass": <true if it can replace the reference>, "reasoning": "<one or two sentences>"}`

// JudgeVerdict is the judge's grade of one answer.
type JudgeVerdict struct {
	Model     string `json:"model"`
	Score     int    `json:"score,omitempty"` // 1-10
	Pass      bool   `json:"pass"`
	Reasoning string `json:"reasoning,omitempty"`
	// Error says why no grade was given (the judge failed or answered no verdict);
	// the call's verdict then falls back to package compare's.
	Error string `json:"error,omitempty"`
}

// judgeContextBytes caps how much of the conversation the judge is shown.
const judgeContextBytes = 4000

// Grade asks the judge about one answer. It does not retry: a failed grade is
// reported in the verdict's Error.
func (j *Judge) Grade(ctx context.Context, c *Call, candidate *openai.Message) JudgeVerdict {
	v := JudgeVerdict{Model: j.Model.Name}
	rubric := j.Rubric
	if rubric == "" {
		rubric = DefaultRubric
	}
	var conv strings.Builder
	for _, m := range c.Req.Messages {
		if m.Role == "system" {
			continue
		}
		fmt.Fprintf(&conv, "%s: %s\n", m.Role, strings.TrimSpace(m.Content.String()))
		for _, tc := range m.ToolCalls {
			fmt.Fprintf(&conv, "%s called %s(%s)\n", m.Role, tc.Function.Name, tc.Function.Arguments)
		}
	}
	history := conv.String()
	if len(history) > judgeContextBytes {
		history = "…" + history[len(history)-judgeContextBytes:]
	}
	user := fmt.Sprintf("Conversation so far (last part):\n%s\nReference answer:\n%s\n\nCandidate answer:\n%s\n",
		history, strings.TrimSpace(c.Answer.Content.String()), strings.TrimSpace(candidate.Content.String()))
	body, err := json.Marshal(map[string]any{
		"model": j.Model.UpstreamName,
		"messages": []map[string]string{
			{"role": "system", "content": rubric},
			{"role": "user", "content": user},
		},
		"temperature":     0,
		"response_format": map[string]string{"type": "json_object"},
	})
	if err != nil {
		v.Error = err.Error()
		return v
	}
	resp, err := j.Model.Backend.Post(ctx, "/chat/completions", body, "application/json")
	if err != nil {
		v.Error = err.Error()
		return v
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		v.Error = err.Error()
		return v
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(raw, &cc); err != nil || len(cc.Choices) == 0 {
		v.Error = "the judge's answer is not a chat completion"
		return v
	}
	if err := parseVerdict(cc.Choices[0].Message.Content.String(), j.passScore(), &v); err != nil {
		v.Error = err.Error()
	}
	return v
}

func (j *Judge) passScore() int {
	if j.PassScore > 0 {
		return j.PassScore
	}
	return 7
}

// parseVerdict reads the judge's JSON (the first object in its text, so a verdict
// wrapped in prose or a code fence still counts).
func parseVerdict(text string, passScore int, v *JudgeVerdict) error {
	start, end := strings.Index(text, "{"), strings.LastIndex(text, "}")
	if start < 0 || end < start {
		return errors.New("the judge gave no JSON verdict")
	}
	var got struct {
		Score     *float64 `json:"score"`
		Pass      *bool    `json:"pass"`
		Reasoning string   `json:"reasoning"`
	}
	if err := json.Unmarshal([]byte(text[start:end+1]), &got); err != nil {
		return fmt.Errorf("the judge's verdict is not valid JSON: %v", err)
	}
	if got.Score == nil && got.Pass == nil {
		return errors.New("the judge's verdict has neither score nor pass")
	}
	v.Reasoning = got.Reasoning
	if got.Score != nil {
		v.Score = min(max(int(*got.Score+0.5), 1), 10)
	}
	if got.Pass != nil {
		v.Pass = *got.Pass
	} else {
		v.Pass = v.Score >= passScore
	}
	return nil
}
