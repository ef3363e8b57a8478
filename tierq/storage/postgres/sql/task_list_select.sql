-- Head of the list query; store.py appends WHERE / ORDER BY / LIMIT from fixed fragments.
SELECT id, type, queue, priority, payload, state, run_at, created_at, updated_at,
       max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
       depends_on, notify, result, last_error, started_at, finished_at, lease_owner,
       schedule_id, scheduled_for, tenant, breaker, request_id, traceparent
FROM tasks
