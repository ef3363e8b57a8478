-- The fencing rule: a terminal task never changes, and a report from an older attempt than
-- the stored one is refused. NULL parameters keep the stored value, except lease_owner,
-- which is written as given (NULL clears the lease).
-- ?1 state, ?2 attempt, ?3 at, ?4 run_at, ?5 started_at, ?6 finished_at, ?7 result,
-- ?8 error, ?9 lease_owner, ?10 id
UPDATE tasks SET
    state = ?1,
    attempt = ?2,
    updated_at = ?3,
    run_at = coalesce(?4, run_at),
    started_at = coalesce(?5, started_at),
    finished_at = coalesce(?6, finished_at),
    result = coalesce(?7, result),
    last_error = coalesce(?8, last_error),
    lease_owner = ?9
WHERE id = ?10
  AND attempt <= ?2
  AND state NOT IN ('succeeded', 'failed', 'cancelled')
