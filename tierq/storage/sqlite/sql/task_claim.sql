-- :owner, :now, :ids (JSON array of the ids task_claim_pick.sql chose, in the same write
-- transaction). Due scheduled tasks become queued as they are claimed; later ones stay
-- scheduled, leased.
UPDATE tasks SET
    lease_owner = :owner,
    state = CASE WHEN state = 'scheduled' AND run_at <= :now THEN 'queued' ELSE state END,
    updated_at = CASE WHEN state = 'scheduled' AND run_at <= :now THEN :now ELSE updated_at END
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner
