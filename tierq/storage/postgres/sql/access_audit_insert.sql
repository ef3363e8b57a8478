-- Every row of an appended batch in one statement ($1: JSON array of rows).
INSERT INTO audit_log
    (seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash)
SELECT seq, at, actor, tenant, role, action, resource_type, resource_id, request_id, source,
       status, changes, prev_hash, hash
FROM json_to_recordset($1::json) AS r(
    seq bigint, at float8, actor text, tenant text, role text, action text,
    resource_type text, resource_id text, request_id text, source text, status integer,
    changes text, prev_hash text, hash text)
