-- :owner, :now, :ids (JSON array of the ids task_claim_pick.sql chose, in the same write
-- transaction). Due scheduled tasks become queued as they are claimed; later ones stay
-- scheduled, leased. The claimed rows are read back with task_rows_json.sql (RETURNING
-- would step once per row).
UPDATE tasks SET
    lease_owner = :owner,
    state = CASE WHEN state = 'scheduled' AND run_at <= :now THEN 'queued' ELSE state END,
    updated_at = CASE WHEN state = 'scheduled' AND run_at <= :now THEN :now ELSE updated_at END
WHERE id IN (SELECT value FROM json_each(:ids))
