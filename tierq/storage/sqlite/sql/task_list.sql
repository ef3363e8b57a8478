-- Fragments of the list query (GET /api/v1/tasks), assembled by tierq/storage/sqlite/rows.py
-- in the order page_open, select, where terms (joined by AND), order, limit, page_close: the
-- page's ids as ONE row holding a JSON array (one sqlite3_step; the rows are then read with
-- task_rows_json.sql, and put back in page order by the store). Values are always bound
-- parameters; only these fixed texts are concatenated. Sorting by created_at walks id:
-- ids are minted from the creation clock, so the order is the same and needs no sort.
-- name: select
SELECT id FROM tasks
-- name: page_open
SELECT json_group_array(id) FROM (
-- name: page_close
)
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
-- name: schedule_id
schedule_id = ?
-- name: tenant
tenant = ?
-- name: tenant_other
tenant <> 'default' AND tenant = ?
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
-- name: name_prefix
-- A name prefix: a range on the name, ?1 the prefix, ?2 the prefix followed by U+10FFFF.
name >= ? AND name < ?
-- name: payload_field
-- A payload field equal to a JSON scalar (the path is built from checked parts). The payload
-- is a BLOB of JSON text: read as text.
json_extract(CAST(payload AS TEXT), ?) = ?
-- name: search_cap
-- A search looks at the newest N tasks only: ids from the N-th newest on ('' when fewer).
id >= coalesce((SELECT id FROM tasks ORDER BY id DESC LIMIT 1 OFFSET ?), '')
-- name: dependent_of
-- The tasks that depend on a task (the dependency edges' index on depends_on_id).
id IN (SELECT task_id FROM task_dependencies WHERE depends_on_id = ?)
