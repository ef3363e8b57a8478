-- ?1 now, ?2 JSON array of owners or NULL for every owner. attempt is kept: the next run
-- starts attempt + 1, so the dead owner's late report is refused by the fencing rule.
UPDATE tasks SET state = 'queued', lease_owner = NULL, updated_at = ?1
WHERE state = 'running'
  AND (?2 IS NULL OR lease_owner IN (SELECT value FROM json_each(?2)))
