INSERT INTO queue_controls (queue, paused, max_running, rate_limit, rate_per_s, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (queue) DO UPDATE SET
    paused = excluded.paused, max_running = excluded.max_running,
    rate_limit = excluded.rate_limit, rate_per_s = excluded.rate_per_s,
    updated_at = excluded.updated_at
