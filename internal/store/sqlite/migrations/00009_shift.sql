-- What a workload's shift policy did with each call (issue 6): the mode and policy
-- version it was decided under, the guards' verdict on the candidate's answer, the
-- second answer (a shadow's, a verification's, or an escalation's refused one: its
-- cost and comparison, never its payload) and what the reference would have cost, so
-- that savings can be summed from the calls alone. second_kind is '' when there is no
-- second answer; agreement is NULL when nothing was compared.

-- +goose Up
ALTER TABLE calls ADD COLUMN mode TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN candidate TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN guard TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN second_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN second_model TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN second_status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN second_error TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN second_prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN second_completion_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN second_latency_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN second_cost_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN second_simulated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN agreement REAL;
ALTER TABLE calls ADD COLUMN agreement_pass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN reference_cost_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN reference_cost_estimated INTEGER NOT NULL DEFAULT 0;
-- Calls recorded before this migration were all answered by the model they asked for.
UPDATE calls SET reference_cost_usd = cost_usd;

-- +goose Down
ALTER TABLE calls DROP COLUMN reference_cost_estimated;
ALTER TABLE calls DROP COLUMN reference_cost_usd;
ALTER TABLE calls DROP COLUMN agreement_pass;
ALTER TABLE calls DROP COLUMN agreement;
ALTER TABLE calls DROP COLUMN second_simulated;
ALTER TABLE calls DROP COLUMN second_cost_usd;
ALTER TABLE calls DROP COLUMN second_latency_us;
ALTER TABLE calls DROP COLUMN second_completion_tokens;
ALTER TABLE calls DROP COLUMN second_prompt_tokens;
ALTER TABLE calls DROP COLUMN second_error;
ALTER TABLE calls DROP COLUMN second_status;
ALTER TABLE calls DROP COLUMN second_model;
ALTER TABLE calls DROP COLUMN second_kind;
ALTER TABLE calls DROP COLUMN guard;
ALTER TABLE calls DROP COLUMN candidate;
ALTER TABLE calls DROP COLUMN policy_version;
ALTER TABLE calls DROP COLUMN mode;
