-- Columns in this order wherever a schedule is read (postgres/schedules.py reads by position).
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
