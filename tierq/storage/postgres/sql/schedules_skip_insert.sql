-- $1: JSON array of {schedule_id, tick, at, reason}.
INSERT INTO schedule_skips (schedule_id, tick, at, reason)
SELECT schedule_id, tick, at, reason
FROM json_to_recordset($1::json) AS k(schedule_id text, tick float8, at float8, reason text)
ON CONFLICT DO NOTHING
