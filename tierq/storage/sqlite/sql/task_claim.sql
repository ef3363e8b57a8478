-- :owner, :now, :horizon, :limit. Each half walks its partial index (tasks_ready /
-- tasks_delayed in 001_init.sql) in order and stops after :limit rows; the union is cut to
-- :limit in run order. INDEXED BY because without ANALYZE statistics the planner prefers
-- tasks_state_id and sorts every queued task; it also makes the statement fail loudly if a
-- WHERE term here stops matching the partial index's WHERE (they must stay identical).
-- Due scheduled tasks become queued as they are claimed; later ones stay scheduled, leased.
UPDATE tasks SET
    lease_owner = :owner,
    state = CASE WHEN state = 'scheduled' AND run_at <= :now THEN 'queued' ELSE state END,
    updated_at = CASE WHEN state = 'scheduled' AND run_at <= :now THEN :now ELSE updated_at END
WHERE id IN (
    SELECT id FROM (
        SELECT id, priority, run_at FROM (
            SELECT id, priority, run_at FROM tasks INDEXED BY tasks_ready
            WHERE lease_owner IS NULL AND state = 'queued' AND run_at <= :now
            ORDER BY priority DESC, run_at, id
            LIMIT :limit
        )
        UNION ALL
        SELECT id, priority, run_at FROM (
            SELECT id, priority, run_at FROM tasks INDEXED BY tasks_delayed
            WHERE lease_owner IS NULL AND state = 'scheduled' AND run_at <= :now + :horizon
            ORDER BY run_at
            LIMIT :limit
        )
    )
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner
