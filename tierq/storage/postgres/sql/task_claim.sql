-- $1 owner, $2 limit, $3 now, $4 now + horizon, $5 queues to skip (paused, or holding enough
-- parked tasks in memory already: engine/flow/gate.py). Lease unleased work in run order. The WHERE
-- matches tasks_claim_idx's predicate so the index supplies the order; SKIP LOCKED lets
-- replicas claim concurrently without waiting, and the re-check of each locked row
-- guarantees a task is never leased twice. Scheduled tasks already due become queued as they
-- are claimed; later ones (within the horizon) stay scheduled, leased.
WITH c AS (
    SELECT id FROM tasks
    WHERE lease_owner IS NULL
      AND state IN ('queued', 'scheduled')
      AND (state = 'queued' OR run_at <= $4)
      AND queue <> ALL($5::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t SET
    lease_owner = $1,
    state = CASE WHEN t.state = 'scheduled' AND t.run_at <= $3 THEN 'queued' ELSE t.state END,
    updated_at = CASE WHEN t.state = 'scheduled' AND t.run_at <= $3 THEN $3
                      ELSE t.updated_at END
FROM c WHERE t.id = c.id
RETURNING t.id, t.type, t.queue, t.priority, t.payload, t.state, t.run_at, t.created_at,
          t.updated_at, t.max_retries, t.timeout_s, t.attempt, t.attempt_base, t.name,
          t.description, t.idempotency_key, t.depends_on, t.notify, t.result, t.last_error,
          t.started_at, t.finished_at, t.lease_owner,
          t.schedule_id, t.scheduled_for, t.tenant, t.breaker, t.request_id,
          t.traceparent
