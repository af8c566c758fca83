package dataset

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// GSM8KRow is one GSM8K question with GPT-4's and Mixtral-8x7B's full answers and
// whether each was correct, from RouteLLM's evaluation data. Its JSON form is one line
// of the bundled gsm8k.jsonl.gz.
type GSM8KRow struct {
	Prompt         string `json:"prompt"`
	GPT4Answer     string `json:"gpt4_answer"`
	GPT4Correct    bool   `json:"gpt4_correct"`
	MixtralAnswer  string `json:"mixtral_answer"`
	MixtralCorrect bool   `json:"mixtral_correct"`
}

// Upstream column names of RouteLLM's gsm8k_responses.csv.
const (
	colPrompt          = "prompt"
	colGPT4Correct     = ModelGPT4
	colGPT4Answer      = ModelGPT4 + "_response"
	colMixtralCorrect  = ModelMixtral
	colMixtralResponse = ModelMixtral + "_response"
)

// ReadGSM8KCSV reads RouteLLM's gsm8k/gsm8k_responses.csv.
func ReadGSM8KCSV(r io.Reader) ([]GSM8KRow, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("dataset: gsm8k csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, want := range []string{colPrompt, colGPT4Correct, colGPT4Answer, colMixtralCorrect, colMixtralResponse} {
		if _, ok := col[want]; !ok {
			return nil, fmt.Errorf("dataset: gsm8k csv: no column %q", want)
		}
	}
	var rows []GSM8KRow
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dataset: gsm8k csv: %w", err)
		}
		gpt4OK, err := strconv.ParseBool(rec[col[colGPT4Correct]])
		if err != nil {
			return nil, fmt.Errorf("dataset: gsm8k csv record %d: %s: %w", line, colGPT4Correct, err)
		}
		mixtralOK, err := strconv.ParseBool(rec[col[colMixtralCorrect]])
		if err != nil {
			return nil, fmt.Errorf("dataset: gsm8k csv record %d: %s: %w", line, colMixtralCorrect, err)
		}
		rows = append(rows, GSM8KRow{
			Prompt:         rec[col[colPrompt]],
			GPT4Answer:     rec[col[colGPT4Answer]],
			GPT4Correct:    gpt4OK,
			MixtralAnswer:  rec[col[colMixtralResponse]],
			MixtralCorrect: mixtralOK,
		})
	}
}

// ReadGSM8K reads GSM8K rows as JSON lines, plain or gzip-compressed.
func ReadGSM8K(r io.Reader) ([]GSM8KRow, error) {
	zr, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("dataset: gsm8k: %w", err)
	}
	dec := json.NewDecoder(zr)
	dec.DisallowUnknownFields()
	var rows []GSM8KRow
	for {
		var row GSM8KRow
		err := dec.Decode(&row)
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dataset: gsm8k row %d: %w", len(rows)+1, err)
		}
		rows = append(rows, row)
	}
}

// LoadGSM8K reads GSM8K rows from a file: RouteLLM's CSV when the name ends in .csv,
// else JSON lines (optionally gzip-compressed).
func LoadGSM8K(path string) ([]GSM8KRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	if strings.HasSuffix(path, ".csv") {
		return ReadGSM8KCSV(bufio.NewReader(f))
	}
	return ReadGSM8K(f)
}

// GSM8KCalls turns each row into one Call with a single user message (the question);
// the answers are GPT-4's (the reference) and Mixtral-8x7B's, each with its verdict.
func GSM8KCalls(rows []GSM8KRow) ([]Call, error) {
	calls := make([]Call, 0, len(rows))
	for i, row := range rows {
		raw, err := json.Marshal(struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		}{"user", row.Prompt})
		if err != nil {
			return nil, fmt.Errorf("dataset: gsm8k row %d: %w", i, err)
		}
		gpt4OK, mixtralOK := row.GPT4Correct, row.MixtralCorrect
		calls = append(calls, Call{
			ID:      fmt.Sprintf("gsm8k/%d", i),
			Dataset: "gsm8k",
			Request: openai.ChatRequest{
				Model:    ModelGPT4,
				Messages: []openai.Message{{Role: "user", Content: openai.TextContent(row.Prompt)}},
			},
			Answers: []Answer{
				{Model: ModelGPT4, Message: assistantText(row.GPT4Answer), FinishReason: "stop", Correct: &gpt4OK},
				{Model: ModelMixtral, Message: assistantText(row.MixtralAnswer), FinishReason: "stop", Correct: &mixtralOK},
			},
			rawMessages: []json.RawMessage{raw},
		})
	}
	return calls, nil
}

func assistantText(s string) openai.Message {
	return openai.Message{Role: "assistant", Content: openai.TextContent(s)}
}
