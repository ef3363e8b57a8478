-- ?1 owner, ?2 JSON array of ids. Running tasks keep their lease: their worker holds them.
UPDATE tasks SET lease_owner = NULL
WHERE lease_owner = ?1
  AND state <> 'running'
  AND id IN (SELECT value FROM json_each(?2))
