SELECT scheduled_for, created_at, id, state, idempotency_key
FROM tasks
WHERE schedule_id = $1 AND ($2::timestamptz IS NULL OR scheduled_for < $2)
ORDER BY scheduled_for DESC LIMIT $3
