-- ?1 now, ?2 JSON array of finished ids. Pending dependents of those with any failed or
-- cancelled dependency are cancelled; last_error names the dependency. CROSS JOIN fixes the
-- join order (edges of this task first, then each dependency by id): the planner would
-- otherwise walk every failed task in the state index for each dependent.
UPDATE tasks SET
    state = 'cancelled',
    updated_at = ?1,
    finished_at = ?1,
    lease_owner = NULL,
    last_error = (
        SELECT 'dependency ' || p.id || ' ' || p.state
        FROM task_dependencies d CROSS JOIN tasks p ON p.id = d.depends_on_id
        WHERE d.task_id = tasks.id AND p.state IN ('failed', 'cancelled')
        ORDER BY p.id
        LIMIT 1
    )
WHERE state = 'pending'
  AND id IN (
    SELECT task_id FROM task_dependencies
    WHERE depends_on_id IN (SELECT value FROM json_each(?2))
  )
  AND EXISTS (
    SELECT 1 FROM task_dependencies d CROSS JOIN tasks p ON p.id = d.depends_on_id
    WHERE d.task_id = tasks.id AND p.state IN ('failed', 'cancelled')
  )
RETURNING id
