-- ?1 now, ?2 JSON array of ids. Running tasks are cancelled through their worker instead.
UPDATE tasks SET
    state = 'cancelled',
    updated_at = ?1,
    finished_at = ?1,
    lease_owner = NULL
WHERE id IN (SELECT value FROM json_each(?2))
  AND state IN ('pending', 'scheduled', 'queued')
RETURNING id
