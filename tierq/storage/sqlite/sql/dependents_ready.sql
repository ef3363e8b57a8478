-- ?1 now, ?2 JSON array of finished ids. Pending dependents of those whose every dependency
-- has succeeded become queued, or scheduled when their run_at is still ahead. A dependency
-- that does not exist counts as not succeeded.
UPDATE tasks SET
    state = CASE WHEN run_at > ?1 THEN 'scheduled' ELSE 'queued' END,
    updated_at = ?1
WHERE state = 'pending'
  AND id IN (
    SELECT task_id FROM task_dependencies
    WHERE depends_on_id IN (SELECT value FROM json_each(?2))
  )
  AND NOT EXISTS (
    SELECT 1 FROM task_dependencies d LEFT JOIN tasks p ON p.id = d.depends_on_id
    WHERE d.task_id = tasks.id AND (p.state IS NULL OR p.state <> 'succeeded')
  )
RETURNING
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner,
    schedule_id, scheduled_for, tenant, breaker, request_id, traceparent
