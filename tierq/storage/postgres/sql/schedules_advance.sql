-- A fire's schedule updates, applied only where version and last tick are still those the
-- fire was computed from (compare-and-set: a stale leader's fire changes nothing). The fire
-- does not touch updated_at: that column means "definition or state edited".
-- $1: JSON array of {id, version, expected, last_tick, fired, last_task_id, next}.
UPDATE schedules AS s
SET last_tick = f.last_tick,
    runs = s.runs + f.fired,
    last_task_id = coalesce(f.last_task_id, s.last_task_id),
    next_fire_at = f.next
FROM json_to_recordset($1::json) AS f(
         id text, version int4, expected float8, last_tick float8, fired int4,
         last_task_id uuid, next float8)
WHERE s.id = f.id
  AND s.version = f.version
  AND s.last_tick IS NOT DISTINCT FROM f.expected
RETURNING s.id
