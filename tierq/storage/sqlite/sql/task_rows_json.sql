-- ?1: JSON array of ids; ?2: the tenant they must belong to (NULL: any). The rows of those tasks as ONE row holding a JSON array, one
-- element per task in ``tasks`` column order: one sqlite3_step, so one GIL hand-over, for
-- the whole batch (reading row by row costs one per row; see batches.py). Values JSON
-- cannot carry exactly travel as text: REALs as printf('%!.17g') (17 significant digits
-- give back the same double; the store checks this at open, rows.FLOAT_TEXT_CHECK), BLOBs
-- as hex. NULL stays null (printf and hex would turn it into text).
SELECT json_group_array(json_array(
    id, type, queue, priority, state, hex(payload),
    printf('%!.17g', run_at), printf('%!.17g', created_at), printf('%!.17g', updated_at),
    max_retries, printf('%!.17g', timeout_s), attempt, attempt_base, name, description,
    idempotency_key, depends_on,
    iif(notify IS NULL, NULL, hex(notify)), iif(result IS NULL, NULL, hex(result)),
    last_error,
    iif(started_at IS NULL, NULL, printf('%!.17g', started_at)),
    iif(finished_at IS NULL, NULL, printf('%!.17g', finished_at)),
    lease_owner, schedule_id,
    iif(scheduled_for IS NULL, NULL, printf('%!.17g', scheduled_for)), tenant, breaker, request_id,
    traceparent
))
FROM tasks
WHERE id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR tenant = ?2)
