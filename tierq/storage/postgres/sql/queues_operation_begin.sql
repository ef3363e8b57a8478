-- 1 when this call inserted the key (it owns the operation); an empty answer means the
-- call that inserted it is still running.
INSERT INTO bulk_operations (tenant, key, answer, created_at) VALUES ($1, $2, '', $3)
ON CONFLICT (tenant, key) DO NOTHING
RETURNING 1
