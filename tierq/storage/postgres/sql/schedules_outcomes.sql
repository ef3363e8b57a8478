-- Ended runs, folded per schedule (storage/schedules.fold_outcomes): the failure count
-- restarts from 0 after a run that did not fail, then adds the failures after it; reaching
-- pause_after_failures pauses the schedule (an edit: version and updated_at change).
-- $1: JSON array of {id, reset, add}; $2: now. Returns the schedules paused here.
WITH f AS (
    SELECT id, reset, add FROM json_to_recordset($1::json) AS f(id text, reset bool, add int4)
), counted AS (
    SELECT s.id,
           (CASE WHEN f.reset THEN 0 ELSE s.failures END) + f.add AS failures,
           coalesce((s.spec ->> 'pause_after_failures')::int4, 0) AS limit_n,
           s.paused
    FROM schedules s JOIN f ON f.id = s.id
    FOR UPDATE OF s
), upd AS (
    UPDATE schedules AS s
    SET failures = c.failures,
        paused = s.paused OR (c.limit_n > 0 AND c.failures >= c.limit_n),
        version = s.version + CASE WHEN NOT c.paused AND c.limit_n > 0
                                        AND c.failures >= c.limit_n THEN 1 ELSE 0 END,
        updated_at = CASE WHEN NOT c.paused AND c.limit_n > 0
                               AND c.failures >= c.limit_n THEN $2 ELSE s.updated_at END
    FROM counted c
    WHERE s.id = c.id
    RETURNING s.id, NOT c.paused AND s.paused AS paused_now
)
SELECT id FROM upd WHERE paused_now
