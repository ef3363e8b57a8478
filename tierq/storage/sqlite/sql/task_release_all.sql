-- ?1 owner. Running tasks keep their lease: their worker holds them.
UPDATE tasks SET lease_owner = NULL
WHERE lease_owner = ?1
  AND state <> 'running'
