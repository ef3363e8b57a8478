INSERT INTO schedules (
    id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
    next_fire_at, created_at, updated_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
