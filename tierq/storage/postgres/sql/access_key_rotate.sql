-- A new secret for a live key; the current one is kept as previous until $5.
UPDATE api_keys SET previous_hash = secret_hash, previous_until = $5, secret_hash = $3,
    prefix = $4
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) AND revoked_at IS NULL
RETURNING id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
