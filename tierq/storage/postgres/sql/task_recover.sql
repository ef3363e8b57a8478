-- Crash recovery for the given owners ($2 NULL = every owner). Both UPDATEs on tasks read
-- the same snapshot, so the running rows requeued by r are not counted again by l.
WITH r AS (
    UPDATE tasks SET state = 'queued', lease_owner = NULL, updated_at = $1
    WHERE state = 'running' AND ($2::text[] IS NULL OR lease_owner = ANY($2::text[]))
    RETURNING id
), e AS (
    UPDATE task_executions AS e SET finished_at = $1, outcome = 'abandoned'
    FROM r WHERE e.task_id = r.id AND e.finished_at IS NULL
), l AS (
    UPDATE tasks SET lease_owner = NULL
    WHERE lease_owner IS NOT NULL AND state <> 'running'
      AND ($2::text[] IS NULL OR lease_owner = ANY($2::text[]))
    RETURNING id
)
SELECT (SELECT count(*) FROM r) AS requeued, (SELECT count(*) FROM l) AS released
