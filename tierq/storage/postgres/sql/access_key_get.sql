-- One key, of the tenant $2 (NULL: any tenant).
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
