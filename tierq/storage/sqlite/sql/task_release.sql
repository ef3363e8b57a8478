-- ?1 owner, ?2 JSON array of ids. Running tasks keep their lease: their worker holds them.
-- Reached by primary key (the ids); the state term repeats task_release_all.sql.
UPDATE tasks SET lease_owner = NULL
WHERE id IN (SELECT value FROM json_each(?2))
  AND lease_owner = ?1
  AND state IN ('pending', 'scheduled', 'queued')
