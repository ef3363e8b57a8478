-- Tasks per state of one tenant other than 'default' ($1), through the partial index
-- tasks_tenant (the term tenant <> 'default' lets the planner use it).
SELECT state, count(*)::bigint FROM tasks
WHERE tenant <> 'default' AND tenant = $1
GROUP BY state
