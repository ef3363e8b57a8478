SELECT minute, node, tenant, body FROM task_rollups
WHERE minute >= $1 AND minute < $2 AND ($3::text IS NULL OR tenant = $3)
