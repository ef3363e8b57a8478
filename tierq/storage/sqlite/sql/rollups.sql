-- name: add
INSERT INTO task_rollups (minute, node, tenant, body) VALUES (?1, ?2, ?3, ?4)

-- name: read
SELECT minute, node, tenant, body FROM task_rollups
WHERE minute >= ?1 AND minute < ?2 AND (?3 IS NULL OR tenant = ?3)

-- name: forget
DELETE FROM task_rollups WHERE minute < ?1
