-- ?1 JSON array of owners or NULL for every owner. Runs after recover_running.sql, so the
-- owners' running tasks are already queued and unleased; running tasks of other owners are
-- theirs to keep. Terminal tasks hold no lease: the state term lets tasks_state_id reach the
-- leased tasks (there is no lease_owner index: see 002_counts_in_store.sql).
UPDATE tasks SET lease_owner = NULL
WHERE state IN ('pending', 'scheduled', 'queued')
  AND lease_owner IS NOT NULL
  AND (?1 IS NULL OR lease_owner IN (SELECT value FROM json_each(?1)))
