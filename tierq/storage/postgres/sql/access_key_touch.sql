-- Last use of many keys at once ($1 ids, $2 times); never moves last_used_at back.
UPDATE api_keys SET last_used_at = u.at
FROM unnest($1::text[], $2::float8[]) AS u(id, at)
WHERE api_keys.id = u.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at)
