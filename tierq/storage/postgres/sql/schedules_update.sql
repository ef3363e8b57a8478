UPDATE schedules
SET name = $1, spec = $2, paused = $3, version = version + 1, updated_at = $4,
    failures = CASE WHEN $5 THEN 0 ELSE failures END
WHERE id = $6 AND version = $7
RETURNING id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
