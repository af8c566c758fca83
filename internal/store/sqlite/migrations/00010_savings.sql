-- The savings report (`downshift report`, store.SavingsStore) sums the gateway's calls
-- per workload and route and takes each route's median latency. The columns it reads
-- come after the payloads in every row (migrations 00004 and 00009 appended them), so
-- reading them from the table reads every payload too: this index holds them all, so
-- the report reads the index alone. It is ordered by the workload key (workload_id,
-- else the client's tag, else '(none)': the expression must stay exactly the one in
-- sqlite/savings.go, or SQLite will not use the index for it), then route and
-- latency, so that grouping needs no sort and a median is a seek to the middle.

-- +goose Up
CREATE INDEX calls_savings ON calls (
    source,
    (CASE WHEN workload_id != '' THEN workload_id WHEN workload != '' THEN workload ELSE '(none)' END),
    route, latency_us, started_at,
    workload_id, workload, mode, second_kind, agreement, agreement_pass, guard,
    cost_usd, second_cost_usd, reference_cost_usd, reference_cost_estimated,
    simulated, second_simulated, status
);

-- +goose Down
DROP INDEX calls_savings;
