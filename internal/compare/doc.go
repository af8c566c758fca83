// Package compare scores a candidate model's answer against a reference answer: tool
// calls (function names, arguments exact and lenient, parallel calls as a set, BFCL's
// possible answers with their alternatives), JSON answers (validity, field-level F1)
// and text (exact match, token F1, ROUGE-L), each with a pass verdict. With a Schemas
// cache it also checks schema validity: a call's arguments against the called tool's
// parameters schema, a JSON answer against response_format's json_schema. Schemas
// are compiled once per distinct schema (JSON Schema, draft 2020-12 by default) and
// never load a referenced document, local or remote.
//
// It is shared by offline evaluation and, later, the gateway's shadow traffic and
// guards, so it is pure, fast and allocation-light, and imports no cold-path package.
// It is not an evaluator: it does not call models, pick samples, aggregate over a
// workload or decide whether a candidate is good enough; it does not judge free text
// semantically (no LLM-as-judge: the text verdict is a ROUGE-L threshold an evaluator
// may replace with a judge's).
package compare
