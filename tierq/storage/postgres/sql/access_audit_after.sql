-- Rows after seq $1, oldest first (chain verification).
SELECT seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash
FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2
