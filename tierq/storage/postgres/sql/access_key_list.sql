-- Keys of the tenant $1 (NULL: every tenant), oldest first.
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id
