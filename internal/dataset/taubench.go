package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/downshift-dev/downshift/internal/openai"
)

// TauTrajectory is one recorded tau-bench conversation between a simulated user and a
// tool-calling agent, in tau-bench's historical_trajectories record shape.
type TauTrajectory struct {
	TaskID int     `json:"task_id"`
	Trial  int     `json:"trial"`
	Reward float64 `json:"reward"`
	Info   TauInfo `json:"info"`
	// Traj is the conversation as OpenAI chat messages (system, user, assistant with
	// tool_calls, tool), exactly as recorded.
	Traj []json.RawMessage `json:"traj"`
}

// TauInfo is the part of a trajectory's info that the bundle keeps: the task.
type TauInfo struct {
	Task TauTask `json:"task"`
}

// TauTask is the user's task and its ground-truth actions.
type TauTask struct {
	UserID      string      `json:"user_id"`
	Instruction string      `json:"instruction"`
	Actions     []TauAction `json:"actions"`
	Outputs     []string    `json:"outputs"`
}

// TauAction is one ground-truth tool call of a task.
type TauAction struct {
	Name   string          `json:"name"`
	Kwargs json.RawMessage `json:"kwargs"`
}

// Tau is a tau-bench domain: recorded trajectories and the tools the agent had.
type Tau struct {
	// Domain is "airline".
	Domain       string
	Trajectories []TauTrajectory
	// Tools is the OpenAI tools list the agent was given, as recorded.
	Tools json.RawMessage
}

// ReadTau reads trajectories (a JSON array, plain or gzip-compressed) and the tools
// list (a JSON array).
func ReadTau(domain string, trajectories, tools io.Reader) (*Tau, error) {
	tr, err := maybeGunzip(trajectories)
	if err != nil {
		return nil, fmt.Errorf("dataset: tau-bench trajectories: %w", err)
	}
	var trajs []TauTrajectory
	if err := json.NewDecoder(tr).Decode(&trajs); err != nil {
		return nil, fmt.Errorf("dataset: decode tau-bench trajectories: %w", err)
	}
	toolBytes, err := io.ReadAll(tools)
	if err != nil {
		return nil, fmt.Errorf("dataset: read tau-bench tools: %w", err)
	}
	var check []openai.Tool
	if err := json.Unmarshal(toolBytes, &check); err != nil {
		return nil, fmt.Errorf("dataset: decode tau-bench tools: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, toolBytes); err != nil {
		return nil, fmt.Errorf("dataset: compact tau-bench tools: %w", err)
	}
	return &Tau{Domain: domain, Trajectories: trajs, Tools: compact.Bytes()}, nil
}

// LoadTau reads a domain from tau-bench's upstream layout under dir (as in
// $DOWNSHIFT_DATA/tau-bench): historical_trajectories/gpt-4o-<domain>.json and
// envs/<domain>/tools_openai.json.
func LoadTau(dir, domain string) (*Tau, error) {
	tf, err := os.Open(filepath.Join(dir, "historical_trajectories", "gpt-4o-"+domain+".json"))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer tf.Close()
	toolf, err := os.Open(filepath.Join(dir, "envs", domain, "tools_openai.json"))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer toolf.Close()
	return ReadTau(domain, bufio.NewReader(tf), toolf)
}

// ToolList decodes the tools list.
func (t *Tau) ToolList() ([]openai.Tool, error) {
	var tools []openai.Tool
	if err := json.Unmarshal(t.Tools, &tools); err != nil {
		return nil, fmt.Errorf("dataset: decode tau-bench tools: %w", err)
	}
	return tools, nil
}

// TauCalls turns every assistant turn of every trajectory into one Call: the request
// holds model gpt-4o, the messages before the turn (system prompt included) and the
// tools; the answer is the assistant message GPT-4o gave, tool_call ids kept.
func TauCalls(t *Tau) ([]Call, error) {
	tools, err := t.ToolList()
	if err != nil {
		return nil, err
	}
	name := "taubench-" + t.Domain
	var calls []Call
	for _, tr := range t.Trajectories {
		msgs := make([]openai.Message, len(tr.Traj))
		for i, raw := range tr.Traj {
			var m recordedMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("dataset: task %d trial %d message %d: %w", tr.TaskID, tr.Trial, i, err)
			}
			msgs[i] = m.message()
		}
		for i, m := range msgs {
			if m.Role != "assistant" {
				continue
			}
			if i == 0 {
				return nil, fmt.Errorf("dataset: task %d trial %d: %w", tr.TaskID, tr.Trial, errLeadingAssistant)
			}
			calls = append(calls, Call{
				ID:      fmt.Sprintf("%s/%d/%d/%d", name, tr.TaskID, tr.Trial, i),
				Dataset: name,
				Request: openai.ChatRequest{
					Model:    ModelGPT4o,
					Messages: msgs[:i:i],
					Tools:    tools,
				},
				Answers: []Answer{{
					Model:        ModelGPT4o,
					Message:      m,
					FinishReason: finishReason(m),
				}},
				rawMessages: tr.Traj[:i:i],
				rawTools:    t.Tools,
			})
		}
	}
	return calls, nil
}

var errLeadingAssistant = errors.New("conversation starts with an assistant message")

// maybeGunzip returns r, decompressed when it starts with the gzip magic bytes.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}
