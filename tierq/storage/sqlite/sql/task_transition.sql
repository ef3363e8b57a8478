-- The fencing rule: a terminal task never changes, and a report from an older attempt than
-- the stored one is refused. NULL values keep the stored value, except lease_owner, which
-- is written as given (NULL clears the lease).
-- {rows}: groups of 10 parameters (batches.py), one per task, ids distinct (an UPDATE ...
-- FROM applies one arbitrary row per target, so the job merges repeated ids first):
-- column1 id, column2 state, column3 attempt, column4 at, column5 run_at, column6
-- started_at, column7 finished_at, column8 result, column9 error, column10 lease_owner.
UPDATE tasks SET
    state = t.column2,
    attempt = t.column3,
    updated_at = t.column4,
    run_at = coalesce(t.column5, tasks.run_at),
    started_at = coalesce(t.column6, tasks.started_at),
    finished_at = coalesce(t.column7, tasks.finished_at),
    result = coalesce(t.column8, tasks.result),
    last_error = coalesce(t.column9, tasks.last_error),
    lease_owner = t.column10
FROM (VALUES {rows}) AS t
WHERE tasks.id = t.column1
  AND tasks.attempt <= t.column3
  AND tasks.state NOT IN ('succeeded', 'failed', 'cancelled')
