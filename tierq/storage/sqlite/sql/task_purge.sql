-- Retention (RecordStore.task_purge): finished tasks past their state's cutoff, a batch at a
-- time. The tasks_delete trigger (migrations/001_init.sql) keeps task_state_counts exact and
-- deletes each task's executions and its own dependency edges; the edges pointing at it go
-- here (a pending dependent no longer waits on a task that is gone: it had succeeded).
-- name: victims
-- ?1 state, ?2 id floor of the cutoff (every task created before it sorts lower: the index
-- tasks_state_id is walked from the oldest), ?3 cutoff, ?4 limit.
SELECT json_group_array(id) FROM (
    SELECT id FROM tasks
    WHERE state = ?1 AND id < ?2 AND finished_at < ?3
    ORDER BY id LIMIT ?4
)
-- name: delete
DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
-- name: edges
DELETE FROM task_dependencies WHERE depends_on_id IN (SELECT value FROM json_each(?1))
