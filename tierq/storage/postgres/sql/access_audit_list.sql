-- One page, newest first, of the rows matching the filters (NULL: no condition).
SELECT seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash
FROM audit_log
WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR actor = $2)
  AND ($3::text IS NULL OR action = $3)
  AND ($4::text IS NULL OR resource_type = $4) AND ($5::text IS NULL OR resource_id = $5)
  AND ($6::float8 IS NULL OR at >= $6) AND ($7::float8 IS NULL OR at < $7)
  AND ($8::bigint IS NULL OR seq < $8)
ORDER BY seq DESC LIMIT $9
