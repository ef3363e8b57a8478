-- ?1 now, ?2 JSON array of ids. A fresh retry budget starts at the current attempt;
-- last_error is kept so the dashboard still shows why it failed before.
UPDATE tasks SET
    state = 'queued',
    run_at = ?1,
    updated_at = ?1,
    finished_at = NULL,
    lease_owner = NULL,
    attempt_base = attempt
WHERE id IN (SELECT value FROM json_each(?2))
  AND state IN ('failed', 'cancelled')
RETURNING id
