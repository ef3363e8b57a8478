SELECT task_id, attempt, started_at, finished_at, outcome, error, worker
FROM task_executions
WHERE task_id = ?
ORDER BY attempt
