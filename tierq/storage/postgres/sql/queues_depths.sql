-- Live and dead-lettered tasks per queue (finished tasks are not walked).
SELECT queue, state, count(*),
       extract(epoch FROM min(run_at) FILTER (WHERE state = 'queued'))::float8
FROM tasks
WHERE state IN ('pending', 'scheduled', 'queued', 'running', 'failed')
  AND ($1::text IS NULL OR tenant = $1)
GROUP BY queue, state
