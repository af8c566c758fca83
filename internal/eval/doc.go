// Package eval measures how well candidate models do a workload's job: it draws eval
// sets (held-out calls, deduplicated, stratified by what the reference did, split
// into train, validation and test with a fixed seed, saved), replays the test calls
// against candidates with bounded concurrency, retries and resumption, scores every
// answer with package compare (and optionally an LLM judge), and ranks the candidates
// on a leaderboard with a recommendation.
//
// It is cold-path code: the gateway never imports it. It does not record calls, decide
// routing or serve traffic; the shift stage acts on what it recommends.
package eval
