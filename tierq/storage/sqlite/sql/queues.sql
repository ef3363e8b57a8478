-- name: controls
SELECT queue, paused, max_running, rate_limit, rate_per_s, updated_at FROM queue_controls

-- name: control_save
INSERT INTO queue_controls (queue, paused, max_running, rate_limit, rate_per_s, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (queue) DO UPDATE SET
    paused = excluded.paused, max_running = excluded.max_running,
    rate_limit = excluded.rate_limit, rate_per_s = excluded.rate_per_s,
    updated_at = excluded.updated_at

-- name: depths
-- Live and dead-lettered tasks per queue (the state index; finished tasks are not walked).
SELECT queue, state, count(*), min(CASE WHEN state = 'queued' THEN run_at END)
FROM tasks
WHERE state IN ('pending', 'scheduled', 'queued', 'running', 'failed')
  AND (?1 IS NULL OR tenant = ?1)
GROUP BY queue, state

-- name: operation
SELECT answer FROM bulk_operations WHERE tenant = ?1 AND key = ?2

-- name: operation_begin
-- An empty answer: the call that inserted it is still running.
INSERT INTO bulk_operations (tenant, key, answer, created_at) VALUES (?1, ?2, X'', ?3)
ON CONFLICT (tenant, key) DO NOTHING

-- name: operation_finish
UPDATE bulk_operations SET answer = ?3 WHERE tenant = ?1 AND key = ?2

-- name: operation_abandon
DELETE FROM bulk_operations WHERE tenant = ?1 AND key = ?2 AND length(answer) = 0

-- name: operations_forget
DELETE FROM bulk_operations
WHERE created_at < ?1 OR (length(answer) = 0 AND created_at < ?2)
