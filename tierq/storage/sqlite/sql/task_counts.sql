-- Tasks per state as ONE row holding a JSON object (one sqlite3_step; see batches.py).
SELECT json_group_object(state, n) FROM task_state_counts
