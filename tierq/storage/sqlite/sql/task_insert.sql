-- ON CONFLICT DO NOTHING (not INSERT OR IGNORE): only a duplicate id or idempotency key is
-- skipped; a NOT NULL violation still fails the batch instead of dropping the row silently.
-- {rows}: groups of 29 parameters (batches.py), one per task, in ``tasks`` column order
-- (rows.task_params).
INSERT INTO tasks (
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner,
    schedule_id, scheduled_for, tenant, breaker, request_id, traceparent
) VALUES {rows}
ON CONFLICT DO NOTHING
