-- One statement for the whole batch: parallel arrays, one row per element.
INSERT INTO task_rollups (minute, node, tenant, body)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
