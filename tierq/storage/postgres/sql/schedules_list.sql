SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules
WHERE ($1::boolean IS NULL OR paused = $1)
  AND ($2::text IS NULL OR left(name, length($2)) = $2)
  AND ($3::text IS NULL OR id > $3)
  AND ($5::text IS NULL OR tenant = $5)
ORDER BY id LIMIT $4
