WITH gone AS (DELETE FROM schedule_skips WHERE at < $1 RETURNING 1)
SELECT count(*) FROM gone
