-- :now, :horizon, :limit, :skip (a JSON array of queues not to claim from: paused, or
-- holding enough parked tasks in memory already, engine/flow/gate.py). The tasks a claim takes, as ONE row (one sqlite3_step; see
-- task_rows_json.sql): a JSON array of their ids in run order, and how many of them are due
-- scheduled tasks, which the claim promotes to queued (the store counts them). Each half
-- walks its partial index (tasks_ready / tasks_delayed in 001_init.sql) in order and stops
-- after :limit rows; the union is cut to :limit in run order. INDEXED BY because without
-- ANALYZE statistics the planner prefers tasks_state_id and sorts every queued task; it
-- also makes the statement fail loudly if a WHERE term here stops matching the partial
-- index's WHERE (they must stay identical).
SELECT json_group_array(id), coalesce(sum(state = 'scheduled' AND run_at <= :now), 0)
FROM (
    SELECT id, state, run_at FROM (
        SELECT id, state, priority, run_at FROM (
            SELECT id, state, priority, run_at FROM tasks INDEXED BY tasks_ready
            WHERE lease_owner IS NULL AND state = 'queued' AND run_at <= :now
              AND queue NOT IN (SELECT value FROM json_each(:skip))
            ORDER BY priority DESC, run_at, id
            LIMIT :limit
        )
        UNION ALL
        SELECT id, state, priority, run_at FROM (
            SELECT id, state, priority, run_at FROM tasks INDEXED BY tasks_delayed
            WHERE lease_owner IS NULL AND state = 'scheduled' AND run_at <= :now + :horizon
              AND queue NOT IN (SELECT value FROM json_each(:skip))
            ORDER BY run_at
            LIMIT :limit
        )
    )
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
