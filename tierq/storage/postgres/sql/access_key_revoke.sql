-- Revoke (a revoked key keeps its first revocation time).
UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
RETURNING id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
