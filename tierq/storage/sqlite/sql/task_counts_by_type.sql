SELECT type, state, count(*) FROM tasks GROUP BY type, state
