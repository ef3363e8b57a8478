-- Fragments of the list query (GET /api/v1/tasks), assembled by tierq/storage/sqlite/rows.py
-- in the order select, where terms (joined by AND), order, limit. Values are always bound
-- parameters; only these fixed texts are concatenated. Sorting by created_at walks id:
-- ids are minted from the creation clock, so the order is the same and needs no sort.
-- name: select
SELECT
    id, type, queue, priority, state, payload, run_at, created_at, updated_at,
    max_retries, timeout_s, attempt, attempt_base, name, description, idempotency_key,
    depends_on, notify, result, last_error, started_at, finished_at, lease_owner
FROM tasks
-- name: state_one
state = ?
-- name: state_many
state IN (SELECT value FROM json_each(?))
-- name: type
type = ?
-- name: queue
queue = ?
-- name: priority
priority = ?
-- name: after_asc
id > ?
-- name: after_desc
id < ?
-- name: order_created_at_asc
ORDER BY id ASC
-- name: order_created_at_desc
ORDER BY id DESC
-- name: order_priority_asc
ORDER BY priority ASC, id ASC
-- name: order_priority_desc
ORDER BY priority DESC, id DESC
-- name: order_run_at_asc
ORDER BY run_at ASC, id ASC
-- name: order_run_at_desc
ORDER BY run_at DESC, id DESC
-- name: order_updated_at_asc
ORDER BY updated_at ASC, id ASC
-- name: order_updated_at_desc
ORDER BY updated_at DESC, id DESC
-- name: limit
LIMIT ? OFFSET ?
