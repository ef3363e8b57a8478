-- ?1: JSON array of ids; ?2: the tenant they must belong to (NULL: any).
SELECT
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner,
    schedule_id, scheduled_for, tenant, breaker, request_id, traceparent
FROM tasks
WHERE id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR tenant = ?2)
