-- Schedules of the embedded store (tierq/storage/sqlite/schedules.py). Columns are always
-- read in the order of "columns" below (schedules.py's _schedule reads them by position).
-- name: insert
INSERT INTO schedules (
    id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
    next_fire_at, created_at, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
-- name: get
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)
-- name: list
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules
WHERE (?1 IS NULL OR paused = ?1)
  AND (?2 IS NULL OR substr(name, 1, length(?2)) = ?2)
  AND (?3 IS NULL OR id > ?3)
  AND (?5 IS NULL OR tenant = ?5)
ORDER BY id LIMIT ?4
-- name: load_all
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules
-- name: load_ids
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules WHERE id IN (SELECT value FROM json_each(?1))
-- name: changed_since
SELECT id, tenant, name, spec, paused, version, last_tick, runs, failures, last_task_id,
       next_fire_at, created_at, updated_at
FROM schedules WHERE updated_at >= ?1
-- name: update
UPDATE schedules
SET name = ?1, spec = ?2, paused = ?3, version = version + 1, updated_at = ?4,
    failures = CASE WHEN ?5 THEN 0 ELSE failures END
WHERE id = ?6 AND version = ?7
-- name: delete
DELETE FROM schedules WHERE id = ?1
-- name: delete_skips
DELETE FROM schedule_skips WHERE schedule_id = ?1
-- A fire's schedule updates, applied only where version and last tick are still those the
-- fire was computed from (compare-and-set: a stale leader's fire changes nothing). The fire
-- time does not touch updated_at: that column means "definition or state edited".
-- name: advance
UPDATE schedules
SET last_tick = f.value ->> 'last_tick',
    runs = runs + (f.value ->> 'fired'),
    last_task_id = coalesce(f.value ->> 'last_task_id', last_task_id),
    next_fire_at = f.value ->> 'next'
FROM json_each(?1) AS f
WHERE schedules.id = f.value ->> 'id'
  AND schedules.version = f.value ->> 'version'
  AND schedules.last_tick IS (f.value ->> 'expected')
RETURNING schedules.id
-- name: skip_insert
INSERT INTO schedule_skips (schedule_id, tick, at, reason) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING
-- name: failures_of
SELECT id, failures, paused, coalesce(json_extract(spec, '$.pause_after_failures'), 0)
FROM schedules WHERE id IN (SELECT value FROM json_each(?1))
-- name: failures_set
UPDATE schedules
SET failures = ?1, paused = ?2, version = version + ?3,
    updated_at = CASE WHEN ?3 > 0 THEN ?4 ELSE updated_at END
WHERE id = ?5
-- name: runs_fired
SELECT scheduled_for, created_at, id, state, idempotency_key
FROM tasks
WHERE schedule_id = ?1 AND (?2 IS NULL OR scheduled_for < ?2)
ORDER BY scheduled_for DESC LIMIT ?3
-- name: runs_skipped
SELECT tick, at, reason FROM schedule_skips
WHERE schedule_id = ?1 AND (?2 IS NULL OR tick < ?2)
ORDER BY tick DESC LIMIT ?3
-- name: trim_skips
DELETE FROM schedule_skips WHERE at < ?1
