-- ?1: JSON array of idempotency keys.
SELECT idempotency_key, tenant, id FROM tasks
WHERE idempotency_key IN (SELECT value FROM json_each(?1))
