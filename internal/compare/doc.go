// Package compare scores a candidate model's answer against a reference answer: tool
// calls (function names, arguments exact and lenient, parallel calls as a set, BFCL's
// possible answers with their alternatives), JSON answers (field-level F1) and text
// (exact match, token F1, ROUGE-L).
//
// It is shared by offline evaluation and, later, the gateway's shadow traffic, so it is
// pure, fast and allocation-light, and imports no cold-path package. It is not an
// evaluator: it does not call models, pick samples, aggregate over a workload or decide
// whether a candidate is good enough; it does not validate answers against a JSON
// schema (later) and it does not judge free text semantically (no LLM-as-judge).
package compare
