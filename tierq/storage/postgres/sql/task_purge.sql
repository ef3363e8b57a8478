-- Retention (RecordStore.task_purge): up to $7 finished tasks past their state's cutoff, with
-- their executions and dependency edges (both ways: a pending dependent no longer waits on a
-- task that is gone, which had succeeded). Per state: $1/$3/$5 the id floor of its cutoff
-- (every task created before it sorts lower, so tasks_state_id_idx is walked from the
-- oldest), $2/$4/$6 the cutoff in microseconds since 2000-01-01 UTC; a NULL floor skips the
-- state. The statement-level count trigger keeps task_state_counts exact.
WITH victims AS (
    (SELECT id FROM tasks, (SELECT timestamptz '2000-01-01 00:00:00+00' AS epoch) AS e
     WHERE $1::uuid IS NOT NULL AND state = 'succeeded' AND id < $1::uuid
       AND finished_at < e.epoch + $2::int8 * interval '1 microsecond'
     ORDER BY id LIMIT $7)
    UNION ALL
    (SELECT id FROM tasks, (SELECT timestamptz '2000-01-01 00:00:00+00' AS epoch) AS e
     WHERE $3::uuid IS NOT NULL AND state = 'failed' AND id < $3::uuid
       AND finished_at < e.epoch + $4::int8 * interval '1 microsecond'
     ORDER BY id LIMIT $7)
    UNION ALL
    (SELECT id FROM tasks, (SELECT timestamptz '2000-01-01 00:00:00+00' AS epoch) AS e
     WHERE $5::uuid IS NOT NULL AND state = 'cancelled' AND id < $5::uuid
       AND finished_at < e.epoch + $6::int8 * interval '1 microsecond'
     ORDER BY id LIMIT $7)
    LIMIT $7
), gone AS (
    DELETE FROM tasks AS t USING victims AS v WHERE t.id = v.id RETURNING t.id
), executions AS (
    DELETE FROM task_executions AS x USING gone AS g WHERE x.task_id = g.id
), as_dependent AS (
    DELETE FROM task_dependencies AS d USING gone AS g WHERE d.task_id = g.id
), as_dependency AS (
    DELETE FROM task_dependencies AS d USING gone AS g WHERE d.depends_on_id = g.id
)
SELECT id::text FROM gone
