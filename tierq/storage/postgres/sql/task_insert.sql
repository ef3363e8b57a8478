-- One statement per batch. Columns follow the Task dataclass order. A row whose id or
-- idempotency_key already exists (or appeared earlier in this batch) is skipped; the caller
-- maps skipped keyed rows to the holder of their key. Dependencies are stored with the task
-- (column for reads, task_dependencies for release_dependents), only for rows inserted.
WITH ins AS (
    INSERT INTO tasks (
        id, type, queue, priority, payload, state, run_at, created_at, updated_at,
        max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
        depends_on, notify, result, last_error, started_at, finished_at, lease_owner,
        schedule_id, scheduled_for, tenant, breaker, request_id, traceparent)
    SELECT u.id, u.type, u.queue, u.priority, u.payload::json, u.state,
           epoch + u.run_at * interval '1 microsecond',
           epoch + u.created_at * interval '1 microsecond',
           epoch + u.updated_at * interval '1 microsecond',
           u.max_retries, u.timeout_s, u.attempt, u.attempt_base, u.name,
           u.description, u.idempotency_key,
           coalesce(string_to_array(u.depends_on, ',')::uuid[], '{}'),
           u.notify::jsonb, u.result::jsonb, u.last_error,
           epoch + u.started_at * interval '1 microsecond',
           epoch + u.finished_at * interval '1 microsecond',
           u.lease_owner, u.schedule_id,
           epoch + u.scheduled_for * interval '1 microsecond', u.tenant, u.breaker,
           u.request_id, u.traceparent
    -- $1: a JSON array of objects (codecs.task_document); times are integer microseconds
    -- since 2000-01-01 UTC, added to that epoch exactly; JSON columns arrive as their text.
    FROM json_to_recordset($1::json) AS u(
             id uuid, type text, queue text, priority int4, payload text, state text,
             run_at int8, created_at int8, updated_at int8, max_retries int4,
             timeout_s float8, attempt int4, attempt_base int4, name text, description text,
             idempotency_key text, depends_on text, notify text, result text,
             last_error text, started_at int8, finished_at int8, lease_owner text,
             schedule_id text, scheduled_for int8, tenant text, breaker text,
             request_id text, traceparent text),
         (SELECT timestamptz '2000-01-01 00:00:00+00' AS epoch) AS e
    ON CONFLICT DO NOTHING
    RETURNING id, depends_on
), deps AS (
    INSERT INTO task_dependencies (task_id, depends_on_id)
    SELECT ins.id, d.dep
    FROM ins CROSS JOIN LATERAL unnest(ins.depends_on) AS d(dep)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM ins
