-- Replay from the dead letter: a fresh retry budget (attempt_base = attempt); last_error kept.
UPDATE tasks SET state = 'queued', run_at = $2, updated_at = $2, finished_at = NULL,
                 lease_owner = NULL, attempt_base = attempt
WHERE id = ANY($1::uuid[]) AND state IN ('failed', 'cancelled')
RETURNING id
