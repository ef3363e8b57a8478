-- The key whose current or previous secret has this hash.
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE secret_hash = $1 OR previous_hash = $1
