DELETE FROM task_rollups WHERE minute < $1
