SELECT queue, state, count(*) FROM tasks GROUP BY queue, state
