WITH skips AS (DELETE FROM schedule_skips WHERE schedule_id = $1)
DELETE FROM schedules WHERE id = $1
