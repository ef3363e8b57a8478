-- Pending dependents of the finished tasks: all dependencies succeeded -> queued (scheduled
-- when run_at is still ahead); any dependency failed or cancelled -> cancelled, with
-- last_error naming it (the lowest such id). A dependency that is unknown or still live
-- keeps the dependent pending.
WITH cand AS (
    SELECT DISTINCT task_id FROM task_dependencies WHERE depends_on_id = ANY($1::uuid[])
), verdict AS (
    SELECT d.task_id,
           (array_agg('dependency ' || dep.id || ' ' || dep.state ORDER BY dep.id)
               FILTER (WHERE dep.state IN ('failed', 'cancelled')))[1] AS reason,
           bool_and(coalesce(dep.state = 'succeeded', false)) AS ready
    FROM cand
    JOIN task_dependencies AS d ON d.task_id = cand.task_id
    LEFT JOIN tasks AS dep ON dep.id = d.depends_on_id
    GROUP BY d.task_id
)
UPDATE tasks AS t SET
    state = CASE WHEN v.reason IS NOT NULL THEN 'cancelled'
                 WHEN t.run_at > $2 THEN 'scheduled'
                 ELSE 'queued' END,
    updated_at = $2,
    finished_at = CASE WHEN v.reason IS NOT NULL THEN $2 ELSE t.finished_at END,
    last_error = coalesce(v.reason, t.last_error)
FROM verdict AS v
WHERE t.id = v.task_id AND t.state = 'pending' AND (v.reason IS NOT NULL OR v.ready)
RETURNING t.id, t.type, t.queue, t.priority, t.payload, t.state, t.run_at, t.created_at,
          t.updated_at, t.max_retries, t.timeout_s, t.attempt, t.attempt_base, t.name,
          t.description, t.idempotency_key, t.depends_on, t.notify, t.result, t.last_error,
          t.started_at, t.finished_at, t.lease_owner,
          t.schedule_id, t.scheduled_for, t.tenant, t.breaker, t.request_id,
          t.traceparent
