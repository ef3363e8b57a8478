-- Tasks per state of one tenant, as ONE row holding a JSON object. ?1: the tenant.
-- Every tenant but 'default' is counted through the partial index tasks_tenant (the term
-- tenant <> 'default' lets the planner use it); 'default' is the maintained totals less the
-- other tenants' tasks, so a single-tenant deployment never counts rows.
-- name: other
SELECT json_group_object(state, n) FROM (
    SELECT state, count(*) AS n FROM tasks
    WHERE tenant <> 'default' AND tenant = ?1
    GROUP BY state
)
-- name: default
SELECT json_group_object(c.state, c.n - coalesce(o.n, 0))
FROM task_state_counts AS c
LEFT JOIN (
    SELECT state, count(*) AS n FROM tasks WHERE tenant <> 'default' GROUP BY state
) AS o ON o.state = c.state
