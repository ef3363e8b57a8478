-- Tasks per state of the tenant 'default': the maintained totals less the other tenants'
-- tasks (partial index tasks_tenant), so a single-tenant deployment never counts rows.
SELECT c.state, c.n - coalesce(o.n, 0)
FROM (SELECT state, sum(n)::bigint AS n FROM task_state_counts GROUP BY state) AS c
LEFT JOIN (
    SELECT state, count(*)::bigint AS n FROM tasks WHERE tenant <> 'default' GROUP BY state
) AS o ON o.state = c.state
