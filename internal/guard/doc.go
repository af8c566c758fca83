// Package guard checks a candidate model's answer before the client sees it, in canary
// and serve modes: the answer is valid JSON where JSON was asked for and its tool
// calls' arguments are JSON objects (json_valid); it matches response_format's
// json_schema and each call's arguments match the called tool's parameters
// (schema_valid); every called tool is one the request offers, and tool_choice and
// parallel_tool_calls are respected (tool_known); it says something or calls a tool
// (not_empty); it is not a refusal (not_refusal); and it finished normally
// (finish_reason). Each check can be turned off; each failure names its check and says
// why in words that carry nothing of the answer beyond a tool's name and the byte
// offset of a JSON syntax error.
//
// A Request holds what the checks need from the request: the tools with their
// parameter schemas, tool_choice, parallel_tool_calls and response_format. The gateway
// reads it with ReadRequest from the body its scan (openai.ScanChatRequest) has
// accepted: one more pass that skips the conversation (about 13 µs on a 20 KB
// tau-bench request); offline code builds it from a decoded request with RequestOf. Schemas are compiled and cached by internal/compare's Schemas, which the
// gateway can share with shadow scoring.
//
// Streams: a stream that has to be checked whole (Request.HoldStream: tools offered or
// JSON asked for) is held by the gateway, reassembled with openai.Accumulator, and
// checked with Check on the Accumulator's Completion; a stream cut off before its
// finish_reason fails finish_reason.
//
// It is a hot-path package: pure, safe for concurrent use, allocation-light on answers
// that pass, and it imports no cold-path package. It is not the escalation: it does not
// call models, hold or relay streams, decide routes or count metrics; the gateway does,
// from the Result.
package guard
