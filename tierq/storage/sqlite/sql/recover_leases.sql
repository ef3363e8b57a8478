-- ?1 JSON array of owners or NULL for every owner. Runs after recover_running.sql, so the
-- owners' running tasks are already queued and unleased; running tasks of other owners are
-- theirs to keep. The two terms match the partial index tasks_lease_owner.
UPDATE tasks SET lease_owner = NULL
WHERE lease_owner IS NOT NULL
  AND state <> 'running'
  AND (?1 IS NULL OR lease_owner IN (SELECT value FROM json_each(?1)))
