// Package report turns recorded calls and the workloads discovery grouped them into
// the per-workload figures a person decides with: volume, tokens, cost and its share,
// latency, what the answers look like (tool calls, JSON, text), which tools, how varied
// the prompts are, an SLM-readiness score with the reasons behind it, and what the
// cheapest configured candidate would save each month. It renders them as a terminal
// table, JSON and a self-contained HTML page with charts.
//
// It is cold-path code: it runs over calls already in the store and never on a request.
// It does not group calls (package discover does) nor decide what to shift (the
// operator, and later the eval and shift steps, do): it measures and explains.
package report
