-- One statement per batch. Columns follow the Task dataclass order. A row whose id or
-- idempotency_key already exists (or appeared earlier in this batch) is skipped; the caller
-- maps skipped keyed rows to the holder of their key. Dependencies are stored with the task
-- (column for reads, task_dependencies for release_dependents), only for rows inserted.
WITH ins AS (
    INSERT INTO tasks (
        id, type, queue, priority, payload, state, run_at, created_at, updated_at,
        max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
        depends_on, notify, result, last_error, started_at, finished_at, lease_owner)
    SELECT u.id, u.type, u.queue, u.priority, u.payload, u.state, u.run_at, u.created_at,
           u.updated_at, u.max_retries, u.timeout_s, u.attempt, u.attempt_base, u.name,
           u.description, u.idempotency_key,
           coalesce(string_to_array(u.depends_on, ',')::uuid[], '{}'),
           u.notify, u.result, u.last_error, u.started_at, u.finished_at, u.lease_owner
    FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::int4[], $5::json[], $6::text[],
        $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::int4[], $11::float8[],
        $12::int4[], $13::int4[], $14::text[], $15::text[], $16::text[], $17::text[],
        $18::jsonb[], $19::jsonb[], $20::text[], $21::timestamptz[], $22::timestamptz[],
        $23::text[]
    ) AS u(id, type, queue, priority, payload, state, run_at, created_at, updated_at,
           max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
           depends_on, notify, result, last_error, started_at, finished_at, lease_owner)
    ON CONFLICT DO NOTHING
    RETURNING id, depends_on
), deps AS (
    INSERT INTO task_dependencies (task_id, depends_on_id)
    SELECT ins.id, d.dep
    FROM ins CROSS JOIN LATERAL unnest(ins.depends_on) AS d(dep)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM ins
