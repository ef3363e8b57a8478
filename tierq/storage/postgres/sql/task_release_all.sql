UPDATE tasks SET lease_owner = NULL WHERE lease_owner = $1 AND state <> 'running'
