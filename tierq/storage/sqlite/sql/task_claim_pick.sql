-- :now, :horizon, :limit. The tasks a claim takes, with their state before it (the store
-- counts the scheduled ones that the claim promotes to queued). Each half walks its partial
-- index (tasks_ready / tasks_delayed in 001_init.sql) in order and stops after :limit rows;
-- the union is cut to :limit in run order. INDEXED BY because without ANALYZE statistics
-- the planner prefers tasks_state_id and sorts every queued task; it also makes the
-- statement fail loudly if a WHERE term here stops matching the partial index's WHERE
-- (they must stay identical).
SELECT id, state, run_at FROM (
    SELECT id, state, priority, run_at FROM (
        SELECT id, state, priority, run_at FROM tasks INDEXED BY tasks_ready
        WHERE lease_owner IS NULL AND state = 'queued' AND run_at <= :now
        ORDER BY priority DESC, run_at, id
        LIMIT :limit
    )
    UNION ALL
    SELECT id, state, priority, run_at FROM (
        SELECT id, state, priority, run_at FROM tasks INDEXED BY tasks_delayed
        WHERE lease_owner IS NULL AND state = 'scheduled' AND run_at <= :now + :horizon
        ORDER BY run_at
        LIMIT :limit
    )
)
ORDER BY priority DESC, run_at, id
LIMIT :limit
