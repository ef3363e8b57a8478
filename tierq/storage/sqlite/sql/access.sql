-- API keys and the audit log (migrations/005_access.sql). Key columns in this order
-- everywhere: tierq/storage/sqlite/access.py reads rows positionally.
-- name: key_insert
INSERT INTO api_keys
    (id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
     revoked_at, previous_hash, previous_until, rate_limits)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
-- name: key_find
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE secret_hash = ?1 OR previous_hash = ?1
-- name: key_get
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)
-- name: key_list
SELECT id, name, role, tenant, secret_hash, prefix, created_at, expires_at, last_used_at,
       revoked_at, previous_hash, previous_until, rate_limits
FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, id
-- name: key_revoke
UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3)
WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)
-- name: key_rotate
UPDATE api_keys SET previous_hash = secret_hash, previous_until = ?5, secret_hash = ?3,
    prefix = ?4
WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2) AND revoked_at IS NULL
-- name: key_touch
UPDATE api_keys SET last_used_at = ?2
WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)
-- name: key_count_live
SELECT count(*) FROM api_keys
WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)
-- name: audit_last
SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1
-- name: audit_insert
INSERT INTO audit_log
    (seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
     status, changes, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
-- name: audit_list
SELECT seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash
FROM audit_log
WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR actor = ?2)
  AND (?3 IS NULL OR action = ?3)
  AND (?4 IS NULL OR resource_type = ?4) AND (?5 IS NULL OR resource_id = ?5)
  AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) AND (?8 IS NULL OR seq < ?8)
ORDER BY seq DESC LIMIT ?9
-- name: audit_after
SELECT seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash
FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?
-- name: audit_trim
DELETE FROM audit_log WHERE at < ?
