-- One batch of transitions, each task at most once (the caller splits repeats into rounds).
-- The fencing rule lives in the WHERE: terminal tasks and newer stored attempts refuse.
-- Execution rows are written only for transitions that were applied. Returns refused ids.
WITH u AS (
    -- $1: a JSON array of objects (codecs.transition_document); times are integer
    -- microseconds since 2000-01-01 UTC, added to that epoch exactly (no float rounding).
    SELECT r.id, r.attempt, r.state,
           epoch + r.at * interval '1 microsecond' AS at,
           epoch + r.run_at * interval '1 microsecond' AS run_at,
           epoch + r.started_at * interval '1 microsecond' AS started_at,
           epoch + r.finished_at * interval '1 microsecond' AS finished_at,
           r.result::jsonb AS result, r.error, r.lease_owner, r.worker, r.outcome
    FROM json_to_recordset($1::json) AS r(
             id uuid, attempt int4, state text, at int8, run_at int8, started_at int8,
             finished_at int8, result text, error text, lease_owner text, worker text,
             outcome text),
         (SELECT timestamptz '2000-01-01 00:00:00+00' AS epoch) AS e
), upd AS (
    UPDATE tasks AS t SET
        state = u.state,
        attempt = u.attempt,
        updated_at = u.at,
        run_at = coalesce(u.run_at, t.run_at),
        started_at = coalesce(u.started_at, t.started_at),
        finished_at = coalesce(u.finished_at, t.finished_at),
        result = coalesce(u.result, t.result),
        last_error = coalesce(u.error, t.last_error),
        lease_owner = u.lease_owner
    FROM u
    WHERE t.id = u.id
      AND t.attempt <= u.attempt
      AND t.state NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING t.id
), ex AS (
    INSERT INTO task_executions AS e (task_id, attempt, started_at, finished_at, outcome,
                                      error, worker)
    SELECT u.id, u.attempt, u.started_at, u.finished_at, u.outcome, u.error, u.worker
    FROM u JOIN upd ON upd.id = u.id
    WHERE u.outcome IS NOT NULL OR u.started_at IS NOT NULL
    ON CONFLICT (task_id, attempt) DO UPDATE SET
        started_at = coalesce(excluded.started_at, e.started_at),
        finished_at = coalesce(excluded.finished_at, e.finished_at),
        outcome = coalesce(excluded.outcome, e.outcome),
        error = coalesce(excluded.error, e.error),
        worker = coalesce(excluded.worker, e.worker)
)
SELECT u.id FROM u WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.id = u.id)
