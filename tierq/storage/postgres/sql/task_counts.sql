-- Maintained counters (see the triggers in 001_init.sql): 7 states x 16 slots at most.
SELECT state, sum(n)::bigint FROM task_state_counts GROUP BY state
