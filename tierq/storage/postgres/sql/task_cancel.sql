-- Running tasks are cancelled through their worker, never here.
UPDATE tasks SET state = 'cancelled', updated_at = $2, finished_at = $2, lease_owner = NULL
WHERE id = ANY($1::uuid[]) AND state IN ('pending', 'scheduled', 'queued')
RETURNING id
