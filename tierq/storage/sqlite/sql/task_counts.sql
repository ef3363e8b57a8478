SELECT state, n FROM task_state_counts
