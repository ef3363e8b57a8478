SELECT tick, at, reason FROM schedule_skips
WHERE schedule_id = $1 AND ($2::float8 IS NULL OR tick < $2)
ORDER BY tick DESC LIMIT $3
