-- ?1: JSON object {state: delta}. The writer's own bookkeeping of task_state_counts (see
-- migrations/002_counts_in_store.sql); one statement for every state a batch touched.
UPDATE task_state_counts SET n = n + d.value
FROM json_each(?1) AS d
WHERE task_state_counts.state = d.key
