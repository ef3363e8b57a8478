-- ?1 now, ?2 JSON array of owners or NULL for every owner. Runs before recover_running.sql,
-- while the tasks are still running: their open attempt ended with the process.
UPDATE task_executions SET outcome = 'abandoned', finished_at = ?1
WHERE outcome IS NULL
  AND (task_id, attempt) IN (
    SELECT id, attempt FROM tasks
    WHERE state = 'running'
      AND (?2 IS NULL OR lease_owner IN (SELECT value FROM json_each(?2)))
  )
